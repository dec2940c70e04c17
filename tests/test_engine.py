"""shmrss.engine: each design's engine module is named by a hash of every source compiled into it.

numba's on-disk cache only checks the generated module's own file, so a change to
any source the design's loops inline must change the hash (and so the module
name), else a stale compiled engine would be loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from shmrss import designs, engine


def inlined_design_modules(name: str) -> set[str]:
    """Other design modules whose compiled functions design ``name`` calls (imports from them)."""
    mod = designs.get(name)
    out = set()
    for v in vars(mod).values():
        py = getattr(v, "py_func", None)
        m = getattr(py, "__module__", "") or ""
        if m.startswith("shmrss.designs.") and m not in (mod.__name__, "shmrss.designs._common"):
            out.add(m)
    return out


def _hash_with_changed(monkeypatch, design: str, changed: Path) -> str:
    real = Path.read_bytes

    def read_bytes(self):
        data = real(self)
        return data + b"\n# changed\n" if Path(self).resolve() == changed.resolve() else data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    try:
        return engine._source_hash(design)
    finally:
        monkeypatch.setattr(Path, "read_bytes", real)


@pytest.mark.parametrize("design", designs.DESIGNS)
def test_hash_covers_the_design_and_the_shared_sources(design, monkeypatch):
    base = engine._source_hash(design)
    assert engine._source_hash(design) == base  # stable
    pkg = Path(engine.__file__).resolve().parent
    for f in (pkg / "designs" / f"{designs.module_name(design)}.py", pkg / "engine_loop.py", pkg / "atomics.py", pkg / "layout.py",
              pkg / "designs" / "_common.py"):
        assert _hash_with_changed(monkeypatch, design, f) != base, f.name


def test_single_inlines_percpu():
    singles = ("single", "single-atomic")
    assert all(inlined_design_modules(d) == {"shmrss.designs.percpu"} for d in singles)
    assert all(not inlined_design_modules(d) for d in designs.DESIGNS if d not in singles)


def test_design_ids_are_unique_and_modules_named_by_the_design():
    """The segment header names a design by its ID: two designs with one ID would be confused by monitor."""
    ids = [designs.get(d).ID for d in designs.DESIGNS]
    assert len(set(ids)) == len(ids), ids
    assert all(designs.get(d).NAME == d for d in designs.DESIGNS)


@pytest.mark.parametrize("design", [d for d in designs.DESIGNS if inlined_design_modules(d)])
def test_hash_covers_every_design_module_inlined(design, monkeypatch):
    """Found by this test: the hash once covered only the design's own file, so an edit to percpu.py
    left single's engine name unchanged and numba loaded the stale compiled engine."""
    base = engine._source_hash(design)
    for modname in inlined_design_modules(design):
        f = Path(importlib.import_module(modname).__file__)
        assert _hash_with_changed(monkeypatch, design, f) != base, f.name

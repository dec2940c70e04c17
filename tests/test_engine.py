"""shmrss.specialise: one way to specialise a design, named by a hash of every source compiled into it.

numba's on-disk cache only checks the file a function is defined in, so a
change to any source a design's loops inline must change the copy's name, else
a stale compiled engine would be loaded; and a change to one design must leave
every other design's copies (and their caches) alone.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import shmrss
from shmrss import designs, specialise
from shmrss.designs import interface
from shmrss.engine import build

PKG = Path(shmrss.__file__).resolve().parent
ENGINE = build.TEMPLATE
MONITOR = PKG / "monitor_jit.py"
LIFECYCLE = PKG / "lifecycle_loop.py"
DRIVER = Path(__file__).resolve().parent / "design_driver_template.py"


def _design_file(name: str) -> Path:
    return PKG / "designs" / f"{designs.module_name(name)}.py"


@pytest.mark.parametrize("template", [ENGINE, MONITOR, LIFECYCLE, DRIVER], ids=lambda p: p.stem)
@pytest.mark.parametrize("design", designs.DESIGNS)
def test_sources_are_the_template_the_design_and_what_they_import(template, design):
    src = set(specialise.sources(template, designs.module_name(design)))
    shared = {PKG / "atomics.py", PKG / "layout.py", PKG / "designs" / "_common.py",
              PKG / "designs" / "interface.py", _design_file(design)}
    assert shared <= src
    assert set(specialise._template_files(template)) <= src
    others = {_design_file(d) for d in designs.DESIGNS if d != design}
    inlined = {_design_file("percpu")} if design in ("single", "single-atomic") else set()
    assert src & others == inlined  # single and single-atomic inline percpu's functions; no other design


def _name_with_changed(monkeypatch, template: Path, design: str, changed: Path) -> str:
    real = Path.read_bytes

    def read_bytes(self):
        data = real(self)
        return data + b"\n# changed\n" if Path(self).resolve() == changed.resolve() else data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    try:
        return specialise.copy_name(template, design, "p")
    finally:
        monkeypatch.setattr(Path, "read_bytes", real)


@pytest.mark.parametrize("design", designs.DESIGNS)
def test_an_edit_renames_the_copies_that_inline_it_and_no_other(design, monkeypatch):
    names = {d: specialise.copy_name(ENGINE, d, "p") for d in designs.DESIGNS}
    assert names == {d: specialise.copy_name(ENGINE, d, "p") for d in designs.DESIGNS}  # stable
    edited = _design_file(design)
    after = {d: _name_with_changed(monkeypatch, ENGINE, d, edited) for d in designs.DESIGNS}
    renamed = {d for d in designs.DESIGNS if after[d] != names[d]}
    expect = {design} | ({"single", "single-atomic"} if design == "percpu" else set())
    assert renamed == expect
    for shared in (ENGINE / "cpu.py", PKG / "atomics.py", PKG / "layout.py"):
        assert _name_with_changed(monkeypatch, ENGINE, design, shared) != names[design], shared.name


def test_every_path_to_compiled_design_code_goes_through_the_specialiser():
    """The engine, the monitor, the fork/exit loop and the test driver: one mechanism, no private loader."""
    for f in (PKG / "engine" / "build.py", PKG / "monitor_reads.py", PKG / "lifecycle.py",
              Path(__file__).parent / "design_drivers.py"):
        text = f.read_text()
        assert "specialised(" in text, f
        assert "spec_from_file_location" not in text and "DESIGN-IMPORT" not in text, f
    for template in (*specialise._template_files(ENGINE), MONITOR, LIFECYCLE, DRIVER):
        text = template.read_text()
        assert "from shmrss.designs import" not in text.replace("from shmrss.designs.interface", ""), template
        assert "import shmrss.designs." not in text, template


_PROBE = r"""
import json, sys
from shmrss import monitor_reads as MR
from shmrss.engine import engine_for
out = {}
for d in sys.argv[2:]:
    MR.warm(d)
    snap = MR._snap(d)
    out[d] = {"monitor": [sum(snap.stats.cache_hits.values()), sum(snap.stats.cache_misses.values())]}
    if d == "atomic":  # the cheapest engine to compile: the same specialiser as the monitor's reads
        eng = engine_for(d, ("run",))
        out[d]["engine"] = [sum(eng.cpu_main.stats.cache_hits.values()),
                            sum(eng.cpu_main.stats.cache_misses.values())]
        out[d]["engine_module"] = eng.__name__
import shmrss
assert shmrss.__file__.startswith(sys.argv[1]), shmrss.__file__  # the copy, not the tree under test
print(json.dumps(out))
"""


def _probe(src: Path, cache: Path, *names: str) -> dict:
    # -S: no site hooks, so an editable install's finder cannot send ``import shmrss`` past the copy
    path = os.pathsep.join([str(src), *site.getsitepackages()])
    env = {**os.environ, "PYTHONPATH": path, "SHMRSS_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(src), *names], capture_output=True, text=True,
                          env=env, cwd=src.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_hits_the_disk_cache_and_an_edit_recompiles_only_its_design(tmp_path):
    """In fresh processes over a copy of the package: the first compiles, the second loads every function
    from the disk cache, and after an edit to atomic.py only atomic's code is compiled again."""
    src = tmp_path / "src"
    shutil.copytree(PKG, src / "shmrss", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first = _probe(src, cache, "atomic", "pernode")
    assert first["atomic"]["engine"] == [0, 1] and all(first[d]["monitor"] == [0, 1] for d in first), first
    second = _probe(src, cache, "atomic", "pernode")
    assert second["atomic"]["engine"] == [1, 0] and all(second[d]["monitor"] == [1, 0] for d in second), second
    with open(src / "shmrss" / "designs" / "atomic.py", "a") as f:
        f.write("\n# an edit\n")
    third = _probe(src, cache, "atomic", "pernode")
    assert third["atomic"]["monitor"] == [0, 1] and third["atomic"]["engine"] == [0, 1], third
    assert third["atomic"]["engine_module"] != second["atomic"]["engine_module"]
    assert third["pernode"] == second["pernode"], third


def test_a_design_missing_a_required_function_is_refused_by_name():
    import types

    fake = types.ModuleType("shmrss.designs.fake")
    fake.NAME, fake.ID, fake.SUMMARY, fake.BOUND, fake.shape = "fake", 99, "", "", None
    fake.add = fake.read_approx = object()
    with pytest.raises(interface.DesignInterfaceError, match="lacks switch_mm, approx_bound, read_precise"):
        interface.check(fake)


def test_optional_hooks_default_and_every_design_has_the_whole_interface():
    for d in designs.DESIGNS:
        mod = designs.get(d)
        for name in (*interface.REQUIRED, *interface.OPTIONAL):
            assert interface.function(mod, name) is not None
    atomic = designs.get("atomic")
    assert interface.function(atomic, "thread_created") is interface.no_thread_event
    assert interface.function(designs.get("single"), "threads") is designs.get("single").threads


def test_no_module_outside_a_design_names_a_design_private_word():
    """``designs.<x>._word`` or ``from shmrss.designs.<x> import _word`` outside shmrss/designs/."""
    import re

    pattern = re.compile(r"(designs\.(?!_common|interface)\w+\._[A-Za-z]|from shmrss\.designs\.(?!_common|interface)"
                         r"\w+ import \(?[^)]*\b_[A-Za-z])")
    offenders = [str(f.relative_to(PKG)) for f in PKG.rglob("*.py")
                 if "designs" not in f.relative_to(PKG).parts and pattern.search(f.read_text())]
    assert offenders == []

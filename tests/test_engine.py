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
    inlined = {"single": {"percpu"}, "single-atomic": {"percpu", "single"}}.get(design, set())
    if template == LIFECYCLE and design != "percpu":  # the fork/exit loop inits percpu's structs itself
        inlined = inlined | {"percpu"}  # (upstream, merged, ctor-cache, first-use, coarse: percpu_counter_init)
    assert src & others == {_design_file(d) for d in inlined}  # single-atomic shares single's; no other design


def _name_with_changed(monkeypatch, template: Path, design: str, changed: Path) -> str:
    real = Path.read_bytes

    def read_bytes(self):
        data = real(self)
        return data + b"\n# changed\n" if Path(self).resolve() == changed.resolve() else data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    specialise._digest.cache_clear()  # memoised per process: the sources do not change under a run
    try:
        return specialise.copy_name(template, design, "p")
    finally:
        monkeypatch.setattr(Path, "read_bytes", real)
        specialise._digest.cache_clear()


@pytest.mark.parametrize("design", designs.DESIGNS)
def test_an_edit_renames_the_copies_that_inline_it_and_no_other(design, monkeypatch):
    names = {d: specialise.copy_name(ENGINE, d, "p") for d in designs.DESIGNS}
    assert names == {d: specialise.copy_name(ENGINE, d, "p") for d in designs.DESIGNS}  # stable
    edited = _design_file(design)
    after = {d: _name_with_changed(monkeypatch, ENGINE, d, edited) for d in designs.DESIGNS}
    renamed = {d for d in designs.DESIGNS if after[d] != names[d]}
    expect = {design} | {"percpu": {"single", "single-atomic"}, "single": {"single-atomic"}}.get(design, set())
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
from shmrss.engine.build import PREFIX, TEMPLATE
from shmrss.specialise import specialised
out = {}
for d in sys.argv[3:]:
    MR.warm(d)
    snap = MR._snap(d)
    out[d] = {"monitor": [sum(snap.stats.cache_hits.values()), sum(snap.stats.cache_misses.values())]}
    if d == "atomic" and sys.argv[2] == "compile":  # the cheapest engine: the monitor's specialiser
        eng = engine_for(d, ("run",))
        out[d]["engine"] = [sum(eng.cpu_main.stats.cache_hits.values()),
                            sum(eng.cpu_main.stats.cache_misses.values())]
        out[d]["engine_module"] = eng.__name__
    elif d == "atomic":  # the copy an edit makes, by name: a new file that no machine code on disk is for
        out[d]["engine_module"] = specialised(TEMPLATE, d, PREFIX).__name__
import shmrss
assert shmrss.__file__.startswith(sys.argv[1]), shmrss.__file__  # the copy, not the tree under test
print(json.dumps(out))
"""


def _probe(src: Path, cache: Path, engine: str, *names: str) -> dict:
    # -S: no site hooks, so an editable install's finder cannot send ``import shmrss`` past the copy
    path = os.pathsep.join([str(src), *site.getsitepackages()])
    env = {**os.environ, "PYTHONPATH": path, "SHMRSS_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(src), engine, *names], capture_output=True,
                          text=True, env=env, cwd=src.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_hits_the_disk_cache_and_an_edit_recompiles_only_its_design(tmp_path):
    """In fresh processes over a copy of the package: the first compiles, the second loads every function
    from the disk cache, and after an edit to atomic.py only atomic's code is new (its monitor reads compile
    again, its engine is a new copy) while pernode's loads."""
    src = tmp_path / "src"
    shutil.copytree(PKG, src / "shmrss", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first = _probe(src, cache, "compile", "atomic", "pernode")
    assert first["atomic"]["engine"] == [0, 1] and all(first[d]["monitor"] == [0, 1] for d in first), first
    second = _probe(src, cache, "compile", "atomic", "pernode")
    assert second["atomic"]["engine"] == [1, 0] and all(second[d]["monitor"] == [1, 0] for d in second), second
    with open(src / "shmrss" / "designs" / "atomic.py", "a") as f:
        f.write("\n# an edit\n")
    # the engine's copy is named, not compiled (a minute of a loaded 2-core runner): the monitor's reads,
    # made by the same specialiser, show that a new copy compiles, and pernode's that the others load
    third = _probe(src, cache, "name", "atomic", "pernode")
    assert third["atomic"]["monitor"] == [0, 1], third
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
            fn = interface.function(mod, name)
            own, default = getattr(mod, name, None), interface.DEFAULTS.get(name)
            derived = name in ("peek_precise", "read_mm_counter")  # defaults made from the design's own reads
            alias = interface.ALIASES.get(name)  # the monitor's peek_approx, peek_bound: the design's own reads
            if own is None and alias is not None:
                assert fn is getattr(mod, alias), (d, name)
            assert fn is own if own is not None else (fn is default or derived or alias), (d, name)
            assert callable(fn), (d, name)
    atomic = designs.get("atomic")
    assert interface.function(atomic, "thread_created") is interface.no_thread_event
    assert interface.function(designs.get("single"), "threads") is designs.get("single").threads


def _private_design_words(path: Path) -> list[str]:
    """``alias._word`` where alias is a design module, or ``from shmrss.designs.X import _word``."""
    import ast

    tree = ast.parse(path.read_text())
    public = ("_common", "interface")
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "shmrss.designs":
            aliases |= {a.asname or a.name for a in node.names if a.name not in public}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shmrss.designs."):
            if node.module.rsplit(".", 1)[1] not in public:
                found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name.startswith("shmrss.designs.") and a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_outside_a_design_names_a_design_private_word():
    """Outside shmrss/designs, nothing reads a design's private words (the monitor once read 15 of them)."""
    offenders = {str(f.relative_to(PKG)): words for f in PKG.rglob("*.py")
                 if "designs" not in f.relative_to(PKG).parts and (words := _private_design_words(f))}
    assert offenders == {}


def test_the_private_word_check_finds_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from shmrss.designs import split as s\nx = s._CACHE\nfrom shmrss.designs.tree import _k\n")
    assert _private_design_words(bad) == ["shmrss.designs.tree._k", "s._CACHE"]


def test_compile_entries_is_idempotent_and_refuses_other_types():
    import types

    import numpy as np

    @specialise.entry("int64(int64[::1])")
    def first(words):
        return words[0]

    mod = types.SimpleNamespace(first=first)
    specialise.compile_entries(mod, ("first",))
    specialise.compile_entries(mod, ("first",))  # a second run's groups: no "compilation disabled"
    assert first(np.array([7], dtype=np.int64)) == 7
    with pytest.raises(TypeError):
        first(np.array([7.0]))  # would compile a new specialisation in a forked child: refused instead


def test_a_signal_while_compiling_kills_the_workers(monkeypatch):
    """Ctrl-C during the parallel compile: the workers (which ignore it, as every child does) are killed,
    none is left compiling, and the interruption reaches the caller at once."""
    import signal
    import threading
    import time

    monkeypatch.setattr(build, "engine_for", lambda design, groups: time.sleep(60))
    children = []
    real_start = build.mp.context.ForkProcess.start

    def start(self):
        real_start(self)
        children.append(self)

    monkeypatch.setattr(build.mp.context.ForkProcess, "start", start)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build._compile_in_children(["atomic", "tree", "split"], ("run",), 2)
    assert time.monotonic() - t0 < 10
    assert len(children) == 2 and all(c.exitcode is not None for c in children)


def test_a_failed_worker_leaves_its_design_to_the_parent(monkeypatch):
    """Both compile workers die (exit 3): prepare_engines returns normally, ends each worker, loads nothing
    they did not compile, and compiles both designs itself in the parent (so the real error would show)."""
    import os as _os

    parent = _os.getpid()
    ended, loaded = [], []
    monkeypatch.setattr(build, "_compile_child", lambda design, groups: _os._exit(3))
    monkeypatch.setattr(build, "_compiled_on_disk", lambda design, groups: False)
    monkeypatch.setattr(build, "_compiled", {})  # as in a process that has compiled nothing yet
    monkeypatch.setattr(build, "engine_for", lambda design, groups=("run",): loaded.append((design, _os.getpid())))
    real = build._compile_in_children

    def watched(todo, groups, workers, on_done=None):
        real(todo, groups, workers, on_done=lambda d: (ended.append(d), on_done(d)))

    monkeypatch.setattr(build, "_compile_in_children", watched)
    build.prepare_engines(["atomic", "tree"], ("run",), workers=2)
    assert sorted(ended) == ["atomic", "tree"]
    assert sorted(loaded) == [("atomic", parent), ("tree", parent)]


def test_a_run_with_a_reclaimer_compiles_the_recovery_it_may_need():
    """The reclaimer journals: when it dies the parent recovers it with recover_dead and settle_dead, which
    must be compiled before the run (not while the run waits on the recovery)."""
    from types import SimpleNamespace

    from shmrss.orchestrator import engine_groups

    base = dict(reader=True, oom=False, reclaimer=False, faults=[])
    assert "faults" not in engine_groups(SimpleNamespace(**base))
    assert "faults" in engine_groups(SimpleNamespace(**{**base, "reclaimer": True}))
    assert "faults" in engine_groups(SimpleNamespace(**{**base, "faults": ["kill"]}))


def test_an_interruption_before_measuring_is_one_line_and_its_exit_code(monkeypatch, capsys):
    from shmrss import cli, run_session
    from shmrss.runsignals import Interrupted

    def interrupted(spec):
        raise Interrupted(130)

    monkeypatch.setattr(run_session, "jobs", interrupted)
    code = cli.main(["run", "--design", "atomic", "--duration", "0.2", "--no-calibrate"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "Traceback" not in err

"""Kernel C beside the ports (docs/kernel-c.md): the shim's build, c: specs, k-percpu and ``shmrss verify``.

The c: tests use the test library written here (tests/kernel_c) and need only gcc; the
kernel tests need a kernel tree ($SHMRSS_KERNEL_SRC, which .ci/run sets from Debian's
linux-source-6.1) and are skipped with that reason without one.
"""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from shmrss.kernel import build, source, spec

HERE = Path(__file__).resolve().parent / "kernel_c"
ROUTE = build.route()  # "inlined" where clang is installed (tests/test_kernel_inline.py), else "called"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc: the shim cannot be built")


def _kernel_src() -> str | None:
    text = os.environ.get(source.ENV)
    try:
        return str(source.kernel_dir(text)) if text else None
    except source.KernelSourceError:
        return None


KSRC = _kernel_src()
needs_kernel = pytest.mark.skipif(KSRC is None or shutil.which("gcc") is None,
                                  reason="no kernel source ($SHMRSS_KERNEL_SRC; .ci/run extracts Debian's "
                                         "linux-source-6.1) or no gcc")


def _hpcc_src() -> str | None:
    """A tree with HPCC's lib/percpu_counter_tree.c: $SHMRSS_HPCC_SRC, else the kernel tree if it has one.
    The skip names HPCC, never the kernel source: CI has Debian's 6.1, which has no HPCC (tests/ci_skips.py)."""
    from shmrss.kernel import ktree

    for text in (os.environ.get("SHMRSS_HPCC_SRC"), os.environ.get(source.ENV)):
        try:
            return str(source.kernel_dir(text, ktree.LIB.files)) if text else None
        except source.KernelSourceError:
            continue
    return None


HPCC = _hpcc_src()
needs_hpcc = pytest.mark.skipif(HPCC is None or shutil.which("gcc") is None,
                                reason="no HPCC source (lib/percpu_counter_tree.c in $SHMRSS_HPCC_SRC or the "
                                       "kernel tree; docs/kernel-c.md says how to lay a copy out) or no gcc")


def _write_spec(d: Path, body: str, name: str = "s.toml") -> Path:
    (d / name).write_text(body)
    return d / name


FUNCS = ('[functions]\nsize = "mc_size"\ninit = "mc_init"\nadd = "mc_add"\nread_approx = "mc_read"\n'
         'read_precise = "mc_sum"\n')


def test_a_spec_naming_a_source_outside_its_directory_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _write_spec(tmp_path / "sub", f'name = "x"\nsources = ["../x.c"]\n{FUNCS}')
    with pytest.raises(spec.SpecError, match="outside the spec's directory"):
        spec.parse(path)


def test_a_spec_lacking_a_required_function_is_refused(tmp_path):
    path = _write_spec(tmp_path, 'name = "x"\nsources = ["x.c"]\n[functions]\nsize = "mc_size"\n')
    with pytest.raises(spec.SpecError, match="lacks init, add, read_approx, read_precise"):
        spec.parse(path)


@needs_gcc
def test_a_compile_error_is_one_line_with_the_compilers_first_error(tmp_path):
    (tmp_path / "x.c").write_text("long mc_size(int n) { return n }\n")
    s = spec.parse(_write_spec(tmp_path, f'name = "x"\nsources = ["x.c"]\n{FUNCS}'))
    with pytest.raises(build.BuildError, match=r"x\.c:1:.*error: expected") as e:
        build.build(s.library)
    assert "\n" not in str(e.value)


def test_source_extract_takes_only_the_files_k_percpu_compiles(tmp_path):
    tarball = tmp_path / "linux.tar"
    with tarfile.open(tarball, "w") as tar:
        for rel in (*source.FILES, "mm/memory.c"):
            data = f"/* {rel} */\n".encode()
            info = tarfile.TarInfo(f"linux-source-6.1/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = source.extract(tarball, tmp_path / "src")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(source.FILES)
    assert source.kernel_dir(str(dest)) == dest.resolve()
    with pytest.raises(source.KernelSourceError, match="lib/percpu_counter.c not found"):
        source.kernel_dir(str(tmp_path))


@needs_gcc
def test_the_test_library_holds_every_invariant_on_two_pinned_cpus(run_cli, tmp_path):
    code, data = run_cli(["run", "--design", f"c:{HERE / 'mycounter.toml'}", "--cpus", "2", "--mode", "threads",
                          "--duration", "0.5"], tmp_path)
    assert code == 0
    (r,) = data if isinstance(data, list) else [data]
    assert r["design"] == "c" and all(r["invariants"].values())
    assert r["kernel_c"]["name"] == "mycounter" and r["kernel_c"]["call"] == ROUTE


@needs_gcc
def test_the_lost_update_variant_fails_the_run_naming_the_invariant(tmp_path):
    done = subprocess.run([sys.executable, "-m", "shmrss", "run", "--design", f"c:{HERE / 'lossy.toml'}", "--cpus", "2", "--mode",
                           "threads", "--duration", "0.5", "--no-calibrate"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "precise_equals_truth" in done.stdout


@needs_gcc
def test_bad_kernel_source_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "shmrss", "run", "--design", "k-percpu", "--kernel-src", str(tmp_path), "--cpus", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"shmrss: error: kernel source {tmp_path}: lib/percpu_counter.c not found"]


@needs_kernel
def test_k_percpu_compiles_the_kernels_instructions():
    """The kernel's add: an unlocked add to the CPU's s32 after loading fbc->counters, a lock cmpxchg lock."""
    from shmrss.kernel import kpercpu

    so = build.build(kpercpu.library(Path(KSRC)))
    if shutil.which("objdump") is None:
        pytest.skip("no objdump")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True, text=True).stdout
    body = text.split("<percpu_counter_add_batch>:")[1].split("\n\n")[0]
    assert "mov    0x20(%rdi)" in body  # fbc->counters, from the lock's line (offset 32 of 40 bytes)
    assert any(ln.split()[1:2] == ["add"] and "(%r" in ln and "lock" not in ln for ln in body.splitlines()[1:])
    assert "lock cmpxchg" in body and "pause" in body


@needs_kernel
def test_verify_finds_no_mismatch_between_the_percpu_port_and_the_kernel():
    from shmrss import verify
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)
    bad, first = verify.compare("percpu", 3000, 7, 4)
    assert (bad, first) == (0, "")


@needs_kernel
def test_verify_follows_the_batch_an_offline_recomputes():
    """20 CPUs: batch 40; CPU 19 goes offline half way and 6.1's percpu_counter_cpu_dead sets it to
    max(32, 19 * 2) = 38 before folding. The port must do the same (before issue 23 item 7 it kept 40, so
    the per-CPU values parted at the first add between 38 and 40), and verify compares batch and mask."""
    import numpy as np

    from shmrss import verify, verify_writes
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)
    assert verify.compare("percpu", 4000, 3, 20) == (0, "")
    for design in ("percpu", "k-percpu"):
        driver = verify_writes.copy(design)
        seg = verify._segment(design, 20)
        try:
            out = np.zeros((4, 4), dtype=np.int64)
            driver.verify_apply(seg.words, verify.INIT, 0, 0, 0)
            assert verify.HOTPLUG[design](seg.words, 20).tolist() == [40] + [1] * 20, design
            for kind, cpu, k, d in ((0, 5, 1, 37), (1, 19, 0, 0), (0, 5, 1, 1)):
                driver.verify_apply(seg.words, kind, cpu, k, d)
            driver.verify_read(seg.words, out)
            assert verify.HOTPLUG[design](seg.words, 20).tolist() == [38] + [1] * 19 + [0], design
            assert verify.PCPU_VALUES[design](seg.words, 20)[1, 5] == 0, design  # |37 + 1| >= 38: folded
            assert out[1, :2].tolist() == [38, 38], design
        finally:
            seg.unlink()
            seg.close()


@needs_kernel
def test_verify_reports_a_kernel_that_differs(monkeypatch):
    """The kernel's batch changed behind the port's back: verify must see it at the first slow path."""
    from shmrss import verify
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)
    lib, _ = verify._logging("k-percpu").loaded()  # the build verify runs (it logs every lock taken)
    made = verify._segment

    def segment(design, ncpu):
        seg = made(design, ncpu)
        if design == "k-percpu":
            ctypes.c_int.in_dll(lib, "percpu_counter_batch").value = 16
        return seg

    monkeypatch.setattr(verify, "_segment", segment)
    bad, first = verify.compare("percpu", 500, 7, 2)
    assert bad > 0 and first.startswith("op ")


@needs_kernel
def test_percpu_and_k_percpu_both_hold_their_invariants_in_threads(run_cli, tmp_path):
    code, data = run_cli(["run", "--design", "percpu,k-percpu", "--kernel-src", KSRC, "--cpus", "2", "--mode",
                          "threads", "--duration", "0.5"], tmp_path)
    assert code == 0
    assert [r["design"] for r in data] == ["percpu", "k-percpu"]
    assert all(all(r["invariants"].values()) for r in data)
    kc = data[1]["kernel_c"]
    assert kc["kernel"].startswith("6.") and kc["call"] == ROUTE
    assert ("clang" in kc["compiler"]) == (ROUTE == "inlined")
    assert kc["source"].endswith("lib/percpu_counter.c") and "kernel_c" not in data[0]


@pytest.mark.parametrize("argv, message", [
    (["--design", "c", "--cpus", "1"], "design c needs its spec: --design c:SPEC.toml"),
    (["--design", f"c:{HERE / 'mycounter.toml'}", "--pack", "--cpus", "2"],
     "the C designs need each CPU's unit contiguous, as the kernel's: drop --pack"),
    (["--design", f"c:{HERE / 'mycounter.toml'},c:{HERE / 'lossy.toml'}", "--cpus", "1"], "one c: spec per run"),
], ids=["c-without-spec", "pack", "two-specs"])
@needs_gcc
def test_c_design_misuse_is_one_line_and_exit_2(argv, message):
    done = subprocess.run([sys.executable, "-m", "shmrss", "run", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"shmrss: error: {message}"]


@needs_kernel
def test_verify_reads_the_same_per_cpu_values_of_port_and_kernel():
    """What verify compares per CPU is read where each design keeps it (not zeros on both sides)."""
    import numpy as np

    from shmrss import verify, verify_writes
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)
    for design in ("percpu", "k-percpu"):
        driver = verify_writes.copy(design)
        seg = verify._segment(design, 2)
        try:
            out = np.zeros((4, 4), dtype=np.int64)
            for kind, cpu, k, d in ((2, 0, 0, 0), (0, 1, 2, 5), (0, 1, 2, -2), (0, 0, 3, 7)):
                driver.verify_apply(seg.words, kind, cpu, k, d)
            driver.verify_read(seg.words, out)
            values = verify.PCPU_VALUES[design](seg.words, 2)
            assert values.tolist() == [[0, 0], [0, 0], [0, 3], [7, 0]], design
            assert out[:, :2].tolist() == [[0, 0], [0, 0], [0, 3], [0, 7]], design
        finally:
            seg.unlink()
            seg.close()


SLOW_UNLOCK = "            spin_unlock(seg, lk)\n            tally(seg, cpu, L.S_SLOW, 1)\n"  # percpu.add's
EXTRA_LOCK = (SLOW_UNLOCK, "            spin_unlock(seg, lk)\n            spin_lock(seg, lk, owner(cpu))\n"
              + SLOW_UNLOCK)
EXTRA_WORD = (SLOW_UNLOCK, "            local_add(seg, mm_word(seg, mm, STRUCT_WORDS * k + _LIST), 1)\n"
              + SLOW_UNLOCK)


@needs_kernel
@pytest.mark.parametrize("plant, word", [(EXTRA_LOCK, "lock"), (EXTRA_WORD, "list.next")],
                         ids=["lock-taken-twice", "extra-word"])
def test_verify_names_the_word_a_mutant_port_writes_more_often_than_the_kernel(plant, word):
    """A percpu port whose slow path takes its lock a second time, or writes one more word of the struct,
    reads the same values as the kernel after every op: only the writes per shared word tell it apart."""
    from shmrss import verify
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)

    def mutate(text):
        assert text.count(plant[0]) == 1
        return text.replace(*plant)

    o = verify.outcome("percpu", 2000, 7, 4, mutate)
    writes = {k: v for k, v in o.kinds.items() if k.startswith("writes to ")}
    assert o.bad > 0 and set(o.kinds) == set(writes), o.kinds  # no read, per-CPU value or item differs
    assert {k.rsplit(".", 1 if word == "lock" else 2)[0] for k in writes} <= {f"writes to rss_stat[{m}]" for m in range(4)}
    assert all(k.endswith(f".{word}") for k in writes)
    assert f".{word}" in o.first and o.first.startswith("op ")
    port, kernel = o.wrote["percpu"], o.wrote["k-percpu"]
    assert sum(v for n, v in port.items() if n.endswith(word)) > sum(v for n, v in kernel.items() if n.endswith(word))


@needs_kernel
def test_verify_counts_each_lock_the_kernel_and_the_port_take():
    """Unmutated: every member's lock taken as often by the port as by the C (the slow paths and the offline),
    and the C's own percpu_counters_lock counted apart (the offline's walk of its list)."""
    from shmrss import verify
    from shmrss.kernel import kpercpu

    kpercpu.require("k-percpu", KSRC)
    o = verify.outcome("percpu", 2000, 7, 4)
    assert o.bad == 0
    port, kernel = o.wrote["percpu"], o.wrote["k-percpu"]
    assert o.c_only == ["percpu_counters_lock"] and kernel["percpu_counters_lock"] == 1
    assert {n: v for n, v in kernel.items() if n != "percpu_counters_lock"} == port
    assert all(port[f"rss_stat[{m}].lock"] > 0 for m in range(4))


@needs_gcc
def test_a_library_needing_more_per_cpu_memory_than_its_spec_states_is_refused(tmp_path):
    shutil.copy(HERE / "mycounter.c", tmp_path)
    text = (HERE / "mycounter.toml").read_text().replace("percpu_bytes = 4", "percpu_bytes = 0")
    path = _write_spec(tmp_path, text.replace('name = "mycounter"', 'name = "tight"'))
    done = subprocess.run([sys.executable, "-m", "shmrss", "run", "--design", f"c:{path}", "--cpus", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"shmrss: error: {path}: tight's init failed on one CPU with percpu_bytes = 0 "
        "(does it allocate more per-CPU memory than that?)"]


@needs_hpcc
def test_verify_finds_no_mismatch_between_the_tree_port_and_hpcc_level_writes_included(monkeypatch):
    from shmrss import verify
    from shmrss.kernel import ktree

    monkeypatch.setenv(source.ENV, HPCC)  # restored after: the other kernel tests read the 6.1 tree
    ktree.require("k-tree", HPCC)
    o = verify.outcome("tree", 3000, 7, 8)
    assert (o.bad, o.first) == (0, "")
    assert o.writes["tree"] == o.writes["k-tree"] and len(o.writes["tree"]) == 3 and min(o.writes["tree"]) > 0


@needs_hpcc
def test_verify_reports_a_tree_item_that_differs(monkeypatch):
    """HPCC's first level-1 item read one higher than it is: verify must report the items, not only reads."""
    from shmrss import verify
    from shmrss.kernel import ktree

    monkeypatch.setenv(source.ENV, HPCC)
    ktree.require("k-tree", HPCC)
    real = verify.ITEMS["k-tree"]

    def items(w):
        out = real(w)
        out[0, 0] += 1
        return out

    monkeypatch.setitem(verify.ITEMS, "k-tree", items)
    o = verify.outcome("tree", 200, 7, 4)
    assert o.bad == 200 and o.kinds == {"items": 200} and "items of member 0" in o.first


@needs_hpcc
def test_tree_and_k_tree_both_hold_their_invariants_in_threads(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv(source.ENV, HPCC)  # --kernel-src sets it for the run's CPUs; restored after
    code, data = run_cli(["run", "--design", "tree,k-tree", "--kernel-src", HPCC, "--cpus", "2", "--mode",
                          "threads", "--duration", "0.5"], tmp_path)
    assert code == 0
    assert [r["design"] for r in data] == ["tree", "k-tree"]
    assert all(all(r["invariants"].values()) for r in data)
    assert data[1]["kernel_c"]["source"].endswith("lib/percpu_counter_tree.c")


def test_verify_refuses_a_port_without_kernel_c(capsys):
    from shmrss.cli import main

    assert main(["verify", "--design", "atomic"]) == 2
    assert "no kernel C for design 'atomic'" in capsys.readouterr().err


def test_a_build_another_process_placed_first_is_kept(tmp_path):
    """Two runs (or test workers) building one library at once: each in its own temporary directory, and
    the one that finishes second keeps the first's complete build instead of failing or removing it."""
    from shmrss.kernel import build

    out = tmp_path / "k-percpu-abc"
    out.mkdir()
    (out / "lib.so").write_text("first")
    mine = tmp_path / "k-percpu-abc.tmp123"
    mine.mkdir()
    (mine / "lib.so").write_text("second")
    build._publish(mine, out, "called")
    assert (out / "lib.so").read_text() == "first" and not mine.exists()
    (out / "lib.so").unlink()  # an incomplete build in place (no lib.so) is replaced
    mine.mkdir()
    (mine / "lib.so").write_text("second")
    build._publish(mine, out, "called")
    assert (out / "lib.so").read_text() == "second"

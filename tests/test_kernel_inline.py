"""The inlined route (docs/kernel-c.md): clang bitcode linked into the numba loop, the kernel's instructions in it.

The tests compile a small loop over a C design's add (``ccall.entry_call``, as the
designs' ``add`` does) without numba's disk cache, so its machine code can be read:
the C's instructions must be in the loop, with no call, and the values must be the
shared object's (one state for the inlined code and the calls from Python). They
need clang and are skipped with that reason without it (.ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from shmrss.kernel import build, ccall, inline, spec
from shmrss.layout import OWNER_PARENT

HERE = Path(__file__).resolve().parent / "kernel_c"
needs_clang = pytest.mark.skipif(shutil.which("clang") is None or shutil.which("gcc") is None,
                                 reason="no clang: the inlined route needs clang (apt-get install clang) and gcc")
KSRC = os.environ.get("SHMRSS_KERNEL_SRC")
needs_kernel = pytest.mark.skipif(KSRC is None or not (Path(KSRC) / "lib/percpu_counter.c").is_file(),
                                  reason="no kernel source ($SHMRSS_KERNEL_SRC; .ci/run extracts Debian's 6.1)")

# a per-CPU s64 updated with this_cpu_try_cmpxchg (written here; the later kernels' add has this form)
TRY_CMPXCHG_C = r"""
#include <linux/percpu.h>
struct tc { s64 __percpu *v; };
long tc_size(int n) { return sizeof(struct tc); }
int tc_init(void *o, int n) { struct tc *t = o; t->v = alloc_percpu(s64); return t->v ? 0 : -ENOMEM; }
void tc_add(void *o, long d)
{
	struct tc *t = o;
	s64 old = this_cpu_read(*t->v);

	do {
	} while (!this_cpu_try_cmpxchg(*t->v, &old, old + d));
}
long tc_sum(void *o)
{
	struct tc *t = o;
	long s = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		s += *per_cpu_ptr(t->v, cpu);
	return s;
}
"""
TRY_CMPXCHG_SPEC = ('name = "tc"\nsources = ["tc.c"]\n[functions]\nsize = "tc_size"\ninit = "tc_init"\n'
                    'add = "tc_add"\nread_approx = "tc_sum"\nread_precise = "tc_sum"\n')


def _loop(call):
    @njit
    def loop(seg, n, cpu, obj):
        for _ in range(n):
            call(seg, 0, cpu, obj, 1)

    return loop


def _native_asm(loop) -> str:
    """The loop's own machine code (not numba's Python wrapper, which calls)."""
    asm = loop.inspect_asm(loop.signatures[0])
    return asm.split("_ZN7cpython")[0]


def _inline_asm_lines(asm: str) -> list[str]:
    """The instructions of the shim's inline asm (between #APP and #NO_APP)."""
    return [ln.strip() for block in re.findall(r"#APP(.*?)#NO_APP", asm, re.S) for ln in block.splitlines()
            if ln.strip()]


def _spec_scratch(monkeypatch, path: Path):
    monkeypatch.setenv(spec.ENV, str(path))
    scratch = np.zeros(1 << 12, dtype=np.int64)  # shared area | object at 8192 | the CPU's unit at 16384
    assert spec.call("cg_setup", scratch.ctypes.data, 0, 0, 1 | 1 << 16 | OWNER_PARENT << 32) == 0
    assert spec.call("cg_init", scratch.ctypes.data, 8192, 16384, 16) == 0
    return scratch


def test_the_route_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv(build.ROUTE_ENV, "called")
    assert build.route() == "called"
    monkeypatch.setenv(build.ROUTE_ENV, "sideways")
    with pytest.raises(build.BuildError, match="expected auto, called or inlined"):
        build.route()
    monkeypatch.setenv(build.ROUTE_ENV, "inlined")
    monkeypatch.setattr(build.bitcode, "clang", lambda: None)
    with pytest.raises(build.BuildError, match="needs clang"):
        build.route()
    monkeypatch.setenv(build.ROUTE_ENV, "auto")
    assert build.route() == "called"


@needs_clang
def test_each_route_builds_its_own_library_and_only_the_inlined_one_has_a_copy(monkeypatch):
    s = spec.parse(HERE / "mycounter.toml")
    monkeypatch.setenv(build.ROUTE_ENV, "inlined")
    inlined = build.build(s.library).parent
    monkeypatch.setenv(build.ROUTE_ENV, "called")
    called = build.build(s.library).parent
    assert inlined != called
    assert (inlined / "inline.ll").is_file() and not (called / "inline.ll").exists()
    names = (inlined / "symbols.txt").read_text().split()
    assert "cg_add" in names and "shim_base" in names and "mc_add" in names
    copy = (inlined / "inline.ll").read_text()
    assert f"define available_externally i64 @{inline.prefix(inlined)}cg_add(" in copy
    assert "@llvm.global_ctors" not in copy


@needs_clang
def test_the_called_route_leaves_the_design_uninlined_and_its_copies_unsalted(monkeypatch):
    monkeypatch.setenv(build.ROUTE_ENV, "called")
    monkeypatch.setenv(spec.ENV, str(HERE / "mycounter.toml"))
    spec.load()
    assert inline.route("c") == "called" and inline.key("c") == "" and inline.symbol("c", "cg_add") is None
    monkeypatch.setenv(build.ROUTE_ENV, "inlined")
    spec.load()
    assert inline.route("c") == "inlined" and inline.key("c").startswith("c-mycounter-")
    assert spec.provenance()["call"] == "inlined" and "clang" in spec.provenance()["compiler"]


@needs_clang
def test_a_try_cmpxchg_add_inlines_into_the_loop_as_one_unlocked_cmpxchg(monkeypatch, tmp_path):
    (tmp_path / "tc.c").write_text(TRY_CMPXCHG_C)
    (tmp_path / "tc.toml").write_text(TRY_CMPXCHG_SPEC)
    monkeypatch.setenv(build.ROUTE_ENV, "inlined")
    seg = _spec_scratch(monkeypatch, tmp_path / "tc.toml")
    loop = _loop(ccall.entry_call("c", "cg_add"))
    loop(seg, 100_000, 0, 8192)
    assert spec.call("cg_sum", seg.ctypes.data, OWNER_PARENT, 8192) == 100_000  # the shared object's sum
    asm = _native_asm(loop)
    assert not re.search(r"\bcall", asm), "the add was called, not inlined"
    ops = _inline_asm_lines(asm)
    assert any(op.startswith("cmpxchgq") for op in ops), ops
    assert not any("lock" in op for op in ops), ops


@needs_clang
@needs_kernel
def test_k_percpu_inlines_the_kernels_fast_path_and_shares_the_shared_objects_state(monkeypatch):
    from shmrss.kernel import kpercpu

    monkeypatch.setenv(build.ROUTE_ENV, "inlined")
    monkeypatch.setenv("SHMRSS_KERNEL_SRC", KSRC)
    assert kpercpu.provenance()["call"] == "inlined"
    seg = np.zeros(1 << 13, dtype=np.int64)  # shared area | rss_stat at 8192 | the CPU's unit at 32768
    base = seg.ctypes.data
    assert kpercpu.call("kp_setup", base, 0, 0, 1 | 1 << 16 | OWNER_PARENT << 32) == 0
    assert kpercpu.call("kp_init", base, 8192, 32768, 32) == 0
    loop = _loop(ccall.entry_call("k-percpu", "kp_add"))
    loop(seg, 100_000, 0, 8192)
    assert kpercpu.call("kp_sum", base, OWNER_PARENT, 8192) == 100_000
    asm = _native_asm(loop)
    assert not re.search(r"\bcall", asm), "the add was called, not inlined"
    ops = _inline_asm_lines(asm)
    # 6.1's fast path is this_cpu_add: one unlocked add; its slow path's __this_cpu_sub an unlocked sub
    assert any(op.startswith("addl") for op in ops) and any(op.startswith("subl") for op in ops), ops
    assert not any("lock" in op for op in ops), ops
    assert re.search(r"lock\s+cmpxchgl", asm), "the slow path's raw_spin_lock"


CACHED_LOOP = '''
import sys
import numpy as np
from numba import njit
from shmrss.kernel import ccall, inline, spec
from shmrss.layout import OWNER_PARENT

spec.load()  # builds (or finds) and loads the library: its symbols are registered before the loop loads
add = ccall.entry_call("c", "cg_add")


@njit(cache=True)
def loop(seg, n, cpu, obj):
    for _ in range(n):
        add(seg, 0, cpu, obj, 1)


seg = np.zeros(1 << 12, dtype=np.int64)
spec.call("cg_setup", seg.ctypes.data, 0, 0, 1 | 1 << 16 | OWNER_PARENT << 32)
spec.call("cg_init", seg.ctypes.data, 8192, 16384, 16)
loop(seg, 1000, 0, 8192)
print(inline.route("c"), spec.call("cg_sum", seg.ctypes.data, OWNER_PARENT, 8192),
      sum(loop.stats.cache_hits.values()), sum(loop.stats.cache_misses.values()))
'''


@needs_clang
def test_numbas_disk_cache_keeps_the_inlined_loop_and_a_fresh_process_resolves_its_symbols(tmp_path):
    import subprocess
    import sys

    (tmp_path / "cached_loop.py").write_text(CACHED_LOOP)
    env = {**os.environ, spec.ENV: str(HERE / "mycounter.toml"), build.ROUTE_ENV: "inlined"}
    env.pop("NUMBA_DISABLE_JIT", None)
    runs = [subprocess.run([sys.executable, "-W", "error::numba.NumbaWarning", "cached_loop.py"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    first, second = (r.stdout.split() for r in runs)
    assert first == ["inlined", "1000", "0", "1"]  # compiled, and saved
    assert second == ["inlined", "1000", "1", "0"]  # loaded from disk, its symbols the library's

"""shmrss.atomics: the values each intrinsic returns and the x86-64 instruction it compiles to.

The wrappers below are fresh @njit functions WITHOUT cache=True: numba's
``inspect_asm`` does not work on functions loaded from its on-disk cache.
Each is checked in two forms, on the numpy array and on the raw pointer
(``atomics.raw``) that the hot loops use.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from shmrss import atomics as A

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
# the first example of each test pays numba's compile: no per-example deadline
relaxed = settings(deadline=None, max_examples=50)
N = 16


def wrap(x):
    """Two's complement int64 wrap-around, as the hardware adds."""
    return (x + (1 << 63)) % (1 << 64) - (1 << 63)


# ----------------------------------------------------------------- wrappers: array form
@njit
def a_load(a, i):
    return A.load(a, i)


@njit
def a_store(a, i, v):
    A.store(a, i, v)


@njit
def a_local_add(a, i, v):
    A.local_add(a, i, v)


@njit
def a_xadd(a, i, v):
    return A.xadd(a, i, v)


@njit
def a_cmpxchg(a, i, old, new):
    return A.cmpxchg(a, i, old, new)


@njit
def a_local_cmpxchg(a, i, old, new):
    return A.local_cmpxchg(a, i, old, new)


@njit
def a_xchg(a, i, v):
    return A.xchg(a, i, v)


@njit
def a_spin_lock(a, i):
    return A.spin_lock(a, i, 1)


@njit
def a_spin_unlock(a, i):
    A.spin_unlock(a, i)


# ----------------------------------------------------------------- wrappers: raw-pointer form
@njit
def p_load(a, i):
    return A.load(A.raw(a), i)


@njit
def p_store(a, i, v):
    A.store(A.raw(a), i, v)


@njit
def p_local_add(a, i, v):
    A.local_add(A.raw(a), i, v)


@njit
def p_xadd(a, i, v):
    return A.xadd(A.raw(a), i, v)


@njit
def p_cmpxchg(a, i, old, new):
    return A.cmpxchg(A.raw(a), i, old, new)


@njit
def p_local_cmpxchg(a, i, old, new):
    return A.local_cmpxchg(A.raw(a), i, old, new)


@njit
def p_xchg(a, i, v):
    return A.xchg(A.raw(a), i, v)


@njit
def p_spin_lock(a, i):
    return A.spin_lock(A.raw(a), i, 1)


@njit
def p_spin_unlock(a, i):
    A.spin_unlock(A.raw(a), i)


@njit(nogil=True)
def p_spin_lock_nogil(a, i):
    return A.spin_lock(A.raw(a), i, 1)


# ----------------------------------------------------------------- wrappers: no memory operand
@njit
def f_pause():
    A.pause()


@njit
def f_rdtsc():
    return A.rdtsc()


@njit
def f_fence():
    A.fence()


@njit
def f_compiler_barrier(a, i, v):
    A.store(a, i, v)
    A.compiler_barrier()
    A.store(a, i + 1, v)


@njit
def f_rdtsc_series(n):
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = A.rdtsc()
    return out


FORMS = {
    "load": (a_load, p_load),
    "store": (a_store, p_store),
    "local_add": (a_local_add, p_local_add),
    "xadd": (a_xadd, p_xadd),
    "cmpxchg": (a_cmpxchg, p_cmpxchg),
    "local_cmpxchg": (a_local_cmpxchg, p_local_cmpxchg),
    "xchg": (a_xchg, p_xchg),
    "spin_lock": (a_spin_lock, p_spin_lock),
    "spin_unlock": (a_spin_unlock, p_spin_unlock),
}
BOTH = pytest.mark.parametrize("form", [0, 1], ids=["array", "pointer"])


def fn(name, form):
    return FORMS[name][form]


def words(fill=0):
    return np.full(N, fill, dtype=np.int64)


# ================================================================= values
@BOTH
@relaxed
@given(i=st.integers(0, N - 1), v=I64)
def test_store_then_load(form, i, v):
    a = words(7)
    fn("store", form)(a, i, v)
    assert a[i] == v
    assert fn("load", form)(a, i) == v
    assert all(a[j] == 7 for j in range(N) if j != i)  # only the one word


@BOTH
@relaxed
@given(i=st.integers(0, N - 1), start=I64, v=I64)
def test_local_add(form, i, start, v):
    a = words(start)
    fn("local_add", form)(a, i, v)
    assert a[i] == wrap(start + v)
    assert all(a[j] == start for j in range(N) if j != i)


@BOTH
@relaxed
@given(i=st.integers(0, N - 1), start=I64, v=I64)
def test_xadd_returns_old(form, i, start, v):
    a = words(start)
    assert fn("xadd", form)(a, i, v) == start
    assert a[i] == wrap(start + v)


@BOTH
@pytest.mark.parametrize("name", ["cmpxchg", "local_cmpxchg"])
@relaxed
@given(i=st.integers(0, N - 1), cur=I64, new=I64)
def test_cmpxchg_success(name, form, i, cur, new):
    a = words(cur)
    assert fn(name, form)(a, i, cur, new) == cur
    assert a[i] == new


@BOTH
@pytest.mark.parametrize("name", ["cmpxchg", "local_cmpxchg"])
@relaxed
@given(i=st.integers(0, N - 1), cur=I64, expected=I64, new=I64)
def test_cmpxchg_failure_leaves_word(name, form, i, cur, expected, new):
    if expected == cur:
        expected = wrap(cur + 1)
    a = words(cur)
    assert fn(name, form)(a, i, expected, new) == cur  # returns what it found
    assert a[i] == cur  # and did not write


@BOTH
@relaxed
@given(i=st.integers(0, N - 1), start=I64, v=I64)
def test_xchg(form, i, start, v):
    a = words(start)
    assert fn("xchg", form)(a, i, v) == start
    assert a[i] == v


@BOTH
def test_spin_lock_uncontended(form):
    a = words()
    for _ in range(3):
        assert fn("spin_lock", form)(a, 5) == 0  # no failed attempt
        assert a[5] == 1
        fn("spin_unlock", form)(a, 5)
        assert a[5] == 0
    assert a.sum() == 0


def test_spin_lock_counts_spins_when_contended():
    a = words()
    a[3] = 1  # held by "someone else"
    out = []
    p_spin_lock_nogil(words(), 0)  # compile outside the thread
    th = threading.Thread(target=lambda: out.append(p_spin_lock_nogil(a, 3)))
    th.start()
    time.sleep(0.05)
    assert th.is_alive(), "spin_lock took a held lock"
    a[3] = 0  # release
    th.join(5)
    assert not th.is_alive()
    assert out and out[0] > 0
    assert a[3] == 1  # the thread holds it now


def test_rdtsc_monotonic():
    s = f_rdtsc_series(10_000)
    assert np.all(np.diff(s) >= 0)
    t0 = f_rdtsc()
    time.sleep(0.01)
    t1 = f_rdtsc()
    assert t1 > t0 + 1_000_000 * 0.1  # 10 ms at >= 0.1 ticks/ns


def test_calibrate_tsc_plausible():
    r = A.calibrate_tsc(0.02)
    assert 0.1 <= r <= 10.0


def test_intrinsics_reject_wrong_arrays():
    with pytest.raises(Exception, match="int64"):
        a_load(np.zeros(4, dtype=np.int32), 0)


# ================================================================= instructions
def body_asm(dispatcher) -> list[str]:
    """Instructions of the compiled function itself (not numba's CPython wrapper), comments dropped."""
    assert dispatcher.signatures, "call the wrapper once before inspecting it"
    sig = dispatcher.signatures[0]
    asm = dispatcher.inspect_asm(sig)
    name = dispatcher.overloads[sig].fndesc.mangled_name
    lines = asm.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(name + ":"))
    out = []
    for ln in lines[start + 1:]:
        if ln.startswith(".Lfunc_end") or ln.startswith("\t.size"):
            break
        ln = ln.split("#", 1)[0].strip()
        if ln and not ln.endswith(":") and not ln.startswith("."):
            out.append(re.sub(r"\s+", " ", ln))
    assert out, "empty function body"
    return out


def _compiled(name, form):
    f = fn(name, form)
    a = words()
    if name in ("load", "spin_unlock"):
        f(a, 1) if name == "load" else f(a, 1)
    elif name in ("cmpxchg", "local_cmpxchg"):
        f(a, 1, 0, 0)
    elif name == "spin_lock":
        f(a, 1)
    else:
        f(a, 1, 1)
    return body_asm(f)


MEM = r"-?\w*\(%\w+(?:,%\w+(?:,\d)?)?\)"  # an AT&T memory operand
STACK_OR_RET = re.compile(r"\(%rsp|\(%rdi\)")  # arguments on the stack, the return slot


def has(body, pattern):
    return any(re.search(pattern, ln) for ln in body)


def no_lock(body):
    return not any(ln.startswith("lock") or " lock " in f" {ln} " for ln in body)


def test_asm_helper_sees_a_lock_when_there_is_one():
    # the checks below would pass vacuously if the extraction lost instructions
    body = _compiled("xadd", 0)
    assert not no_lock(body)


@BOTH
def test_local_add_is_add_to_memory_without_lock(form):
    body = _compiled("local_add", form)
    assert has(body, rf"^(add|inc)q? (%\w+|\$-?\d+), {MEM}$") or has(body, rf"^incq? {MEM}$"), body
    assert no_lock(body), body
    assert not has(body, r"xchg|xadd|mfence"), body


@BOTH
def test_xadd_is_lock_xadd(form):
    body = _compiled("xadd", form)
    assert has(body, rf"^lock xaddq? %\w+, {MEM}$"), body


@BOTH
def test_cmpxchg_is_lock_cmpxchg(form):
    body = _compiled("cmpxchg", form)
    assert has(body, rf"^lock cmpxchgq? %\w+, {MEM}$"), body


@BOTH
def test_local_cmpxchg_has_no_lock(form):
    body = _compiled("local_cmpxchg", form)
    assert has(body, rf"^cmpxchgq? %\w+, {MEM}$"), body
    assert no_lock(body), body


@BOTH
def test_xchg_is_xchg(form):
    body = _compiled("xchg", form)
    assert has(body, rf"^xchgq? (%\w+, {MEM}|{MEM}, %\w+)$"), body


@BOTH
def test_load_is_plain_mov(form):
    body = _compiled("load", form)
    loads = [ln for ln in body if re.match(rf"^movq? ({MEM}), %\w+$", ln) and not STACK_OR_RET.search(ln)]
    assert loads, body
    assert no_lock(body) and not has(body, r"xchg|mfence"), body


@BOTH
def test_store_is_plain_mov(form):
    body = _compiled("store", form)
    stores = [ln for ln in body if re.match(rf"^movq? %\w+, ({MEM})$", ln) and not STACK_OR_RET.search(ln)]
    assert stores, body
    # a seq_cst store would be xchg or mov + mfence
    assert no_lock(body) and not has(body, r"xchg|mfence"), body


@BOTH
def test_spin_lock_is_lock_cmpxchg_with_pause(form):
    body = _compiled("spin_lock", form)
    assert has(body, rf"^lock cmpxchgq? %\w+, {MEM}$"), body
    assert has(body, r"^pause$"), body


def test_pause_rdtsc_fence():
    f_pause()
    f_rdtsc()
    f_fence()
    assert has(body_asm(f_pause), r"^pause$")
    assert has(body_asm(f_rdtsc), r"^rdtsc$")
    # a full barrier: LLVM 15+ emits ``lock or $0, (%rsp)`` (cheaper than mfence, same ordering);
    # the atomics docstring still says mfence
    assert has(body_asm(f_fence), r"^mfence$|^lock or[lq]? \$0, ")


def test_compiler_barrier_emits_no_fence():
    a = words()
    f_compiler_barrier(a, 1, 9)
    assert a[1] == 9 and a[2] == 9
    body = body_asm(f_compiler_barrier)
    assert no_lock(body) and not has(body, r"mfence|xchg"), body

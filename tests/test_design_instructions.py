"""Each design's compiled ``add`` issues the instructions its docstring names (issue 21, item 2).

The add of every design is compiled alone (inlined into a one-line wrapper, as it is inlined into the
engine's CPU loop) and its machine code is classed: the locked read-modify-writes it holds (``lock add``
/``lock xadd``, which LLVM emits as ``lock add`` when the result is unused, ``lock cmpxchg``) and the
unlocked ones (``xadd``, ``cmpxchg``: ``this_cpu_add_return``, ``this_cpu_cmpxchg``). This needs no second
core: an add that lost its ``lock`` prefix fails here on any runner, where the lost-update tests of
test_concurrent.py would need two CPUs racing.
"""

from __future__ import annotations

import re

import pytest
from numba import njit, types

from shmrss import designs
from test_atomics import body_asm

# The read-modify-write classes each design's add must hold, and no others.
EXPECTED = {
    "atomic": {"lock add"},  # atomic_long_add_return on the mm's word
    "split": {"lock add"},  # add_mm_counter's atomic and the task cache's flush (plain adds to the cache)
    "percpu": {"cmpxchg", "lock cmpxchg"},  # this_cpu_try_cmpxchg fast path; raw_spin_lock in the slow path
    "pcpcache": {"lock add"},  # the atomic a miss falls back to; a hit is a plain add to the CPU's cache
    "single": {"cmpxchg", "lock cmpxchg"},  # per-CPU mode as percpu (the single-thread add is a plain add)
    "single-atomic": {"cmpxchg", "lock cmpxchg", "lock add"},  # and the remote updates' atomic
    "pernode": {"lock add"},  # atomic_long_add_return on the node's counter
    "tree": {"xadd", "lock add"},  # this_cpu_add_return on the CPU's level, atomic_add_return above it
}
ADD_ARGS = (types.int64[::1], types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)


def rmw_classes(body: list[str]) -> set[str]:
    """The read-modify-write instruction classes of a function body (AT&T syntax, one per line)."""
    found = set()
    for ln in body:
        locked = ln.startswith("lock")
        op = ln.split()[1 if locked else 0]
        if re.match(r"^(x?add|sub|inc|dec)[bwlq]?$", op) and locked:
            found.add("lock add")
        elif re.match(r"^cmpxchg[bwlq]?$", op):
            found.add("lock cmpxchg" if locked else "cmpxchg")
        elif re.match(r"^xadd[bwlq]?$", op):
            found.add("xadd")
        elif re.match(r"^xchg[bwlq]?$", op):
            found.add("xchg")
    return found


def compiled_add(name: str) -> list[str]:
    add = designs.get(name).add

    @njit
    def one_add(seg, cpu, task, mm, k, d, fault):
        add(seg, cpu, task, mm, k, d, fault)

    one_add.compile(ADD_ARGS)
    return body_asm(one_add)


def test_every_design_has_its_instructions_named():
    assert set(EXPECTED) == set(designs.DESIGNS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_add_issues_the_kernels_instructions(name):
    body = compiled_add(name)
    assert rmw_classes(body) == EXPECTED[name], "\n".join(ln for ln in body if "lock" in ln or "xadd" in ln
                                                          or "cmpxchg" in ln)


@pytest.mark.parametrize("body, classes", [
    (["lock addq %rax, (%rdi)"], {"lock add"}),
    (["lock xaddq %rax, 8(%rdi,%rcx,8)"], {"lock add"}),
    (["xaddq %rax, (%rdi)"], {"xadd"}),
    (["cmpxchgq %rcx, (%rdi)"], {"cmpxchg"}),
    (["lock cmpxchgq %rcx, (%rdi)"], {"lock cmpxchg"}),
    (["addq %rax, (%rdi)", "movq (%rdi), %rax"], set()),  # a plain add: this_cpu_add, no RMW class
])
def test_the_classes_tell_a_dropped_lock_apart(body, classes):
    assert rmw_classes(body) == classes

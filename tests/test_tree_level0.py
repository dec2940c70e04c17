"""tree's level-0 allocation and bias, against HPCC's code (issue 23 item 6).

What fork zeroes and exit frees per possible CPU is the level-0 allocation of
``percpu_counter_tree_init_many``: the copy sizes it by ``sizeof(*counters->level0)``
(one ``unsigned long`` per counter), 32 bytes per CPU for the four rss counters. The
port allocates the same, and its docstring quotes the code, not the issue's "about 224 B".
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from shmrss import layout as L
from shmrss.designs import tree
from test_kernel_c import HPCC, needs_hpcc

COUNTERS = L.NMEMBERS  # NR_MM_COUNTERS


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _copy_text() -> str:
    return _squash((Path(HPCC) / "lib/percpu_counter_tree.c").read_text()
                   + (Path(HPCC) / "include/linux/percpu_counter_tree.h").read_text())


def test_the_port_allocates_one_word_per_counter_per_cpu():
    """pcpu_words_per_mm: the four level-0 counters, 8 bytes each, in every possible CPU's unit."""
    for possible in (1, 2, 8, 64, 4096):
        assert tree.shape(min(possible, 2), possible, 1).pcpu_words_per_mm * 8 == COUNTERS * 8


@needs_hpcc
def test_the_docstring_quotes_only_lines_of_the_copy_about_level0_and_bias():
    """Every C fragment of tree's docstring about the level-0 allocation or the bias is the copy's.
    Before issue 23 item 6 the docstring quoted ``int bias;`` and an ``ALIGN(sizeof(*counters), ...)``
    allocation, neither of which the copy has."""
    copy = _copy_text()
    doc = tree.__doc__
    fragments = [f for f in re.findall(r"``([^`]+)``", doc) if re.search(r"bias|counter_size|alloc_percpu", f)]
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", doc)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()
             if re.search(r"counter_size|alloc_percpu|bias", ln) and ln.strip() != "..."]
    assert fragments and lines
    missing = [f for f in fragments + lines if _squash(f) not in copy]
    assert missing == []
    assert "size_t counter_size = sizeof(*counters->level0)," in copy  # what the port follows: 8 bytes per counter
    assert "long bias;" in copy and "int bias;" not in copy


@needs_hpcc
def test_the_c_carves_the_same_eight_bytes_per_counter(monkeypatch):
    """k-tree (the copy, compiled): the level-0 pointers of rss_stat[0..3] are 8 bytes apart, so one mm
    takes 32 bytes of each CPU's unit, the port's pcpu_words_per_mm words."""
    from shmrss import verify, verify_writes
    from shmrss.designs import k_tree as K
    from shmrss.kernel import ktree, source

    monkeypatch.setenv(source.ENV, HPCC)
    ktree.require("k-tree", HPCC)
    driver = verify_writes.copy("k-tree")
    seg = verify._segment("k-tree", 4)
    try:
        driver.verify_apply(seg.words, verify.INIT, 0, 0, 0)  # mm_init
        w = seg.words
        size, at = int(w[L.H_DPARAM + K.D_SIZE]), int(w[L.H_DPARAM + K.D_LEVEL0])
        base = int(w[L.H_MM]) * 8
        level0 = [int(w[(base + k * size + at) // 8]) for k in range(COUNTERS)]
        assert np.diff(level0).tolist() == [8] * (COUNTERS - 1)
        assert level0[-1] + 8 - level0[0] == tree.shape(4, 4, 1).pcpu_words_per_mm * 8 == 32
    finally:
        seg.unlink()
        seg.close()

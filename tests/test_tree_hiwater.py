"""HPCC v15 2/3: ``get_mm_counter`` is ``percpu_counter_tree_precise_sum_positive``, so the read
``update_hiwater_rss`` makes before every unmap walks the possible CPUs and is exact (issue 23 item 2)."""

from __future__ import annotations

import json

import pytest

from shmrss.designs import interface, percpu, tree


def test_tree_get_mm_counter_is_the_precise_walk_others_keep_their_read():
    assert interface.function(tree, "read_mm_counter") is tree.read_mm_counter
    # upstream 6.2's get_mm_counter stays percpu_counter_read_positive: the default, the approximate read
    assert interface.function(percpu, "read_mm_counter") is not interface.function(tree, "read_mm_counter")


@pytest.mark.parametrize("possible", [8, 64])
def test_unmap_records_the_exact_peak_under_tree(run_cli, tmp_path, possible):
    """1,000 faults then an unmap of them, one CPU: the peak the unmap reads is 1,000 pages exactly.
    The root (the approximate sum v5 read) holds only carried multiples of a batch: below 1,000."""
    wl = tmp_path / "peak.json"
    wl.write_text(json.dumps({"name": "peak", "mms": 1, "tapes": {"t": [["fault", "anon", 1000],
                                                                         ["unmap", "anon", 1000]]},
                              "tasks": [{"mm": 0, "tape": "t", "cpu": 0}]}))
    code, r = run_cli(["run", "--design", "tree", "--workload", str(wl), "--cpus", "1", "--possible-cpus",
                       str(possible), "--duration", "0.3"], tmp_path)
    assert code == 0 and all(r["invariants"].values()), r["invariants"]
    assert r["hiwater_rss"]["max"] == 1000

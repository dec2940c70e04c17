"""The 2-pass OOM victim selection (HPCC v16 3/3, mm/oom_kill.c) on crafted badness, through the engine's
compiled ``oom_pass`` (the code a measurement runs), with tree's ranges (8 CPUs: under 768, over 744 per
member, so 3072 / 2976 for a badness of four members).

Each mm's badness is set directly: its ANON level-0 counter on CPU 0 holds the precise badness and its ANON
root the approximate one (a crafted state: a tree cannot reach most of them, which is what lets each rule
of the kernel's code be seen apart).
"""

from __future__ import annotations

import dataclasses

import pytest

import design_drivers as D
from shmrss import layout as L
from shmrss.designs import tree

U, O = 4 * 768, 4 * 744  # one mm's badness range: four members


@pytest.fixture(scope="module")
def engine():
    from shmrss.engine import engine_for

    return engine_for("tree")


def _select(engine, new_segment, badness):
    """Run one oom_pass over mms of (approximate, precise) badness; the OOM record's words."""
    g = dataclasses.replace(D.geometry("tree", 8, nmm=len(badness)), oom=True)
    D.driver("tree")
    with new_segment(g) as seg:
        D.prepare("tree", seg)
        nitems = seg.h(L.H_DPARAM + 2)
        for mm, (approx, precise) in enumerate(badness):
            seg.words[D.pcpu_addr(seg, 0, mm, L.ANON)] = precise
            seg.words[D.mm_addr(seg, mm, (1 + L.ANON * nitems + nitems - 1) * seg.h(L.H_LINE))] = approx
        rows = D.read_all("tree", seg)
        for mm, (approx, precise) in enumerate(badness):
            assert tuple(int(x) for x in rows[mm * L.NMEMBERS + L.ANON][:2]) == (precise, approx)
        engine.oom_pass(seg.words)
        o = seg.h(L.H_OOM)
        w = seg.words
        return {"victim": int(w[o + L.O_LAST_2P]), "precise_victim": int(w[o + L.O_LAST_PRECISE]),
                "sums": int(w[o + L.O_PRECISE_SUMS]), "capped": int(w[o + L.O_CAP_HITS]),
                "disagree": int(w[o + L.O_DISAGREE]), "judged": int(w[o + L.O_JUDGED])}


def test_ranges_are_trees():
    assert tree.accuracy(8, tree.orders_for(8))[1:] == (768, 744)


def test_ties_go_to_the_last_equal_task(engine, new_segment):
    """select_bad_process: ``points < oc->chosen_points`` skips, so an equal task replaces the choice;
    pass 2's precise acceptance is ``points + accuracy_under - chosen_points < 0`` (0 for a precise choice)."""
    got = _select(engine, new_segment, [(500, 500), (500, 500), (100, 100)])
    assert got["victim"] == 1 and got["precise_victim"] == 1
    assert got["disagree"] == 0 and got["judged"] == 1


def test_pass_two_visits_the_choice_and_sums_each_candidate(engine, new_segment):
    """Pass 2 walks every task, pass 1's choice included: three tasks within range, three precise sums."""
    got = _select(engine, new_segment, [(1000, 1000), (1000, 1500), (0, 0)])
    assert got["victim"] == 1 and got["sums"] == 3 and got["capped"] == 0
    # the choice alone in range is still summed (its precise points replace its approximate ones)
    got = _select(engine, new_segment, [(1000, 1200), (-6000, 0)])
    assert got["victim"] == 0 and got["sums"] == 1


def test_the_filter_uses_the_candidates_over_and_the_choices_under(engine, new_segment):
    """``points + accuracy_over + oc->accuracy_under - oc->chosen_points < 0`` drops a task: once the choice
    is precise (its under is 0), a candidate whose approximation plus its *over* is below is not summed,
    although its *under* would reach (a crafted root far below its sum: the kernel trusts ``over`` here)."""
    got = _select(engine, new_segment, [(5000, 5000), (5000 - O - 1, 9000)])
    assert got["sums"] == 1  # mm 0 only
    assert got["victim"] == 0 and got["precise_victim"] == 1 and got["disagree"] == 1
    got = _select(engine, new_segment, [(5000, 5000), (5000 - O, 9000)])
    assert got["sums"] == 2 and got["victim"] == 1 and got["disagree"] == 0


def test_after_the_cap_a_task_passing_the_filter_is_taken_on_its_approximation(engine, new_segment):
    """``max_precise_badness_sums = 16``: mm 0 (precise 2000, its root lagging at 0) is chosen by sum;
    mms 1..15 are summed and refused; mms 16..19 pass the filter after the cap and each is taken on its
    approximate 1000: the last one wins, and the cap changed the victim (counted)."""
    got = _select(engine, new_segment, [(0, 2000)] + [(1000, 1000)] * 19)
    assert got["sums"] == L.OOM_CAP == 16
    assert got["capped"] == 1
    assert got["victim"] == 19 and got["precise_victim"] == 0
    assert got["disagree"] == 1 and got["judged"] == 1


def test_below_the_cap_the_choice_is_the_precise_maximum(engine, new_segment):
    """16 tasks within range: all summed, none taken approximately, the precise maximum wins."""
    got = _select(engine, new_segment, [(1000, 1000 + (7 * i) % 16) for i in range(16)])
    assert got["sums"] == 16 and got["capped"] == 0
    assert got["victim"] == got["precise_victim"] and got["disagree"] == 0

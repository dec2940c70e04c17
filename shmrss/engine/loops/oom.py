"""OOM victim selection: the 2-pass selection over approximate badness and the precise scan it is judged against."""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, raw, rdtsc
from shmrss.specialise import entry
from .design import approx_bound, read_approx, read_precise
from .index import _stat


@njit(inline="always")
def _badness_approx(seg, mm):
    """(approximate rss + swap, under, over): the sum of the four members and of their ranges."""
    a = 0
    u = 0
    o = 0
    for k in range(L.NMEMBERS):
        a += read_approx(seg, mm, k)
        uk, ok = approx_bound(seg, mm, k)
        u += uk
        o += ok
    return a, u, o


@njit(inline="always")
def _badness_precise(seg, mm):
    s = 0
    for k in range(L.NMEMBERS):
        s += read_precise(seg, mm, k)
    return s


@njit(inline="always")
def _var_sum(seg):
    s = 0
    for cpu in range(seg[L.H_NCPU]):
        s += load(seg, _stat(seg, cpu) + L.S_VAR)
    return s


@njit(inline="always")
def _two_pass(seg):
    """OOM victim, 2-pass (HPCC v16 3/3, mm/oom_kill.c): (victim, precise sums done, capped).

    Pass 1 is ``select_bad_process``'s approximate scan: ``if (points == LONG_MIN || points <
    oc->chosen_points) goto next;`` (so the last equal task wins), keeping the chosen task's
    ``accuracy_under``. Pass 2 visits every task again, the chosen one included::

        if (points == LONG_MIN || (long)(points + accuracy_over + oc->accuracy_under - oc->chosen_points) < 0)
            goto next;
        if (oc->nr_precise < max_precise_badness_sums) {
            accuracy_under = 0;
            accuracy_over = 0;
            oc->nr_precise++;
            points = oom_badness(task, oc->totalpages, false, NULL, NULL);
            if (points == LONG_MIN || (long)(points + oc->accuracy_under - oc->chosen_points) < 0)
                goto next;
        }
        select: ... oc->chosen_points = points; oc->accuracy_under = accuracy_under;

    with ``static int max_precise_badness_sums = 16;``: once the sums are spent, a task that passes
    the approximate filter is taken on its approximate points (``capped``: it happened in this
    selection). Badness is the four members' sum and its range the sum of theirs (oom_badness adds
    rss and swap; page tables and oom_score_adj are not modelled).
    """
    nmm = seg[L.H_NMM]
    chosen = -1
    chosen_points = -(1 << 62)
    chosen_under = 0
    for mm in range(nmm):  # pass 1: approximate scan
        a, u, o = _badness_approx(seg, mm)
        if a < chosen_points:
            continue
        chosen = mm
        chosen_points = a
        chosen_under = u
    sums = 0
    capped = False
    for mm in range(nmm):  # pass 2: every task, the chosen one included
        points, u, o = _badness_approx(seg, mm)
        if points + o + chosen_under - chosen_points < 0:
            continue  # below the chosen points' accuracy range
        if sums < L.OOM_CAP:
            sums += 1
            u = 0
            points = _badness_precise(seg, mm)
            if points + chosen_under - chosen_points < 0:
                continue
        else:
            capped = True  # out of precise sums: taken on its approximate points
        chosen = mm
        chosen_points = points
        chosen_under = u
    return chosen, sums, capped


@njit(inline="always")
def _precise_scan(seg):
    """The all-precise selection (upstream since "mm: fix OOM killer inaccuracy"): last equal task wins."""
    best = 0
    best_p = -(1 << 62)
    for mm in range(seg[L.H_NMM]):
        p = _badness_precise(seg, mm)
        if p >= best_p:
            best = mm
            best_p = p
    return best


@entry("void(int64[::1])")
def oom_pass(words):
    """One OOM victim selection both ways, timed; judged when no counter moved meanwhile."""
    seg = raw(words)
    o = seg[L.H_OOM]
    ring = seg[L.H_RING]
    v0 = _var_sum(seg)
    t0 = rdtsc()
    victim, sums, capped = _two_pass(seg)
    t1 = rdtsc()
    scan = _precise_scan(seg)
    t2 = rdtsc()
    v1 = _var_sum(seg)
    i = seg[o + L.O_SELECTIONS]
    seg[o + L.O_HEAD_WORDS + i % ring] = t1 - t0
    seg[o + L.O_HEAD_WORDS + ring + i % ring] = t2 - t1
    seg[o + L.O_SELECTIONS] = i + 1
    seg[o + L.O_PRECISE_SUMS] += sums
    if capped:
        seg[o + L.O_CAP_HITS] += 1
    seg[o + L.O_LAST_2P] = victim
    seg[o + L.O_LAST_PRECISE] = scan
    if v0 == v1:
        seg[o + L.O_JUDGED] += 1
        if victim != scan and _badness_precise(seg, victim) != _badness_precise(seg, scan):
            seg[o + L.O_DISAGREE] += 1

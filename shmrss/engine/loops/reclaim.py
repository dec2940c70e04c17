"""The reclaimer ("kswapd"): an emulated CPU moving pages of random mms to swap and back."""

import numpy as np

from shmrss import layout as L
from shmrss.atomics import load, pause, raw, rdtsc, store, xadd
from shmrss.specialise import entry
from .index import _stat
from .apply import _apply_call, _hiwater_call
from .sched import _park


@entry("void(int64[::1], int64, int64, int64, int64)")
def reclaimer_main(words, cpu, seed, batch, pause_n):
    """kswapd: swap ``batch`` pages of a random mm out (anon -> swap) and, 8 moves later, back in.

    Runs as emulated CPU ``cpu`` (its own per-CPU words and truth line), so its
    updates are remote updates to mms that CPU does not run.
    """
    seg = raw(words)
    st = _stat(seg, cpu)
    ctrl = seg[L.H_CTRL]
    truth = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE]
    nmm = seg[L.H_NMM]
    jon = seg[st + L.S_J + L.J_ON] != 0
    xadd(seg, ctrl + seg[L.H_LINE] + L.C_BARRIER, 1)
    while load(seg, ctrl + L.C_GO) == 0 and load(seg, ctrl + L.C_STOP) == 0:
        pause()
    store(seg, st + L.S_STATUS, L.CPU_RUNNING)
    store(seg, st + L.S_TSC_START, rdtsc())
    pending = np.full(8, -1, dtype=np.int64)  # swapped-out mms; each comes back in 8 moves later
    x = seed | 1
    var = load(seg, st + L.S_VAR)
    moves = 0
    while load(seg, ctrl + L.C_STOP) == 0:
        slot = moves & 7
        back = pending[slot]
        if back >= 0:
            var = _apply_call(seg, st, truth, var, cpu, -1, back, L.SWAP, -batch, 0, jon)
            var = _apply_call(seg, st, truth, var, cpu, -1, back, L.ANON, batch, 0, jon)
        x ^= x << 13
        x ^= (x >> 7) & ((1 << 57) - 1)
        x ^= x << 17
        victim = (x & 0x7FFFFFFF) % nmm
        _hiwater_call(seg, victim)  # try_to_unmap_one: update_hiwater_rss(mm) before the anon -> swap move
        var = _apply_call(seg, st, truth, var, cpu, -1, victim, L.ANON, -batch, 0, jon)
        var = _apply_call(seg, st, truth, var, cpu, -1, victim, L.SWAP, batch, 0, jon)
        pending[slot] = victim
        moves += 1
        store(seg, st + L.S_EVENTS, 4 * moves)
        for _ in range(pause_n):
            pause()
        if load(seg, ctrl + L.C_PAUSE) != 0:
            _park(seg, st, ctrl, -1, 0, 0, 0)
    for slot in range(8):  # swap everything back in before leaving
        if pending[slot] >= 0:
            var = _apply_call(seg, st, truth, var, cpu, -1, pending[slot], L.SWAP, -batch, 0, jon)
            var = _apply_call(seg, st, truth, var, cpu, -1, pending[slot], L.ANON, batch, 0, jon)
    store(seg, st + L.S_TSC_END, rdtsc())
    store(seg, st + L.S_STATUS, L.CPU_DONE)

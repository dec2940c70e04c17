"""What ``shmrss monitor`` shows: one frame per refresh, built from two samples, drawn with rich or as plain text.

A frame is a few header lines, tables (per emulated CPU, per mm), notes and
warnings. ``render_rich`` draws it for a terminal; ``render_plain`` gives the
same content as aligned text without escape codes, for pipes and logs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from shmrss import layout as L, monitor_reads as MR
from shmrss.designs._kernel import UNREAD
from shmrss.designs.split import PEEK_ATTEMPTS
from shmrss.monitor_host import HostStat, ProcStat
from shmrss.monitor_sample import CPU_STATUS, RUN_STATE, Sample, SegmentSampler, rates

HOST_CPUS_LISTED = 16  # beyond this many host CPUs, the unpinned ones are summarised


@dataclass
class Block:
    title: str
    columns: list[str]
    rows: list[list[str]]
    left: int = 1  # leading columns aligned left; the rest are numbers, aligned right
    foot: list[str] = field(default_factory=list)


@dataclass
class Frame:
    head: list[str]
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---- numbers
def _num(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _si(x) -> str:
    """A rate in few characters: 950, 12.3k, 4.56M."""
    if x is None or math.isnan(x):
        return "-"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.2f}G"
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _mev(x) -> str:
    """Events/s in millions; a slow CPU (the reclaimer) keeps its digits."""
    return _num(x / 1e6, ".1f" if abs(x) >= 1e5 else ".3f") if x is not None and not math.isnan(x) else "-"


# ---- building
def build(s: SegmentSampler, prev: Sample, cur: Sample, tsc_per_ns: float,
          procs: dict[int, ProcStat], host: HostStat) -> Frame:
    life = s.lifecycle(cur)
    r = rates(prev, cur, tsc_per_ns)
    started = cur.cpu[:, L.S_TSC_START]
    started = started[started > 0]
    since = (cur.now_tsc - started.min()) / tsc_per_ns / 1e9 if started.size else None
    cpus = f"{s.nwork} CPUs" + (" + reclaimer" if s.reclaimer else "")
    head = [f"{s.name}  {s.design}{' fork/exit' if life else ''}  {RUN_STATE.get(cur.state, cur.state)}  "
            + (f"{since:.1f} s since start  " if since is not None else "not started  ")
            + f"{cpus}  {s.nmm} mms  {s.ntask} tasks  P={s.possible}  {s.line} B lines"
            + ("  packed" if s.pack else "") + f"  pid {s.owner_pid}  {time.strftime('%H:%M:%S')}",
            _host_line(host, s, cur)]
    frame = Frame(head, [_cpu_block(s, cur, r, procs, life)])
    rd = _reader_line(prev, cur, tsc_per_ns)
    if rd:
        frame.blocks[0].foot.append(rd)
    if life:
        frame.notes.append("fork/exit run: its mms live for microseconds, so no per-mm values are shown")
    else:
        frame.blocks.append(_mm_block(s, cur, frame))
    if prev.start:
        frame.notes.append("first refresh: rates since each CPU's start; process figures from the next refresh")
    frame.warnings += _moved(s, cur, procs) + host.warnings
    viol = int(cur.reader[L.R_APPROX_VIOL]) + int(cur.reader[L.R_PRECISE_VIOL])
    if viol:
        frame.warnings.append(f"the reader has seen {viol:,} reads outside what the design promises "
                              f"(first: mm {int(cur.reader[L.R_VIOL_MM])}, member "
                              f"{L.MEMBER_NAMES[int(cur.reader[L.R_VIOL_MEMBER]) % L.NMEMBERS]})")
    return frame


def _host_line(host: HostStat, s: SegmentSampler, cur: Sample) -> str:
    load = "load " + " ".join(f"{x:.2f}" for x in host.load)
    if host.busy_pct is None:
        return f"host: {load}; CPU use from the next refresh"
    pinned = {int(h) for h, pid in zip(cur.cpu[:, L.S_HOSTCPU], cur.cpu[:, L.S_PID]) if h >= 0 and pid > 0}
    busy = host.busy_pct
    if len(busy) <= HOST_CPUS_LISTED:
        listed = sorted(busy)
    else:
        listed = sorted(pinned & set(busy))
    parts = [f"{c}:{busy[c]:.0f}%{'*' if c in pinned else ''}" for c in listed]
    rest = [busy[c] for c in busy if c not in listed]
    if rest:
        parts.append(f"other {len(rest)}: mean {sum(rest) / len(rest):.0f}%")
    return f"host: {load}  CPU busy {' '.join(parts)}  (* pinned by this run)"


_LIVE = (L.CPU_BARRIER, L.CPU_RUNNING, L.CPU_PARKED, L.CPU_FROZEN)


def _status(status: int, p: ProcStat | None) -> str:
    """The CPU's status word, except that a CPU whose process is gone is DEAD whatever the word still says
    (the parent has not recovered it yet, or cannot)."""
    if status in _LIVE and p is not None and not p.alive:
        return CPU_STATUS.get(L.CPU_DEAD, "DEAD")
    return CPU_STATUS.get(status, "?")


def _cpu_block(s: SegmentSampler, cur: Sample, r, procs: dict[int, ProcStat], life: bool) -> Block:
    hits = bool(cur.cpu[:, L.S_HITS].any() or cur.cpu[:, L.S_MISSES].any())
    cols = ["CPU", "host", "status"]
    cols += ["mm/s"] if life else ["M ev/s", "ns/event", "slow/s", "switch/s"] + (["hit %"] if hits else [])
    cols += ["pid", "CPU %", "vcsw/s", "ivcsw/s", "on CPU", "RSS MiB"]
    paged = bool(cur.cpu[:, L.S_FB_PAGES].any())  # --fault-body page: the workload's pages beside the host's RSS
    cols += ["region MiB"] if paged else []
    rows = []
    for c in range(s.ncpu):
        label = "R" if s.reclaimer and c == s.nwork else str(c)
        hostcpu = int(cur.cpu[c, L.S_HOSTCPU])
        pid = int(cur.cpu[c, L.S_PID])
        row = [label, str(hostcpu) if hostcpu >= 0 else "-", _status(int(cur.cpu[c, L.S_STATUS]), procs.get(pid))]
        if life:
            row.append(_si(r.lifecycles_per_s[c]))
        else:
            row += [_mev(r.events_per_s[c]), _num(r.ns_per_event[c], ".2f"),
                    _si(r.slow_per_s[c]), _si(r.switches_per_s[c])]
            if hits:
                row.append(_num(100 * r.hit_rate[c], ".1f"))
        p = procs.get(pid)
        if pid <= 0 or p is None:
            row += [str(pid) if pid > 0 else "-"] + ["-"] * 5
        elif not p.alive:
            row += [str(pid), "gone"] + ["-"] * 4
        else:
            moved = p.cpu_num is not None and hostcpu >= 0 and p.cpu_num != hostcpu
            row += [str(pid), _num(p.cpu_pct, ".0f"), _num(p.vcsw_per_s, ".0f"), _num(p.ivcsw_per_s, ".0f"),
                    _num(p.cpu_num, "d") + ("!" if moved else ""), _num(p.rss / 2**20 if p.rss else None, ".1f")]
        if paged:
            held = int(cur.cpu[c, L.S_FB_CURSOR]) if cur.cpu[c, L.S_FB_PAGES] else None
            row.append(_num(held * 4096 / 2**20 if held is not None else None, ".1f"))
        rows.append(row)
    work = slice(0, s.nwork)
    if s.nwork > 1:
        total = ["all", "", ""]
        if life:
            total.append(_si(np.nansum(r.lifecycles_per_s[work])))
        else:
            total += [_mev(np.nansum(r.events_per_s[work])), "", _si(np.nansum(r.slow_per_s[work])),
                      _si(np.nansum(r.switches_per_s[work]))] + ([""] if hits else [])
        rows.append(total + [""] * (6 + paged))
    return Block("emulated CPUs", cols, rows, left=3)


def _reader_line(prev: Sample, cur: Sample, tsc_per_ns: float) -> str | None:
    passes = int(cur.reader[L.R_PASSES])
    if not passes:
        return None
    rate = ""
    if not prev.start and cur.now_tsc > prev.now_tsc:
        dt = (cur.now_tsc - prev.now_tsc) / tsc_per_ns / 1e9
        rate = f" ({(passes - int(prev.reader[L.R_PASSES])) / dt:,.0f}/s)"
    return (f"reader: {passes:,} passes{rate}, {int(cur.reader[L.R_NAPPROX]):,} approximate and "
            f"{int(cur.reader[L.R_NPRECISE]):,} precise reads; violations so far: "
            f"{int(cur.reader[L.R_APPROX_VIOL])} approximate, {int(cur.reader[L.R_PRECISE_VIOL])} precise")


def _mm_block(s: SegmentSampler, cur: Sample, frame: Frame) -> Block:
    unlocked = s.design in MR.UNLOCKED
    cols = ["mm", "member", "truth", "approx", "bound", "precise*" if unlocked else "precise"]
    v = cur.values
    shown = cur.truth[cur.mms]
    active = np.abs(shown).sum(axis=0) > 0
    if v is not None:
        read = np.where(v == UNREAD, 0, v)
        active |= (np.abs(read[:, :, MR.APPROX]) + np.abs(read[:, :, MR.PRECISE])).sum(axis=0) > 0
    members = [k for k in range(L.NMEMBERS) if active[k]] or [L.ANON]
    rows, unsettled, unread = [], False, False
    order = range(len(cur.mms))
    if v is not None:  # the mms were chosen by an earlier read of the truth: list them by the one shown
        rss = v[:, [L.FILE, L.ANON, L.SHMEM], MR.TRUTH].sum(axis=1)
        order = sorted(order, key=lambda i: (-rss[i], int(cur.mms[i])))
    for i in order:
        mm = cur.mms[i]
        for k in members:
            if v is None:
                row = [str(int(mm)), L.MEMBER_NAMES[k], f"{int(cur.truth[mm, k]):,}", "-", "-", "-"]
            else:
                row, missed, gap = _values_row(int(mm), k, v[i, k])
                unsettled, unread = unsettled or missed, unread or gap
            rows.append(row)
    block = Block("mms" + (f" (the {len(cur.mms)} largest by truth)" if s.nmm > len(cur.mms) else ""),
                  cols, rows, left=2)
    if s.nmm > len(cur.mms):
        block.foot.append(f"+{s.nmm - len(cur.mms):,} more mms not shown (smaller truth)")
    if s.unmonitored:
        frame.notes.append(f"counters of {s.design} not read: {s.unmonitored}")
    elif v is None:
        frame.notes.append(f"counters not read in state {RUN_STATE.get(cur.state, cur.state)}: the run has "
                           f"ended and the parent tears its mms down; truth is the final sum")
    else:
        if cur.state == L.STATE_RUNNING:
            frame.notes.append("values are live, not simultaneous: each row's truth, approx and precise are "
                               "read one after the other while the CPUs update them")
        frame.notes.append("bound: truth - under <= approx <= truth + over, shown as +/-n or -under/+over")
        if unlocked:
            frame.notes.append(f"precise*: an unlocked sum of the words {s.design}'s precise read sums under "
                               f"the counter's spinlock (the monitor never writes to the segment)")
        if unread:
            frame.notes.append(f"-: {s.design}'s own pointer for that value does not (yet) point where its C "
                               "puts it (an mm not initialised yet), so the monitor did not follow it")
        if unsettled:
            frame.notes.append(f"?: folds kept moving the sequence counts over {PEEK_ATTEMPTS} attempts; the "
                               f"value may miss a fold or count one twice")
    return block


def _values_row(mm: int, k: int, values) -> tuple[list[str], bool, bool]:
    """One member's cells, whether its precise value did not settle, and whether a value is UNREAD (a
    pointer of the C the monitor would not follow: shown as "-")."""
    t, a, u, o, p, settled = (int(x) for x in values)
    unread = UNREAD in (a, u, o, p)
    bound = "-" if UNREAD in (u, o) else f"+/-{u:,}" if u == o else f"-{u:,}/+{o:,}"
    precise = "-" if p == UNREAD else f"{p:,}" + ("" if settled else "?")
    approx = "-" if a == UNREAD else f"{a:,}"
    return [str(mm), L.MEMBER_NAMES[k], f"{t:,}", approx, bound, precise], not settled and p != UNREAD, unread


def _moved(s: SegmentSampler, cur: Sample, procs: dict[int, ProcStat]) -> list[str]:
    out = []
    for c in range(s.ncpu):
        hostcpu, pid = int(cur.cpu[c, L.S_HOSTCPU]), int(cur.cpu[c, L.S_PID])
        p = procs.get(pid)
        if p and p.alive and p.cpu_num is not None and hostcpu >= 0 and p.cpu_num != hostcpu:
            out.append(f"emulated CPU {c} (pid {pid}) is on host CPU {p.cpu_num}, not its pinned {hostcpu}")
    return out


# ---- drawing
def render_plain(frame: Frame) -> str:
    lines = list(frame.head)
    for b in frame.blocks:
        lines.append(f"{b.title}:")
        table = [b.columns] + b.rows
        widths = [max(len(row[i]) for row in table) for i in range(len(b.columns))]
        for row in table:
            cells = [cell.ljust(w) if i < b.left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            lines.append("  " + "  ".join(cells).rstrip())
        lines += [f"  {f}" for f in b.foot]
    lines += [f"note: {n}" for n in frame.notes]
    lines += [f"WARNING: {w}" for w in frame.warnings]
    return "\n".join(lines) + "\n"


def render_rich(frame: Frame):
    # a frame may have no head (the listing); cells are Text, never markup: names come from /dev/shm
    parts = [Text(h, style="bold" if i == 0 else "") for i, h in enumerate(frame.head)]
    for b in frame.blocks:
        t = Table(title=b.title, title_justify="left", caption="\n".join(b.foot) or None, caption_justify="left")
        for i, c in enumerate(b.columns):
            t.add_column(c, justify="left" if i < b.left else "right", no_wrap=True)
        for row in b.rows:
            t.add_row(*map(Text, row), style="bold" if row and row[0] == "all" else None)
        parts.append(t)
    parts += [Text(f"note: {n}", style="dim") for n in frame.notes]
    parts += [Text(f"WARNING: {w}", style="bold red") for w in frame.warnings]
    return Group(*parts)

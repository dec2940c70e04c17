"""``--host-reference``: the host kernel's own RSS counters of the emulated CPU processes, read from /proc
beside the emulated design's reads, each bracketed by what the workload held.

A ``--fault-body page`` run makes each CPU process really fault and release pages of its region, so the host's
``mm->rss_stat`` moves with the same events the emulated design counts. The sampler, a Python process of its
own (reading /proc is not a counter operation), is forked once every CPU has reached the start barrier: there,
nothing of the region is touched yet, and it takes the non-workload pages of each CPU process (its precise read,
``/proc/PID/status``) as the baseline. After GO it reads ``/proc/PID/statm``, ``status`` and ``stat`` of each
CPU process in turn, each read bracketed by the region's words before and after it (``S_FB_DONE`` and the
cursor before, the cursor and ``S_FB_BEGUN`` after: ``faultbody`` announces page work before doing it), and
once per round the emulated design's approximate and precise reads (``host_reference_jit``). The raw errors go
back to the parent through a pipe; ``host_reference_stats`` summarises and compares them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from shmrss import layout as L
from shmrss.specialise import specialised

FILES = ("statm", "status", "stat")  # the /proc files read, in this order, for each CPU process
PRECISE_FILE = "status"  # the baseline read (task_mem: get_mm_counter_sum since 6.16 and its stable backports)
PAGE_KB = 4
INTERVAL_S = 0.001  # between sampling rounds: ~1000 rounds a second, a fraction of the reader's CPU
_TEMPLATE = Path(__file__).parent / "host_reference_jit.py"


class HostReferenceError(ValueError):
    """``--host-reference`` cannot be used as asked; message is one line."""


# ----------------------------------------------------------------------------- the host kernel and /proc

def online_cpus() -> int:
    """num_online_cpus(): the CPUs listed in /sys/devices/system/cpu/online (a list such as 0-3,6)."""
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def counts_with(release: str) -> str | None:
    """The design the host's rss_stat is: percpu_counter from 6.2 (commit f1a7941243c1), before that an atomic per
    mm with a per-task cache (SPLIT_RSS_COUNTING: the split design); None for a release it cannot parse."""
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return None
    return "percpu" if (major, minor) >= (6, 2) else "split"


def kernel_info() -> dict:
    """The host kernel's version, the design its counters are, its online CPUs and the percpu_counter_batch they
    imply (max(32, 2 * online))."""
    online = online_cpus()
    release = os.uname().release
    return {"release": release, "counts_with": counts_with(release), "online_cpus": online,
            "batch": max(32, 2 * online)}


def parse(name: str, text: str) -> int:
    """Resident pages in one /proc file: statm's 2nd field, status's VmRSS (kB), stat's 24th field (rss)."""
    if name == "statm":
        return int(text.split()[1])
    if name == "status":
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // PAGE_KB
        raise HostReferenceError("no VmRSS line in /proc/PID/status")
    if name == "stat":
        return int(text.rpartition(")")[2].split()[21])  # fields after comm start at 3 (state): 24 - 3
    raise ValueError(name)


class ProcFiles:
    """The /proc files of one process, opened once and read again with pread (seq_file restarts at 0)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fds = []
        name = FILES[0]
        try:
            for name in FILES:
                self.fds.append(os.open(f"/proc/{pid}/{name}", os.O_RDONLY))
            for i, name in enumerate(FILES):
                self.read(i)
        except (OSError, ValueError, IndexError) as e:
            self.close()
            raise HostReferenceError(f"cannot read /proc/{pid}/{name}: "
                                     f"{getattr(e, 'strerror', None) or e}") from None

    def read(self, i: int) -> int:
        return parse(FILES[i], os.pread(self.fds[i], 8192, 0).decode())

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def check_readable() -> None:
    """HostReferenceError (one line) when this host's /proc cannot give the reads (checked on this process)."""
    ProcFiles(os.getpid()).close()


def warm(design: str) -> None:
    """Compile (or load) the emulated reads before the run forks: the sampler inherits them."""
    specialised(_TEMPLATE, design, "shmrss_hostref")


# ----------------------------------------------------------------------------- the sampler process

def _bracketed(w: np.ndarray, st: int, files: ProcFiles, i: int, base: int) -> tuple[int, int]:
    """One read of file ``i``, less the baseline: (its signed error outside the region's envelope, the window)."""
    done0 = int(w[st + L.S_FB_DONE])
    cur0 = int(w[st + L.S_FB_CURSOR])
    v = files.read(i) - base
    cur1 = int(w[st + L.S_FB_CURSOR])
    window = int(w[st + L.S_FB_BEGUN]) - done0  # every page of work that could have moved during the read
    lo, hi = max(cur0, cur1) - window, min(cur0, cur1) + window
    return (v - lo if v < lo else (v - hi if v > hi else 0)), window


def _round(w, stats, procs, bases, emulated, mms, out) -> tuple[list, np.ndarray]:
    """One sampling round: every /proc file of every CPU process, then the emulated design's reads.

    The emulated update of an unmap comes before its page work, so the emulated counter has settled while the
    host's is still being zapped (milliseconds for page_fault1's 128 MiB): page work in flight is added to the
    emulated reads' windows too, so that the same moments are left out on both sides."""
    host = [[_bracketed(w, st, p, i, b) for st, p, b in zip(stats, procs, bases)] for i in range(len(FILES))]
    inflight = sum(int(w[st + L.S_FB_BEGUN]) - int(w[st + L.S_FB_DONE]) for st in stats)
    emulated(w, mms, L.ANON, out)
    e = out.copy()
    e[:, 1] += inflight
    e[:, 3] += inflight
    return host, e


def _baseline(w, stats, procs) -> list[dict]:
    """At the start barrier: every file of every CPU process, and the region's words (all 0 before GO)."""
    return [{"pid": p.pid, **{name: p.read(i) for i, name in enumerate(FILES)},
             "region_words": [int(w[st + L.S_FB_CURSOR]), int(w[st + L.S_FB_BEGUN])]}
            for st, p in zip(stats, procs)]


def sampler_process(seg_name: str, design: str, host_cpu: int | None, parent_pid: int, conn,
                    interval: float = INTERVAL_S) -> None:
    """Body of the sampler: baseline at the barrier, then rounds every ``interval`` s from GO until STOP."""
    from shmrss.procs import die_with_parent
    from shmrss.runsignals import ignore_in_child
    from shmrss.segment import Segment
    from shmrss.topology import pin_self

    ignore_in_child()
    die_with_parent()
    w = Segment.attach(seg_name).words
    if host_cpu is not None:
        pin_self(host_cpu)
    emulated = specialised(_TEMPLATE, design, "shmrss_hostref").emulated_errors
    stats = [int(w[L.H_CPUSTAT]) + c * int(w[L.H_CPUSTAT_STRIDE]) for c in range(int(w[L.H_NWORK]))]
    try:
        procs = [ProcFiles(int(w[st + L.S_PID])) for st in stats]
    except HostReferenceError as e:
        conn.send(("error", str(e)))
        return
    base = _baseline(w, stats, procs)
    conn.send(("ready", base))
    bases = [b[PRECISE_FILE] for b in base]
    mms = np.arange(int(w[L.H_NMM]), dtype=np.int64)
    out = np.zeros((mms.size, 4), dtype=np.int64)
    ctrl = int(w[L.H_CTRL])
    while w[ctrl + L.C_GO] == 0 and w[ctrl + L.C_STOP] == 0:
        time.sleep(0.0005)
    host, emu, times, t0, cpu0 = [], [], [], time.perf_counter(), time.process_time()
    try:
        while w[ctrl + L.C_STOP] == 0:
            h, e = _round(w, stats, procs, bases, emulated, mms, out)
            if w[ctrl + L.C_STOP] != 0:
                break  # the stop overlapped the round: the CPUs' exit may have moved the counters under it
            host.append(h)
            emu.append(e)
            times.append(time.perf_counter() - t0)
            time.sleep(interval)
    except (OSError, ValueError, IndexError):
        pass  # a CPU process exited at the stop: the rounds so far are the sample
    conn.send(("done", {"host": np.array(host, dtype=np.int64).reshape(-1, len(FILES), len(stats), 2),
                        "emulated": np.array(emu, dtype=np.int64).reshape(-1, mms.size, 4),
                        "t": np.array(times), "busy_s": time.process_time() - cpu0,
                        "wall_s": time.perf_counter() - t0}))


class Sampler:
    """The parent's side: fork the sampler at the start barrier (with the run's signals blocked, as every child
    is forked), then ``wait_ready`` for its baseline, and ``finish`` to collect its samples."""

    READY_TIMEOUT_S = 30.0

    def __init__(self, seg_name: str, design: str, host_cpu: int | None):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        warm(design)  # compiled here, before the fork: the sampler inherits the machine code
        self.host_cpu = host_cpu
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=sampler_process, args=(seg_name, design, host_cpu, os.getpid(), child),
                                name="shmrss-hostref", daemon=True)
        self.proc.start()
        child.close()
        self.baseline = None

    def wait_ready(self) -> None:
        """Its baseline, taken at the barrier; HostReferenceError (the sampler killed) when none comes."""
        try:
            self.baseline = self._receive("ready", self.READY_TIMEOUT_S)
        except (HostReferenceError, EOFError, OSError) as e:
            self.proc.kill()  # the run fails here: the sampler must not outlive it
            self.proc.join(2.0)
            raise HostReferenceError(str(e) or "the /proc sampler ended before its baseline") from None

    def _receive(self, want: str, timeout: float):
        if not self.conn.poll(timeout):
            raise HostReferenceError(f"the /proc sampler sent no {want!r} in {timeout:.0f} s")
        kind, payload = self.conn.recv()
        if kind == "error":
            raise HostReferenceError(payload)
        return payload

    def finish(self, timeout: float = 10.0) -> dict:
        """The raw samples, once the run has set STOP."""
        data = self._receive("done", timeout)
        self.proc.join(timeout)
        return {"baseline": self.baseline, "sampler_cpu": self.host_cpu, "interval_s": INTERVAL_S, **data}

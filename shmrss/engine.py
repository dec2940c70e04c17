"""Builds each design's compiled engine module and runs the emulated CPU and reader processes.

``engine_for(name)`` writes a copy of ``engine_loop.py`` whose design import
names the chosen design into the cache directory and imports it, so numba
compiles (or loads from its on-disk cache) loops specialised to that design.
The parent does this before forking: children inherit compiled code.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from loguru import logger

from shmrss import designs, layout as L
from shmrss.segment import Segment

_PKG = Path(__file__).resolve().parent
_TEMPLATE = _PKG / "engine_loop.py"
_MARK = "from shmrss.designs.atomic import (  # DESIGN-IMPORT"
_loaded: dict[str, ModuleType] = {}


def cache_dir() -> Path:
    base = os.environ.get("SHMRSS_CACHE_DIR")
    if base:
        d = Path(base)
    else:
        d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shmrss"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".w"
        probe.touch()
        probe.unlink()
    except OSError:
        d = Path(tempfile.gettempdir()) / f"shmrss-cache-{os.getuid()}"
        try:
            d.mkdir(mode=0o700)
        except OSError:
            pass
        # in a shared /tmp another user may have made this path first: code imported from it would be
        # theirs, run as us; then a private directory for this process only
        if not _private_dir(d):
            global _fallback
            if _fallback is None:
                _fallback = Path(tempfile.mkdtemp(prefix="shmrss-cache-"))
                logger.warning("{} is not a private directory of this user; compiling into {}", d, _fallback)
            d = _fallback
    return d


_fallback: Path | None = None


def _private_dir(d: Path) -> bool:
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _source_hash(design: str) -> str:
    """Of every source the generated module compiles in: a design may inline another's functions
    (single inlines percpu's), and numba's cache only notices edits to the generated file itself."""
    h = hashlib.sha256(design.encode())
    for f in (_TEMPLATE, _PKG / "atomics.py", _PKG / "layout.py", _PKG / "faultbody.py",
              *sorted((_PKG / "designs").glob("*.py"))):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def engine_for(design: str) -> ModuleType:
    """The compiled engine module of ``design`` (generated and imported once per process)."""
    if design in _loaded:
        return _loaded[design]
    designs.get(design)
    text = _TEMPLATE.read_text()
    if _MARK not in text:
        raise RuntimeError("engine_loop.py lost its DESIGN-IMPORT line")
    text = text.replace(_MARK, f"from shmrss.designs.{design} import (  # DESIGN-IMPORT", 1)
    modname = f"shmrss_engine_{design}_{_source_hash(design)}"
    path = cache_dir() / f"{modname}.py"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: concurrent runs never import a half-written file
    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    took = time.perf_counter() - t0
    if took > 1.0:
        logger.info("compiled the {} engine in {:.1f} s (cached for later runs)", design, took)
    logger.debug("engine for {} ready in {:.2f} s ({})", design, took, path)
    _loaded[design] = mod
    return mod


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the parent dies, so no CPU spins on forever."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable")


def _child_setup(parent_pid: int) -> None:
    # Ctrl-C goes to the whole process group; only the parent decides how a run ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    if os.getppid() != parent_pid:  # parent already gone before prctl took effect
        os._exit(1)


def attach_as_cpu(seg_name: str, cpu: int, host_cpu: int | None, parent_pid: int):
    """A child's start as emulated CPU ``cpu``: attach by name, record itself, pin; returns the words."""
    from shmrss.topology import pin_self

    _child_setup(parent_pid)
    w = Segment.attach(seg_name).words
    st = int(w[L.H_CPUSTAT]) + cpu * int(w[L.H_CPUSTAT_STRIDE])
    w[st + L.S_PID] = os.getpid()
    w[st + L.S_HOSTCPU] = -1 if host_cpu is None else host_cpu
    if host_cpu is not None:
        pin_self(host_cpu)
    return w


def cpu_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of emulated CPU ``cpu``: attach, pin, map its fault-body region if any, run the compiled loop once."""
    from shmrss import faultbody

    w = attach_as_cpu(seg_name, cpu, host_cpu, parent_pid)
    st = int(w[L.H_CPUSTAT]) + cpu * int(w[L.H_CPUSTAT_STRIDE])
    region = faultbody.map_region(w, st)  # kept alive while the loop touches it
    eng = engine_for(design)
    before = faultbody.minor_faults()
    eng.cpu_main(w, cpu)
    w[st + L.S_FB_MINFLT] = faultbody.minor_faults() - before
    del region


def reader_process(seg_name: str, design: str, interval: float, host_cpu: int | None, parent_pid: int) -> None:
    """Body of the reader: one compiled pass over every counter each ``interval`` seconds."""
    from shmrss.topology import pin_self

    _child_setup(parent_pid)
    seg = Segment.attach(seg_name)
    w = seg.words
    if host_cpu is not None:
        pin_self(host_cpu)
    eng = engine_for(design)
    ctrl = int(w[L.H_CTRL])
    while w[ctrl + L.C_GO] == 0 and w[ctrl + L.C_STOP] == 0:
        time.sleep(0.001)
    next_t = time.perf_counter()
    oom = int(w[L.H_OOM]) != 0
    while w[ctrl + L.C_STOP] == 0:
        eng.reader_pass(w)
        if oom:
            eng.oom_pass(w)
        next_t += interval
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.perf_counter()


RECLAIM_BATCH = 4  # pages per swap-out; small enough that a victim's anon count never dips far below 0
RECLAIM_PAUSES = 2000  # pause instructions between moves (kswapd's pace)


def reclaimer_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of the reclaimer ("kswapd"): emulated CPU ``cpu`` moving pages of random mms to swap and back."""
    w = attach_as_cpu(seg_name, cpu, host_cpu, parent_pid)
    seed = int.from_bytes(os.urandom(8), "little") & ((1 << 62) - 1)
    engine_for(design).reclaimer_main(w, cpu, seed, RECLAIM_BATCH, RECLAIM_PAUSES)

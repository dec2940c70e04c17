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
    """The directory of the generated engine modules and numba's pickled caches (imported, so run as us).

    ``$SHMRSS_CACHE_DIR``, else ``$XDG_CACHE_HOME/shmrss`` (``~/.cache/shmrss``), used only when it and its
    ``__pycache__`` are owned by this user and writable by no one else (checked with lstat, no symlink
    followed); otherwise a warning and ``$TMPDIR/shmrss-cache-<uid>[-N]``, the first such directory that is
    private, so later runs reuse it. See docs/segment-security.md."""
    base = os.environ.get("SHMRSS_CACHE_DIR")
    if base:
        d = Path(base)
    else:
        try:
            home_cache = Path.home() / ".cache"
        except RuntimeError:  # no HOME and no passwd entry
            home_cache = Path("/nonexistent")
        d = Path(os.environ.get("XDG_CACHE_HOME") or home_cache) / "shmrss"
    why = _make_private(d)
    if why is None:
        return d
    if why != "cannot create" and d not in _warned:
        _warned.add(d)
        logger.warning("cache directory {} {}: another user could plant code there; not used", d, why)
    return _fallback_dir()


_warned: set[Path] = set()
_fallback: Path | None = None
_FALLBACK_TRIES = 8


def _fallback_dir() -> Path:
    """The first private ``shmrss-cache-<uid>[-N]`` in the temporary directory, made if missing; a fresh
    one for this process only when all are taken (planted by someone else)."""
    global _fallback
    if _fallback is not None and _private_tree(_fallback):
        return _fallback
    tmp = Path(tempfile.gettempdir())
    for i in range(_FALLBACK_TRIES):
        d = tmp / (f"shmrss-cache-{os.geteuid()}" + (f"-{i}" if i else ""))
        if _make_private(d) is None:
            _fallback = d
            return d
    try:
        _fallback = Path(tempfile.mkdtemp(prefix="shmrss-cache-"))
    except OSError as e:
        raise OSError(f"no private directory for the compile cache ({tmp}: {e.strerror})") from None
    logger.warning("every shmrss-cache-{}* in {} belongs to someone else; compiling into {}", os.geteuid(), tmp,
                   _fallback)
    return _fallback


def _make_private(d: Path) -> str | None:
    """Make ``d`` and ``d/__pycache__`` (mode 0700) if missing; None if both are private, else why not."""
    for sub in (d, d / "__pycache__"):
        try:
            sub.mkdir(mode=0o700, parents=sub is d)
        except FileExistsError:
            pass
        except OSError:
            return "cannot create"
        why = _not_private(sub)
        if why:
            return why if sub is d else f"has a __pycache__ that {why}"
    try:
        fd, probe = tempfile.mkstemp(dir=d, prefix=".w")
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return "cannot create"
    return None


def _not_private(d: Path) -> str | None:
    try:
        st = os.lstat(d)
    except OSError as e:
        return f"cannot be looked at ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & 0o022:
        return f"is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_tree(d: Path) -> bool:
    return _not_private(d) is None and _not_private(d / "__pycache__") is None


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
    module = designs.module_name(design)
    text = text.replace(_MARK, f"from shmrss.designs.{module} import (  # DESIGN-IMPORT", 1)
    modname = f"shmrss_engine_{module}_{_source_hash(design)}"
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
    # Ctrl-C, timeout's SIGTERM, a hang-up... go to the whole process group; only the parent decides how a
    # run ends (it stops the children through the segment, or kills them)
    from shmrss.runsignals import ignore_in_child

    ignore_in_child()
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


RECLAIM_BATCH = L.RECLAIM_BATCH  # pages per swap-out (in layout: designs/pernode.py bounds its slack by it)
RECLAIM_PAUSES = 2000  # pause instructions between moves (kswapd's pace)


def reclaimer_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of the reclaimer ("kswapd"): emulated CPU ``cpu`` moving pages of random mms to swap and back."""
    w = attach_as_cpu(seg_name, cpu, host_cpu, parent_pid)
    seed = int.from_bytes(os.urandom(8), "little") & ((1 << 62) - 1)
    engine_for(design).reclaimer_main(w, cpu, seed, RECLAIM_BATCH, RECLAIM_PAUSES)

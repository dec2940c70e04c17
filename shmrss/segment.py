"""The run's POSIX shared-memory segment: layout, create, attach by name, validate, unlink, clean up.

One object ``/shmrss-<run id>`` per run, mode 0600, mapped with mmap and viewed
as a flat numpy int64 array. Offsets of every region live in the header
(see ``layout``), each region starting on a cache line.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field

import numpy as np
import posix_ipc

from shmrss import layout as L
from shmrss.procs import pid_alive

PREFIX = "shmrss-"
SHM_DIR = "/dev/shm"
NAME_MAX = 250  # NAME_MAX of /dev/shm, less the leading "/"
_NAME_OK = re.compile(r"[A-Za-z0-9._-]{1,%d}" % NAME_MAX)


class SegmentError(Exception):
    """A segment that cannot be created, found, or trusted; message is one line."""


@dataclass(frozen=True)
class DesignShape:
    """What a design needs in the segment, in words."""

    pcpu_words_per_mm: int  # per-CPU words per mm (packed per CPU unit)
    mm_words: int  # shared words per mm (rounded up to whole lines)
    task_words: int = 0  # per-task words
    global_words: int = 0
    params: tuple[int, ...] = ()  # design parameters stored at H_DPARAM..


@dataclass(frozen=True)
class Geometry:
    """Everything the layout depends on."""

    ncpu: int
    possible: int
    nmm: int
    ntask: int
    line_words: int
    pack: bool
    slice: int
    design_id: int
    shape: DesignShape
    tape_steps: int
    ring: int = 1 << 14
    stat_every: int = 1024
    nwork: int | None = None  # CPUs that run tapes; default all
    reclaimer: bool = False  # CPU nwork is the reclaimer
    oom: bool = False  # the reader also runs OOM victim selections
    online: int | None = None  # online CPUs (ncpu <= online <= possible); default possible


def _round(n: int, line: int) -> int:
    return -(-n // line) * line


@dataclass
class Layout:
    header: np.ndarray
    total_words: int
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (base, words)


def compute_layout(g: Geometry) -> Layout:
    """Place every region on its own cache line; return the header and the size."""
    if len(g.shape.params) > L.H_DPARAM_WORDS:
        raise ValueError(f"a design has at most {L.H_DPARAM_WORDS} parameters")
    lw = g.line_words
    h = np.zeros(L.H_WORDS, dtype=np.int64)
    regions: dict[str, tuple[int, int]] = {}
    cursor = _round(L.H_WORDS, lw)

    def place(name: str, words: int) -> int:
        nonlocal cursor
        base = cursor
        regions[name] = (base, words)
        cursor = _round(base + max(words, 1), lw)
        return base

    h[L.H_CTRL] = place("ctrl", L.CTRL_LINES * lw)
    h[L.H_CPUSTAT_STRIDE] = _round(L.S_WORDS, lw)
    h[L.H_CPUSTAT] = place("cpustat", g.ncpu * int(h[L.H_CPUSTAT_STRIDE]))
    h[L.H_TRUTH_STRIDE] = _round(g.nmm * L.NMEMBERS, lw)
    h[L.H_TRUTH] = place("truth", g.ncpu * int(h[L.H_TRUTH_STRIDE]))
    kwords = g.nmm * g.shape.pcpu_words_per_mm
    if g.pack:
        cstride, kstride = 1, g.possible
    else:
        cstride, kstride = _round(kwords, lw), 1
    h[L.H_PCPU_CSTRIDE], h[L.H_PCPU_KSTRIDE], h[L.H_PCPU_KWORDS] = cstride, kstride, g.shape.pcpu_words_per_mm
    h[L.H_PCPU] = place("pcpu", g.possible * kwords if g.pack else g.possible * cstride)
    h[L.H_MM_STRIDE] = _round(max(g.shape.mm_words, 1), lw)
    h[L.H_MM] = place("mm", g.nmm * int(h[L.H_MM_STRIDE]))
    h[L.H_TASK_STRIDE] = _round(L.T_WORDS + g.shape.task_words, lw)
    h[L.H_TASK] = place("task", g.ntask * int(h[L.H_TASK_STRIDE]))
    h[L.H_TAPE] = place("tape", g.tape_steps * L.STEP_WORDS)
    h[L.H_TAPE_STEPS] = g.tape_steps
    h[L.H_RQ_STRIDE] = _round(L.Q_IDS + g.ntask, lw)
    h[L.H_RQ] = place("runqueue", g.ncpu * int(h[L.H_RQ_STRIDE]))
    h[L.H_RING] = g.ring
    h[L.H_READER] = place("reader", L.R_HEAD_WORDS + 2 * g.ring)
    h[L.H_GLOBAL_WORDS] = g.shape.global_words
    h[L.H_GLOBAL] = place("global", g.shape.global_words)
    if g.oom:
        h[L.H_OOM] = place("oom", L.O_HEAD_WORDS + 2 * g.ring)
    h[L.H_HIWATER] = place("hiwater", g.nmm * lw)  # mm->hiwater_rss: a word on each mm's own line

    h[L.H_MAGIC], h[L.H_VERSION], h[L.H_LINE] = L.MAGIC, L.VERSION, lw
    h[L.H_TOTAL] = cursor
    h[L.H_NCPU], h[L.H_POSSIBLE], h[L.H_NMM], h[L.H_NTASK] = g.ncpu, g.possible, g.nmm, g.ntask
    h[L.H_ONLINE] = g.possible if g.online is None else g.online
    h[L.H_DESIGN], h[L.H_PACK], h[L.H_SLICE] = g.design_id, int(g.pack), g.slice
    h[L.H_STAT_EVERY] = g.stat_every
    h[L.H_NWORK] = g.ncpu if g.nwork is None else g.nwork
    h[L.H_RECLAIMER] = int(g.reclaimer)
    for i, p in enumerate(g.shape.params):
        h[L.H_DPARAM + i] = p
    return Layout(h, cursor, regions)


def estimate_bytes(g: Geometry) -> int:
    return compute_layout(g).total_words * 8


def new_name() -> str:
    """An unguessable segment name (64 random bits)."""
    return PREFIX + secrets.token_hex(8)


class Segment:
    """A mapped segment. ``words`` is the int64 view handed to compiled code."""

    def __init__(self, name: str, shm: posix_ipc.SharedMemory, mapping: mmap.mmap, owner: bool, readonly: bool):
        self.name = name
        self._shm = shm
        self._map = mapping
        self.owner = owner
        self.readonly = readonly
        self.words = np.frombuffer(mapping, dtype=np.int64)
        if readonly:
            self.words.flags.writeable = False

    # ---- creation and attachment
    @classmethod
    def create(cls, g: Geometry, name: str | None = None) -> "Segment":
        lay = compute_layout(g)
        nbytes = lay.total_words * 8
        check_room(nbytes)
        name = name or new_name()
        try:
            shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600)
        except posix_ipc.ExistentialError as e:
            raise SegmentError(f"segment {name} already exists") from e
        except (OSError, posix_ipc.Error) as e:
            raise SegmentError(f"cannot create segment {name}: {e}") from e
        try:
            _size(shm.fd, nbytes)
            _reserve(shm.fd, nbytes)
            mapping = mmap.mmap(shm.fd, nbytes)
        except (OSError, SegmentError) as e:
            shm.close_fd()
            shm.unlink()
            if isinstance(e, SegmentError):
                raise
            raise SegmentError(f"cannot map segment {name} ({nbytes} bytes): {e}") from e
        shm.close_fd()
        seg = cls(name, shm, mapping, owner=True, readonly=False)
        seg.words[: L.H_WORDS] = lay.header
        seg.words[L.H_OWNER_PID] = os.getpid()
        seg.words[L.H_PIDNS] = pid_namespace()
        seg.words[L.H_CREATED_NS] = time.time_ns()
        seg.words[L.H_RUN_ID] = int(name[len(PREFIX):], 16) & ((1 << 63) - 1)
        seg.words[L.H_BASE] = seg.words.ctypes.data
        return seg

    @classmethod
    def attach(cls, name: str, readonly: bool = False, own_only: bool = False) -> "Segment":
        """Map an existing segment by name (with or without the leading ``/``).

        ``readonly`` maps it without write permission (a store faults).
        ``own_only`` also refuses anything in /dev/shm that is not a regular
        file owned by this user (``shmrss monitor``: root could otherwise read
        another user's run, and opening a FIFO would block).
        """
        name = name.lstrip("/")
        if not _NAME_OK.fullmatch(name):
            raise SegmentError(f"{name!r} is not a segment name (letters, digits, '.', '_' and '-', "
                               f"at most {NAME_MAX} characters)")
        if not name.startswith(PREFIX):
            raise SegmentError(f"{name} is not a shmrss segment name (they start with {PREFIX})")
        if own_only:
            _check_own_file(name)
        flags = 0
        try:
            shm = posix_ipc.SharedMemory("/" + name, flags, read_only=readonly)
        except posix_ipc.ExistentialError as e:
            raise SegmentError(f"no segment named {name}") from e
        except posix_ipc.PermissionsError as e:
            raise SegmentError(f"segment {name} belongs to another user: permission denied") from e
        except (OSError, ValueError, posix_ipc.Error) as e:
            raise SegmentError(f"cannot open segment {name}: {e}") from e
        try:
            if own_only:
                _check_owner(name, os.fstat(shm.fd))  # the object opened, not just the name looked at
            size = shm.size
            if size < L.H_WORDS * 8:
                raise SegmentError(f"segment {name} is truncated ({size} bytes): not a shmrss run")
            prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
            mapping = mmap.mmap(shm.fd, size, prot=prot)
        finally:
            shm.close_fd()
        seg = cls(name, shm, mapping, owner=False, readonly=readonly)
        try:
            validate_header(seg.words, size)
        except SegmentError:
            seg.close()
            raise
        return seg

    # ---- header access
    def h(self, slot: int) -> int:
        """Header word ``slot`` (a region's offset, a size, a flag) as an int."""
        return int(self.words[slot])

    def close(self) -> None:
        self.words = None  # drop the view before closing the map
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still alive somewhere; the mapping goes with the process

    def unlink(self) -> None:
        try:
            posix_ipc.unlink_shared_memory("/" + self.name)
        except posix_ipc.ExistentialError:
            pass


def _check_owner(name: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SegmentError(f"{SHM_DIR}/{name} is not a regular file: not a shmrss segment")
    if st.st_uid != os.geteuid():
        raise SegmentError(f"segment {name} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): refused")


def _check_own_file(name: str) -> None:
    try:
        st = os.lstat(os.path.join(SHM_DIR, name))
    except FileNotFoundError:
        raise SegmentError(f"no segment named {name}") from None
    except OSError as e:
        raise SegmentError(f"cannot look at segment {name}: {e.strerror}") from None
    _check_owner(name, st)


def validate_header(words: np.ndarray, size_bytes: int) -> None:
    """Refuse anything that is not a complete segment of this layout version."""
    if len(words) < L.H_WORDS or size_bytes < L.H_WORDS * 8:
        raise SegmentError(f"segment is truncated ({size_bytes} bytes): not a shmrss run")
    if int(words[L.H_MAGIC]) != L.MAGIC:
        raise SegmentError("segment has no shmrss magic: not a shmrss run")
    if int(words[L.H_VERSION]) != L.VERSION:
        raise SegmentError(f"segment layout version {int(words[L.H_VERSION])}, this shmrss reads {L.VERSION}")
    total = int(words[L.H_TOTAL])
    if total * 8 > size_bytes or total < L.H_WORDS:
        raise SegmentError(f"segment is truncated: header says {total * 8} bytes, object has {size_bytes}")
    if int(words[L.H_LINE]) not in (8, 16):
        raise SegmentError("segment header names an invalid cache line")
    for slot in (L.H_NCPU, L.H_POSSIBLE, L.H_NMM):
        if not 0 < int(words[slot]) <= 1 << 20:
            raise SegmentError("segment header holds impossible sizes")
    ncpu, possible, nmm = int(words[L.H_NCPU]), int(words[L.H_POSSIBLE]), int(words[L.H_NMM])
    ntask, ring = int(words[L.H_NTASK]), int(words[L.H_RING])
    if possible < ncpu or not 0 <= ntask <= 1 << 20 or not 0 < ring <= 1 << 24:
        raise SegmentError("segment header holds impossible sizes")
    if not ncpu <= int(words[L.H_ONLINE]) <= possible:
        raise SegmentError("segment header holds impossible sizes")
    # a stride below its record's size would let the last record's fields run past the extents checked below
    least = ((L.H_CPUSTAT_STRIDE, L.S_WORDS), (L.H_TRUTH_STRIDE, nmm * L.NMEMBERS), (L.H_MM_STRIDE, 1),
             (L.H_TASK_STRIDE, L.T_WORDS), (L.H_RQ_STRIDE, L.Q_IDS + ntask), (L.H_PCPU_KWORDS, 0))
    if any(int(words[slot]) < n for slot, n in least):
        raise SegmentError("segment header holds impossible strides")
    kwords = nmm * int(words[L.H_PCPU_KWORDS])
    cstride, kstride = int(words[L.H_PCPU_CSTRIDE]), int(words[L.H_PCPU_KSTRIDE])
    # (base slot, words the compiled code may index from it)
    extents = (
        (L.H_CTRL, L.CTRL_LINES * int(words[L.H_LINE])),
        (L.H_CPUSTAT, ncpu * int(words[L.H_CPUSTAT_STRIDE])),
        (L.H_TRUTH, ncpu * int(words[L.H_TRUTH_STRIDE])),
        (L.H_PCPU, (possible - 1) * cstride + max(kwords - 1, 0) * kstride + 1),
        (L.H_MM, nmm * int(words[L.H_MM_STRIDE])),
        (L.H_TASK, ntask * int(words[L.H_TASK_STRIDE])),
        (L.H_TAPE, int(words[L.H_TAPE_STEPS]) * L.STEP_WORDS),
        (L.H_RQ, ncpu * int(words[L.H_RQ_STRIDE])),
        (L.H_READER, L.R_HEAD_WORDS + 2 * ring),
        (L.H_GLOBAL, int(words[L.H_GLOBAL_WORDS])),
        (L.H_HIWATER, nmm * int(words[L.H_LINE])),
    ) + (((L.H_OOM, L.O_HEAD_WORDS + 2 * ring),) if int(words[L.H_OOM]) else ())
    for slot, extent in extents:
        base = int(words[slot])
        if extent < 0 or not L.H_WORDS <= base <= total or base + extent > total:
            raise SegmentError("segment header points outside the segment")
    if min(cstride, kstride, int(words[L.H_CPUSTAT_STRIDE]), int(words[L.H_TRUTH_STRIDE])) < 0:
        raise SegmentError("segment header holds impossible strides")


def _size(fd: int, nbytes: int) -> None:
    try:
        os.ftruncate(fd, nbytes)
    except OSError as e:
        limit = " (a file size limit: ulimit -f)" if e.errno == errno.EFBIG else ""
        raise SegmentError(f"cannot size the segment to {nbytes / 2**20:.1f} MiB: {e.strerror}{limit}") from None


def _reserve(fd: int, nbytes: int) -> None:
    """Allocate every page of the segment now: a sparse object that two runs both counted as fitting
    would SIGBUS the first process that touches a page /dev/shm no longer has."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
            free = _free_bytes()
            have = "" if free is None else f" ({free / 2**20:.1f} MiB free now)"
            raise SegmentError(f"cannot reserve {nbytes / 2**20:.1f} MiB in {SHM_DIR}{have}: another run or "
                               f"a file there holds the space; shmrss cleanup removes stale segments") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here: the sparse object stays
            raise SegmentError(f"cannot reserve {nbytes / 2**20:.1f} MiB in {SHM_DIR}: {e.strerror}") from None


def _free_bytes() -> int | None:
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def pid_namespace() -> int:
    """The inode of this process's PID namespace (0 when /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def check_room(nbytes: int) -> None:
    """Refuse a segment that /dev/shm or memory cannot hold."""
    import psutil

    try:
        st = os.statvfs(SHM_DIR)
        free = st.f_bavail * st.f_frsize
        if nbytes > free:
            raise SegmentError(f"segment needs {nbytes / 2**20:.1f} MiB but {SHM_DIR} has {free / 2**20:.1f} MiB free")
    except FileNotFoundError:
        pass
    avail = psutil.virtual_memory().available
    if nbytes > avail // 2:
        raise SegmentError(f"segment needs {nbytes / 2**20:.1f} MiB, more than half the {avail / 2**20:.0f} MiB available")


def list_segments() -> list[str]:
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def owner_pid(name: str) -> int | None:
    """The owner pid recorded in a segment's header, or None if it is unreadable (never blocks: a FIFO,
    a directory or someone else's file is just unreadable)."""
    try:
        h = read_header(name, any_version=True)
    except SegmentError:
        return None
    return int(h[L.H_OWNER_PID])


def read_header(name: str, any_version: bool = False) -> np.ndarray:
    """A copy of the header of our own segment ``name``, validated; SegmentError (one line) says why not.

    Opened with O_NOFOLLOW|O_NONBLOCK and fstat'ed: symlinks, FIFOs, directories and other users' files
    are refused without blocking on them or following them. ``any_version``: a segment of another layout
    version is returned unvalidated (only slots 0..H_OWNER_PID are the same in every version)."""
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SegmentError("a symlink, not a segment") from None
        raise SegmentError(f"cannot open it: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SegmentError("not a regular file")
        if st.st_uid != os.geteuid():
            raise SegmentError(f"belongs to uid {st.st_uid}, not to you")
        if st.st_size < L.H_WORDS * 8:
            raise SegmentError(f"not a shmrss segment ({st.st_size} bytes, no header)")
        head = np.frombuffer(os.pread(fd, 16, 0), dtype=np.int64)
        if len(head) < 2 or int(head[L.H_MAGIC]) != L.MAGIC:
            raise SegmentError("not a shmrss segment (no shmrss magic)")
        if any_version and int(head[L.H_VERSION]) != L.VERSION:
            return np.frombuffer(os.pread(fd, (L.H_OWNER_PID + 1) * 8, 0), dtype=np.int64).copy()
        if int(head[L.H_VERSION]) != L.VERSION:
            raise SegmentError(f"layout version {int(head[L.H_VERSION])}, this shmrss reads {L.VERSION}")
        words = np.frombuffer(os.pread(fd, L.H_WORDS * 8, 0), dtype=np.int64).copy()
        validate_header(words, st.st_size)  # reads header slots only
        return words
    except (OSError, ValueError) as e:
        raise SegmentError(f"cannot read it: {getattr(e, 'strerror', None) or e}") from None
    finally:
        os.close(fd)


def _owner_gone(pid: int, created_ns: int) -> bool:
    """True if no live process ``pid`` of this namespace can be the segment's owner (none, a zombie, or a
    newer one)."""
    import psutil

    if pid <= 0:
        return False  # no owner recorded: not ours to judge
    if not pid_alive(pid):
        return True
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return created_ns > 0 and started > created_ns / 1e9 + 1.0  # the pid was reused after the owner died


def stale_reason(name: str) -> str | None:
    """None if ``name`` is our segment whose owner is dead in this PID namespace (safe to remove), else
    why it is left alone."""
    try:
        h = read_header(name)
    except SegmentError as e:
        return str(e)
    if int(h[L.H_PIDNS]) != pid_namespace():
        return (f"made in another PID namespace (a container sharing {SHM_DIR}): its owner pid "
                f"{int(h[L.H_OWNER_PID])} cannot be checked from here")
    pid = int(h[L.H_OWNER_PID])
    if not _owner_gone(pid, int(h[L.H_CREATED_NS])):
        return f"owner pid {pid} is alive" if pid > 0 else "no owner recorded"
    return None


def cleanup_stale() -> tuple[list[str], dict[str, str]]:
    """Unlink our segments whose owner is dead in this PID namespace. Returns (removed, {skipped: why})."""
    removed: list[str] = []
    skipped: dict[str, str] = {}
    for name in list_segments():
        why = stale_reason(name)
        if why is None:
            why = _unlink_checked(name)
        if why is None:
            removed.append(name)
        elif why != "gone":
            skipped[name] = why
    return removed, skipped


def _unlink_checked(name: str) -> str | None:
    """Unlink ``name`` if it is still the regular file of ours just judged; None when removed."""
    path = os.path.join(SHM_DIR, name)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return "replaced while being looked at"
        os.unlink(path)
    except FileNotFoundError:
        return "gone"
    except OSError as e:
        return f"cannot remove it: {e.strerror}"
    return None

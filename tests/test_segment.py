"""shmrss.segment: layout, create / attach / unlink, header validation, stale-segment cleanup."""

from __future__ import annotations

import mmap
import os
import time
import re
import stat
import subprocess
import sys

import numpy as np
import posix_ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmrss import layout as L
from shmrss.designs import DESIGNS
from shmrss.segment import (
    PREFIX,
    SHM_DIR,
    Segment,
    SegmentError,
    check_room,
    cleanup_stale,
    compute_layout,
    estimate_bytes,
    list_segments,
    new_name,
    owner_pid,
    validate_header,
)

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

REGION_SLOTS = {
    "ctrl": L.H_CTRL, "cpustat": L.H_CPUSTAT, "truth": L.H_TRUTH, "pcpu": L.H_PCPU, "mm": L.H_MM,
    "task": L.H_TASK, "tape": L.H_TAPE, "runqueue": L.H_RQ, "reader": L.H_READER, "global": L.H_GLOBAL,
}


def shm_path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


@pytest.fixture
def raw_object():
    """Create bare POSIX shm objects with a shmrss-looking name; always unlinked."""
    made = []

    def make(data: bytes | np.ndarray, size: int | None = None) -> str:
        name = new_name()
        buf = data.tobytes() if isinstance(data, np.ndarray) else data
        size = len(buf) if size is None else size
        shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=size)
        made.append(name)
        try:
            if size:
                with mmap.mmap(shm.fd, size) as m:
                    m[: min(len(buf), size)] = buf[:size]
        finally:
            shm.close_fd()
        return name

    yield make
    for name in made:
        try:
            posix_ipc.unlink_shared_memory("/" + name)
        except posix_ipc.ExistentialError:
            pass


# ================================================================= layout
def _check_layout(g):
    lay = compute_layout(g)
    h = lay.header
    lw = g.line_words
    total = lay.total_words
    assert h[L.H_MAGIC] == L.MAGIC and h[L.H_VERSION] == L.VERSION
    assert h[L.H_LINE] == lw and h[L.H_TOTAL] == total
    assert total % lw == 0
    # every region starts on a line and the header points at it
    for name, slot in REGION_SLOTS.items():
        base, words = lay.regions[name]
        assert h[slot] == base, name
        assert base % lw == 0, (name, base, lw)
        assert base >= L.H_WORDS
    # no overlap, everything inside the segment
    spans = sorted(lay.regions.values())
    for (b0, w0), (b1, _) in zip(spans, spans[1:]):
        assert b0 + w0 <= b1
    b, w = spans[-1]
    assert b + w <= total
    # strides: a CPU's (and a task's, an mm's) records never share a line with the next one
    for slot in (L.H_CPUSTAT_STRIDE, L.H_TRUTH_STRIDE, L.H_MM_STRIDE, L.H_TASK_STRIDE, L.H_RQ_STRIDE):
        assert h[slot] > 0 and h[slot] % lw == 0, slot
    assert h[L.H_CPUSTAT_STRIDE] >= L.S_WORDS
    assert h[L.H_TRUTH_STRIDE] >= g.nmm * L.NMEMBERS
    assert h[L.H_MM_STRIDE] >= g.shape.mm_words
    assert h[L.H_TASK_STRIDE] >= L.T_WORDS + g.shape.task_words
    assert h[L.H_RQ_STRIDE] >= L.Q_IDS + g.ntask  # lock, count, then the task ids
    assert lay.regions["runqueue"][1] == g.ncpu * h[L.H_RQ_STRIDE]
    assert lay.regions["global"][1] == g.shape.global_words == h[L.H_GLOBAL_WORDS]
    assert lay.regions["mm"][1] == g.nmm * h[L.H_MM_STRIDE]
    assert lay.regions["cpustat"][1] == g.ncpu * h[L.H_CPUSTAT_STRIDE]
    assert lay.regions["truth"][1] == g.ncpu * h[L.H_TRUTH_STRIDE]
    assert lay.regions["reader"][1] == L.R_HEAD_WORDS + 2 * g.ring
    assert lay.regions["tape"][1] == g.tape_steps * L.STEP_WORDS
    assert h[L.H_NCPU] == g.ncpu and h[L.H_POSSIBLE] == g.possible and h[L.H_NMM] == g.nmm
    assert h[L.H_NTASK] == g.ntask and h[L.H_PACK] == int(g.pack) and h[L.H_DESIGN] == g.design_id
    for i, p in enumerate(g.shape.params):
        assert h[L.H_DPARAM + i] == p

    # per-CPU words: one per (possible CPU, mm, member), all distinct and inside the pcpu region
    kw = g.shape.pcpu_words_per_mm
    assert h[L.H_PCPU_KWORDS] == kw
    if kw:
        cpu = np.arange(g.possible)[:, None, None]
        k = (np.arange(g.nmm)[:, None] * kw + np.arange(kw)[None, :])[None, :, :]
        addr = h[L.H_PCPU] + cpu * h[L.H_PCPU_CSTRIDE] + k * h[L.H_PCPU_KSTRIDE]
        base, words = lay.regions["pcpu"]
        assert len(np.unique(addr)) == addr.size
        assert addr.min() >= base and addr.max() < base + words
        lines_of_cpu = [set((addr[c].ravel() // lw).tolist()) for c in range(g.possible)]
        shared = any(lines_of_cpu[a] & lines_of_cpu[b] for a in range(g.possible) for b in range(a))
        if g.pack:
            # interleaved: word k of every CPU side by side (false sharing on purpose)
            assert h[L.H_PCPU_CSTRIDE] == 1 and h[L.H_PCPU_KSTRIDE] == g.possible
            assert shared == (g.possible > 1)
        else:
            assert h[L.H_PCPU_CSTRIDE] % lw == 0  # each CPU's unit starts on its own line
            assert not shared
    return lay


@relaxed
@given(design=st.sampled_from(DESIGNS), ncpu=st.integers(1, 64), extra=st.integers(0, 40),
       nmm=st.integers(1, 40), ntask=st.integers(1, 40), line=st.sampled_from([64, 128]), pack=st.booleans(),
       ring=st.sampled_from([1, 16, 1000, 1 << 14]), steps=st.integers(1, 50))
def test_layout_regions_aligned_disjoint_and_inside(design, ncpu, extra, nmm, ntask, line, pack, ring, steps, geometry):
    g = geometry(design, ncpu, ncpu + extra, nmm, ntask, line // 8, pack, ring, steps)
    lay = _check_layout(g)
    assert estimate_bytes(g) == lay.total_words * 8


@pytest.mark.parametrize("line", [64, 128])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("design", DESIGNS)
def test_created_segment_matches_layout(design, line, pack, geometry, new_segment):
    g = geometry(design, ncpu=3, possible=5, nmm=2, ntask=3, line_words=line // 8, pack=pack)
    lay = _check_layout(g)
    with new_segment(g) as seg:
        assert seg.words.size == lay.total_words
        assert os.stat(shm_path(seg.name)).st_size == lay.total_words * 8
        hdr = seg.words[: L.H_WORDS].copy()
        # filled in at creation
        assert hdr[L.H_OWNER_PID] == os.getpid()
        assert hdr[L.H_RUN_ID] == int(seg.name[len(PREFIX):], 16) & ((1 << 63) - 1)
        assert hdr[L.H_CREATED_NS] > 0
        assert hdr[L.H_PIDNS] == os.stat("/proc/self/ns/pid").st_ino  # cleanup judges the owner pid in it
        assert hdr[L.H_BASE] == seg.words.ctypes.data  # the owner's mapping: the C designs' pointers are there
        hdr[[L.H_OWNER_PID, L.H_RUN_ID, L.H_CREATED_NS, L.H_PIDNS, L.H_BASE]] = 0
        assert np.array_equal(hdr, lay.header)
        assert not seg.words[L.H_WORDS:].any()  # the rest starts zeroed
        # the data starts on a cache line in memory too (mmap is page aligned)
        assert seg.words.ctypes.data % line == 0


def test_layout_refuses_too_many_params(geometry):
    from dataclasses import replace

    from shmrss.segment import DesignShape

    room = L.H_DPARAM_WORDS
    assert room == 16
    g = geometry("atomic", 1)
    ok = compute_layout(replace(g, shape=DesignShape(pcpu_words_per_mm=0, mm_words=4, params=tuple(range(1, 17)))))
    assert ok.header[L.H_DPARAM: L.H_DPARAM + L.H_DPARAM_WORDS].tolist() == list(range(1, 17))  # all 16 stored
    g = replace(g, shape=DesignShape(pcpu_words_per_mm=0, mm_words=4, params=tuple(range(17))))
    with pytest.raises(ValueError, match="16 parameters"):
        compute_layout(g)


# ================================================================= create / attach / unlink
def test_create_attach_unlink(geometry, new_segment):
    g = geometry("percpu", ncpu=2, nmm=2)
    with new_segment(g) as seg:
        path = shm_path(seg.name)
        st_ = os.stat(path)
        assert stat.S_IMODE(st_.st_mode) == 0o600
        assert st_.st_uid == os.getuid()
        assert seg.name in list_segments()
        assert owner_pid(seg.name) == os.getpid()

        other = Segment.attach("/" + seg.name)  # leading slash accepted
        try:
            assert not other.owner and not other.readonly
            other.words[-1] = 12345  # the last word: past the header, whatever the layout's size
            assert seg.words[-1] == 12345  # same memory
            seg.words[L.H_WORDS] = -7
            assert other.words[L.H_WORDS] == -7
        finally:
            other.close()

        ro = Segment.attach(seg.name, readonly=True)
        try:
            assert ro.readonly and ro.words[L.H_WORDS] == -7
            with pytest.raises(ValueError):
                ro.words[L.H_WORDS] = 1
        finally:
            ro.close()

        seg.unlink()
        assert not os.path.exists(path)
        with pytest.raises(SegmentError, match="no segment"):
            Segment.attach(seg.name)
        seg.unlink()  # twice is harmless
        assert seg.name not in list_segments()


def test_create_refuses_existing_name(geometry, new_segment):
    g = geometry("atomic", ncpu=1)
    with new_segment(g) as seg:
        with pytest.raises(SegmentError, match="already exists"):
            Segment.create(g, name=seg.name)
        assert owner_pid(seg.name) == os.getpid()  # the original is untouched


def test_names_are_random_hex():
    names = [new_name() for _ in range(200)]
    for n in names:
        assert re.fullmatch(r"shmrss-[0-9a-f]{16}", n), n
    assert len(set(names)) == len(names)
    # all 16 hex digits vary (not a counter or a pid with a fixed prefix)
    for pos in range(len(PREFIX), len(PREFIX) + 16):
        assert len({n[pos] for n in names}) > 4


def test_created_names_are_random(geometry, new_segment):
    g = geometry("atomic", ncpu=1)
    with new_segment(g) as a, new_segment(g) as b:
        assert a.name != b.name
        assert re.fullmatch(r"shmrss-[0-9a-f]{16}", a.name)
        assert re.fullmatch(r"shmrss-[0-9a-f]{16}", b.name)


# ================================================================= attach refuses
def test_attach_refuses_foreign_name():
    with pytest.raises(SegmentError, match="not a shmrss segment name"):
        Segment.attach("some-other-object")


def test_attach_refuses_missing():
    with pytest.raises(SegmentError, match="no segment named"):
        Segment.attach(new_name())


def _valid_header(geometry, **kw) -> tuple[np.ndarray, int]:
    lay = compute_layout(geometry("percpu", ncpu=2, nmm=2, **kw))
    words = np.zeros(lay.total_words, dtype=np.int64)
    words[: L.H_WORDS] = lay.header
    return words, lay.total_words


def test_attach_accepts_a_well_formed_object(geometry, raw_object):
    words, _ = _valid_header(geometry)
    name = raw_object(words)
    seg = Segment.attach(name, readonly=True)
    try:
        assert seg.h(L.H_NCPU) == 2
    finally:
        seg.close()


def test_attach_refuses_bad_magic(geometry, raw_object):
    words, _ = _valid_header(geometry)
    words[L.H_MAGIC] ^= 1
    with pytest.raises(SegmentError, match="magic"):
        Segment.attach(raw_object(words))
    with pytest.raises(SegmentError, match="magic"):
        Segment.attach(raw_object(b"\0" * 4096))


def test_attach_refuses_other_version(geometry, raw_object):
    words, _ = _valid_header(geometry)
    words[L.H_VERSION] = L.VERSION + 1
    with pytest.raises(SegmentError, match="version"):
        Segment.attach(raw_object(words))


def test_attach_refuses_truncated(geometry, raw_object):
    words, total = _valid_header(geometry)
    # shorter than a header
    with pytest.raises(SegmentError, match="truncated"):
        Segment.attach(raw_object(words[:10]))
    with pytest.raises(SegmentError, match="truncated"):
        Segment.attach(raw_object(b""))
    # a whole header, but the object is smaller than the header says
    with pytest.raises(SegmentError, match="truncated"):
        Segment.attach(raw_object(words[: total - 8]))


def test_attach_refuses_header_pointing_outside(geometry, raw_object):
    words, total = _valid_header(geometry)
    words[L.H_READER] = total + 100
    with pytest.raises(SegmentError, match="outside"):
        Segment.attach(raw_object(words))
    words, total = _valid_header(geometry)
    words[L.H_LINE] = 12
    with pytest.raises(SegmentError, match="cache line"):
        Segment.attach(raw_object(words))
    words, total = _valid_header(geometry)
    words[L.H_NCPU] = 0
    with pytest.raises(SegmentError, match="impossible"):
        Segment.attach(raw_object(words))


# ================================================================= validate_header fuzz
I64 = st.integers(-(1 << 63), (1 << 63) - 1)
INTERESTING = st.one_of(I64, st.integers(-2, 70), st.sampled_from([L.MAGIC, L.VERSION, 8, 16, L.H_WORDS, 1 << 20]))


@relaxed
@given(data=st.binary(max_size=1024))
def test_validate_header_random_bytes(data):
    data = data[: len(data) // 8 * 8]
    words = np.frombuffer(data, dtype=np.int64)
    try:
        validate_header(words, len(data))
    except SegmentError as e:
        assert "\n" not in str(e)
    else:  # pragma: no cover - random bytes carrying the magic are vanishingly rare
        assert int(words[L.H_MAGIC]) == L.MAGIC


@relaxed
@given(data=st.data(), pack=st.booleans(), line=st.sampled_from([8, 16]))
def test_validate_header_mutated(data, pack, line, geometry):
    """Start from a valid header, corrupt some slots, cut or extend the object: only SegmentError."""
    words, total = _valid_header(geometry, pack=pack, line_words=line)
    nmut = data.draw(st.integers(0, 6))
    for _ in range(nmut):
        words[data.draw(st.integers(0, L.H_WORDS - 1))] = data.draw(INTERESTING)
    n = data.draw(st.sampled_from([total, 0, 1, 3, L.H_WORDS - 1, L.H_WORDS, total // 2, total - 1]))
    words = words[:n]
    size = n * 8
    try:
        validate_header(words, size)
    except SegmentError as e:
        assert str(e) and "\n" not in str(e)
    else:
        # accepted: then what it promises holds
        t = int(words[L.H_TOTAL])
        assert int(words[L.H_MAGIC]) == L.MAGIC and int(words[L.H_VERSION]) == L.VERSION
        assert L.H_WORDS <= t and t * 8 <= size
        assert int(words[L.H_LINE]) in (8, 16)
        for slot in (L.H_CTRL, L.H_CPUSTAT, L.H_TRUTH, L.H_PCPU, L.H_MM, L.H_TASK, L.H_TAPE, L.H_RQ, L.H_READER):
            assert L.H_WORDS <= int(words[slot]) < t


# ================================================================= cleanup, room
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_cleanup_removes_dead_owner_keeps_live(geometry):
    g = geometry("atomic", ncpu=1)
    dead = Segment.create(g)
    live = Segment.create(g)
    try:
        dead_pid = _dead_pid()
        dead.words[L.H_OWNER_PID] = dead_pid
        assert owner_pid(dead.name) == dead_pid
        removed, kept = cleanup_stale()
        assert dead.name in removed and dead.name not in kept
        assert not os.path.exists(shm_path(dead.name))
        assert live.name in kept and live.name not in removed
        assert os.path.exists(shm_path(live.name))
        assert owner_pid(live.name) == os.getpid()
    finally:
        for s in (dead, live):
            s.unlink()
            s.close()


def test_cleanup_leaves_an_unreadable_object_however_old(raw_object):
    # issue 13: only a segment whose header it can read is removed (another layout version, another user's
    # file, anything else with the prefix is listed as skipped, with the reason)
    name = raw_object(b"\0" * 64)
    old = time.time() - 60
    os.utime(shm_path(name), (old, old))
    removed, skipped = cleanup_stale()
    assert name not in removed and "no header" in skipped[name]
    assert os.path.exists(shm_path(name))


def test_cleanup_keeps_young_unreadable(raw_object):
    # a run between creating its segment and writing its header looks like this
    name = raw_object(b"\0" * 64)
    removed, kept = cleanup_stale()
    assert name in kept and name not in removed
    assert os.path.exists(shm_path(name))


def test_check_room():
    check_room(4096)  # a page always fits
    with pytest.raises(SegmentError, match="MiB"):
        check_room(1 << 60)


def test_create_refuses_absurd_geometry(geometry):
    g = geometry("atomic", ncpu=1, ring=1 << 40)
    before = set(list_segments())
    with pytest.raises(SegmentError, match="MiB"):
        Segment.create(g)
    # refused before anything was created
    assert not [n for n in set(list_segments()) - before if owner_pid(n) in (None, os.getpid())]


def test_one_header_accessor():
    """``Segment.h`` reads a header word; ``region``, an unused copy of it, is gone (issue 12, item 8)."""
    from shmrss.segment import Segment

    assert callable(Segment.h) and not hasattr(Segment, "region")

"""``shmrss monitor`` and ``run --live`` on the C designs (docs/kernel-c.md): k-percpu and k-tree read through
the C's own layout from another mapping of the segment, equal to the C's own reads; an mm the C has not set up
shown as "-"; a c: spec's counters said not to be read, never wrong numbers."""

from __future__ import annotations

import numpy as np
import pytest

from shmrss import layout as L, monitor_reads as MR
from shmrss.cli import main
from shmrss.designs._kernel import UNREAD
from shmrss.kernel import source
from shmrss.segment import Segment
from test_kernel_c import HERE, HPCC, KSRC, needs_gcc, needs_hpcc, needs_kernel
from test_monitor import blocks, digest, table

TREES = [pytest.param("k-percpu", marks=needs_kernel), pytest.param("k-tree", marks=needs_hpcc)]


def _use(design: str, monkeypatch) -> None:
    """Build the design's C from its tree ($SHMRSS_KERNEL_SRC is what the library is built from)."""
    from shmrss.kernel import kpercpu, ktree

    src = KSRC if design == "k-percpu" else HPCC
    monkeypatch.setenv(source.ENV, src)
    (kpercpu if design == "k-percpu" else ktree).require(design, src)


def _segment(design: str, stream):
    """A segment of ``design`` (2 CPUs, one mm) after ``stream`` (verify's op rows), the truth on CPU 0's
    line, and what the C's own reads return: (approx, precise, under, over) per member (zeros, unread, when
    ``stream`` is empty)."""
    from shmrss import verify, verify_writes

    seg = verify._segment(design, 2)
    driver = verify_writes.copy(design)
    out = np.zeros((L.NMEMBERS, 4), dtype=np.int64)
    for kind, cpu, k, d in stream:
        driver.verify_apply(seg.words, int(kind), int(cpu), int(k), int(d))
    if len(stream):  # the C's own reads of an mm it has not set up would follow its NULL pointers
        driver.verify_read(seg.words, out)
    truth = seg.h(L.H_TRUTH)
    seg.words[truth: truth + L.NMEMBERS] = out[:, 1]
    return seg, out


def _snapshot(seg: Segment, design: str) -> np.ndarray:
    """The monitor's values of mm 0, read through a read-only mapping of its own (another address)."""
    ro = Segment.attach(seg.name, readonly=True, own_only=True)
    try:
        assert ro.words.ctypes.data != seg.words.ctypes.data  # the C's plain pointers are not valid here as is
        MR.check_shape(ro.words, design)
        return MR.snapshot(design, ro.words, np.array([0]))[0]
    finally:
        ro.words = None
        ro.close()


@pytest.mark.parametrize("design", TREES)
def test_the_monitor_reads_a_c_design_as_its_own_c_does(design, monkeypatch):
    from shmrss import verify

    _use(design, monkeypatch)
    seg, c = _segment(design, [(2, 0, 0, 0), *verify.ops(400, 2, 3)])
    try:
        before = digest(seg.name)
        got = _snapshot(seg, design)
        assert digest(seg.name) == before
    finally:
        seg.unlink()
        seg.close()
    assert np.abs(c[:, 1]).sum() > 0 and (c[:, 0] != c[:, 1]).any()  # not all zeros, nor all settled
    for k in range(L.NMEMBERS):
        t, approx, under, over, precise, settled = (int(x) for x in got[k])
        assert (approx, precise, under, over) == tuple(int(x) for x in c[k]), (design, k)
        assert settled == 1 and t == precise


@pytest.mark.parametrize("design", TREES)
def test_an_mm_the_c_has_not_set_up_is_shown_as_unread(design, monkeypatch, capsys):
    """No mm_init yet: the C's pointers are 0, which the monitor does not follow (the header's words)."""
    _use(design, monkeypatch)
    seg, _ = _segment(design, [])
    try:
        got = _snapshot(seg, design)
        assert main(["monitor", seg.name, "--count", "1"]) == 0
        out = capsys.readouterr().out
    finally:
        seg.unlink()
        seg.close()
    assert got[L.ANON, MR.PRECISE] == UNREAD and got[L.ANON, MR.SETTLED] == 0
    if design == "k-tree":
        assert got[L.ANON, MR.APPROX] == UNREAD
    (frame,) = blocks(out, seg.name)
    head, *rows = table(frame, "mms")
    assert head == ["mm", "member", "truth", "approx", "bound", "precise"]
    assert rows and all(r[5] == "-" for r in rows)
    assert "own pointer for that value does not (yet) point where its C puts it" in frame


@needs_gcc
def test_a_c_spec_is_said_not_to_be_read(monkeypatch, capsys):
    from shmrss import verify
    from shmrss.kernel import spec

    monkeypatch.setenv(spec.ENV, "")  # restored after: spec.require sets it
    assert spec.require(f"c:{HERE / 'mycounter.toml'}") == "c"
    seg = verify._segment("c", 2)
    try:
        seg.words[seg.h(L.H_TRUTH) + L.ANON] = 7
        assert main(["monitor", seg.name, "--count", "1"]) == 0
        out = capsys.readouterr().out
    finally:
        seg.unlink()
        seg.close()
    (frame,) = blocks(out, seg.name)
    assert frame.splitlines()[0].split()[1] == "c"
    head, *rows = table(frame, "mms")
    assert rows == [["0", "anon", "7", "-", "-", "-"]]
    assert "counters of c not read: a c: spec's counter object is laid out by its own C" in frame


@needs_kernel
def test_run_live_shows_k_percpus_counters(capsys, monkeypatch):
    monkeypatch.setenv(source.ENV, KSRC)
    code = main(["run", "--design", "k-percpu", "--kernel-src", KSRC, "--cpus", "2", "--duration", "2",
                 "--no-calibrate", "--live"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    views = [b for b in cap.err.split("\n\n") if "shmrss run --live: k-percpu page_fault1" in b]
    assert views, cap.err
    read = []  # the rows of the views drawn while the counters were the run's (before its teardown)
    for view in views:
        head, *rows = table(view, "mms")
        assert head == ["mm", "member", "truth", "approx", "bound", "precise"]
        if rows and all(r[3] != "-" for r in rows):
            read += rows
    assert read, views[-1]
    for r in read:
        approx, precise = (int(x.replace(",", "")) for x in (r[3], r[5]))
        assert r[4] == "+/-62" and approx >= 0 and precise > 0  # 2 CPUs, batch 32: N * (B - 1)

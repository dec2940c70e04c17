"""``--host-cpus LIST``: the host CPUs the emulated CPUs are pinned to, in the order given.

The list uses taskset's format (``0,2-3``, ``0-15:2`` for every other CPU);
unlike a kernel cpu list the order matters (emulated CPU i goes to the i-th
entry) and a repeated CPU is refused rather than merged. Whether the CPUs exist and are usable
is ``shmrss.topology.refuse_unusable``'s to say, when the run is placed.
"""

from __future__ import annotations

import argparse
import re

MAX_CPU = (1 << 20) - 1  # far beyond any kernel's NR_CPUS; keeps range() of a typo small
_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?", re.ASCII)  # ASCII: not "١" or "１"


def parse(text: str) -> list[int]:
    """``"3,0-1"`` -> ``[3, 0, 1]``; argparse type for ``--host-cpus``."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty CPU list")
    cpus: list[int] = []
    seen: set[int] = set()
    for item in text.split(","):
        m = _ITEM.fullmatch(item.strip())
        if m is None:
            raise argparse.ArgumentTypeError(
                f"bad item {item.strip()!r} in {text!r}: use CPU numbers and ranges like 0,2-3 or 0-7:2")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo:
            raise argparse.ArgumentTypeError(f"descending range {item.strip()!r} in {text!r}")
        if step < 1:
            raise argparse.ArgumentTypeError(f"stride 0 in {item.strip()!r}")
        if hi > MAX_CPU:
            raise argparse.ArgumentTypeError(f"CPU {hi} does not exist (at most {MAX_CPU})")
        for c in range(lo, hi + 1, step):
            if c in seen:
                raise argparse.ArgumentTypeError(f"CPU {c} is listed twice in {text!r}: one emulated CPU a host CPU")
            seen.add(c)
            cpus.append(c)
    return cpus

"""Numbers shown to the precision they have: no digit below the spread of the runs or the step the value
is quantised to (the TSC step for a latency), as a measured value ± uncertainty is written.

``place`` is the decimal place a value is known to; ``value`` writes a value to it (with M or G for
millions and billions); ``pct`` and ``spread_pct`` write a change and a relative spread.
"""

from __future__ import annotations

import math

SIGNIFICANT = 4  # digits of a value that has no spread (one run) and no coarser step


def _decade(x: float) -> int:
    return math.floor(math.log10(abs(x)))


def place(value: float, stdev: float = 0.0, step: float = 0.0) -> float:
    """The power of ten a value is known to: the second significant digit of its standard deviation, never
    finer than its quantisation step; for a value with neither, its SIGNIFICANT-th digit."""
    candidates = []
    if stdev > 0:
        candidates.append(10.0 ** (_decade(stdev) - 1))
    if step > 0:
        candidates.append(10.0 ** _decade(step))
    if not candidates:
        return 10.0 ** (_decade(value) - SIGNIFICANT + 1) if value else 1.0
    return max(candidates)


def value(v: float, at: float) -> str:
    """``v`` rounded to the power of ten ``at``, with M or G for millions and billions."""
    scale, suffix = 1.0, ""
    for s, name in ((1e9, "G"), (1e6, "M")):
        if abs(v) >= s:
            scale, suffix = s, name
            break
    decimals = max(0, -_decade(at / scale)) if at / scale < 1 else 0
    rounded = round(v / at) * at / scale
    return f"{rounded:,.{decimals}f}{suffix}"


def spread_pct(cv: float | None) -> str:
    """A coefficient of variation as lkp's ``±%stddev``: two significant digits, at most a whole percent."""
    if cv is None:
        return ""
    p = cv * 100.0
    if p == 0:
        return "0%"
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def pct(change: float, half_width: float | None = None) -> str:
    """A signed change in percent: to the two significant digits of its interval's half-width when it has
    one, else one decimal (two significant digits below 1%)."""
    if half_width:
        decimals = max(0, 1 - _decade(half_width))
    else:
        decimals = 1 if abs(change) >= 1 or change == 0 else 1 - _decade(change)
    text = f"{change:+.{min(decimals, 9)}f}"
    if float(text) == 0:
        text = "+" + text[1:]
    return text + "%"

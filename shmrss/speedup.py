"""How many times faster one design ran than another, over repeats: hyperfine's and pyperf's summary line
("percpu ran 1.61 ± 0.04 x faster than atomic").

``paired`` is for the repeats of one ``shmrss run --repeat N`` (or one sweep's passes): repeat i of each
design ran next to each other, so the ratio is taken repeat by repeat and its spread is the spread of
those N ratios. ``unpaired`` is for independent runs (two files): the ratio of the means, its standard
deviation propagated from both sides' (hyperfine's formula). Rates are higher-is-better (events/s);
with one run a side the line says so instead of printing a spread it does not have. ``ran`` words the
sentence for both ``run``'s table and ``compare``'s summary lines.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

TOO_FEW = 3  # as stats.MIN_SAMPLES: with fewer runs a side the spread is shown, not judged


@dataclass(frozen=True)
class Ratio:
    """``mean`` times faster (>= 1 when the first side is the faster one), ``stdev`` over ``n`` runs a side."""

    mean: float
    stdev: float
    n: int


def _valid(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0]


def paired(fast, slow) -> Ratio | None:
    """fast[i] / slow[i] for the repeats both sides have (run order); None without one valid pair."""
    pairs = [(a, b) for a, b in zip(fast, slow) if _valid([a]) and _valid([b])]
    if not pairs:
        return None
    ratios = [a / b for a, b in pairs]
    return Ratio(statistics.fmean(ratios), statistics.stdev(ratios) if len(ratios) > 1 else 0.0, len(ratios))


def unpaired(fast, slow) -> Ratio | None:
    """mean(fast) / mean(slow), stdev by error propagation; n is the smaller side's run count."""
    a, b = _valid(fast), _valid(slow)
    if not a or not b:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sa = statistics.stdev(a) if len(a) > 1 else 0.0
    sb = statistics.stdev(b) if len(b) > 1 else 0.0
    r = ma / mb
    return Ratio(r, r * math.hypot(sa / ma, sb / mb), min(len(a), len(b)))


def _decimals(stdev: float) -> int:
    """One significant digit of the spread, between 1 and 3 decimals (2 without a spread)."""
    if stdev <= 0:
        return 2
    return min(3, max(1, -math.floor(math.log10(stdev))))


def ran(name: str, other: str, ratio: float, stdev: float, spread: bool, higher_is_better: bool = True) -> str:
    """``NAME ran R ± S x faster than OTHER``, the one place the run table and ``compare`` say it: ``ratio`` is
    NAME's value over OTHER's, ``stdev`` its spread (shown when ``spread``). Below 1 it is said as the
    inverse; "slower" when NAME's value is the worse one (lower for a higher-is-better metric). R has the
    decimals of one significant digit of S; without a spread, 2 decimals, and "ran as fast as" at 1.00."""
    word = "faster" if (ratio < 1) != higher_is_better else "slower"
    if ratio < 1:
        ratio, stdev = 1 / ratio, stdev / (ratio * ratio)
    d = _decimals(stdev) if spread else 2
    if not spread and f"{ratio:.{d}f}" == "1.00":
        return f"{name} ran as fast as {other}"
    return f"{name} ran {ratio:.{d}f}{f' ± {stdev:.{d}f}' if spread else ''} x {word} than {other}"


def sentence(name: str, other: str, ratio: Ratio, metric: str = "", runs: str = "repeats") -> str:
    """``NAME ran R ± S x faster than OTHER [in METRIC]`` (``ran``, a higher-is-better rate); one run a side is
    said; ``runs`` names what the n runs are (repeats, runs a side)."""
    if ratio.n == 1:
        tail = " (one run each: no spread, not a verdict)"
    else:
        tail = f" (mean ± sd over {ratio.n} {runs}{': too few to judge' if ratio.n < TOO_FEW else ''})"
    what = f" in {metric}" if metric else ""
    return ran(name, other, ratio.mean, ratio.stdev, ratio.n > 1) + what + tail

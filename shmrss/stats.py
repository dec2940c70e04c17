"""Statistics of repeated measurements, as pyperf and lkp-tests users read them.

``summarize`` keeps the raw samples and gives mean ± standard deviation, the
coefficient of variation, median and min/max, and the reasons a result is
unstable (pyperf's thresholds: a coefficient of variation above 10%, a min or
max 50% or more away from the mean, fewer than 3 samples). ``significance``
says whether two sets of samples differ: Welch's t-test at 95% when both have
at least 3 samples and scipy is installed, otherwise lkp-tests' rule (the two
ranges do not overlap); with a single sample on a side it judges nothing (one
value has no range). It always names the rule it used.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

CV_UNSTABLE = 0.10  # pyperf: "the standard deviation (...) is N% of the mean"
OUTLIER_UNSTABLE = 0.50  # pyperf: min or max 50% or more away from the mean
MIN_SAMPLES = 3
ALPHA = 0.05

RULE_WELCH = "Welch's t-test, 95%"
RULE_RANGES = "ranges do not overlap (lkp-tests)"
RULE_TOO_FEW = "too few samples to judge (fewer than 2 on a side)"


@dataclass(frozen=True)
class Summary:
    """Samples of one metric at one point, with their spread."""

    samples: tuple[float, ...]
    mean: float = field(init=False)
    stdev: float = field(init=False)
    median: float = field(init=False)
    minimum: float = field(init=False)
    maximum: float = field(init=False)

    def __post_init__(self):
        if not self.samples:
            raise ValueError("no samples")
        values = self.samples
        object.__setattr__(self, "mean", statistics.fmean(values))
        object.__setattr__(self, "stdev", statistics.stdev(values) if len(values) > 1 else 0.0)
        object.__setattr__(self, "median", statistics.median(values))
        object.__setattr__(self, "minimum", min(values))
        object.__setattr__(self, "maximum", max(values))

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def cv(self) -> float | None:
        """Coefficient of variation (stdev / |mean|); None for a zero mean."""
        return self.stdev / abs(self.mean) if self.mean else None

    def unstable_reasons(self) -> list[str]:
        reasons = []
        if self.n < MIN_SAMPLES:
            reasons.append(f"only {self.n} sample{'s' if self.n != 1 else ''} (fewer than {MIN_SAMPLES})")
        if self.cv is not None and self.cv > CV_UNSTABLE:
            reasons.append(f"coefficient of variation {self.cv:.0%} (above {CV_UNSTABLE:.0%})")
        if self.mean:
            far = max(abs(self.minimum - self.mean), abs(self.maximum - self.mean)) / abs(self.mean)
            if far >= OUTLIER_UNSTABLE:
                reasons.append(f"min or max {far:.0%} away from the mean (at least {OUTLIER_UNSTABLE:.0%})")
        return reasons

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "stdev": self.stdev, "cv": self.cv, "median": self.median,
                "min": self.minimum, "max": self.maximum, "samples": list(self.samples),
                "unstable": self.unstable_reasons()}


def summarize(samples) -> Summary:
    values = tuple(float(v) for v in samples)
    if any(not math.isfinite(v) for v in values):
        raise ValueError("samples must be finite numbers")
    return Summary(values)


@dataclass(frozen=True)
class Significance:
    significant: bool
    rule: str
    p_value: float | None = None


def _welch_p(base: Summary, new: Summary) -> float | None:
    try:
        from scipy import stats as scipy_stats
    except ImportError:
        return None
    if base.stdev == 0 and new.stdev == 0:
        return 0.0 if base.mean != new.mean else 1.0
    return float(scipy_stats.ttest_ind(base.samples, new.samples, equal_var=False).pvalue)


def significance(base: Summary, new: Summary) -> Significance:
    """Whether ``new`` differs from ``base``, by the strongest rule the samples and the install allow."""
    if base.n < 2 or new.n < 2:  # one value has no range: two single values would always "differ"
        return Significance(False, RULE_TOO_FEW)
    if base.n >= MIN_SAMPLES and new.n >= MIN_SAMPLES:
        p = _welch_p(base, new)
        if p is not None:
            return Significance(p < ALPHA, RULE_WELCH, p)
    apart = new.minimum > base.maximum or new.maximum < base.minimum
    return Significance(apart, RULE_RANGES)


def pct_change(base: Summary, new: Summary) -> float | None:
    """Change of the mean, in percent of the base; None when the base mean is 0."""
    return (new.mean - base.mean) / abs(base.mean) * 100.0 if base.mean else None

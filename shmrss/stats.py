"""Statistics of repeated runs, as pyperf, hyperfine and lkp-tests users read them.

``summarize`` keeps the raw samples and gives mean ± standard deviation, the
coefficient of variation, median and min/max, and the reasons a result is
unstable (pyperf's thresholds: a coefficient of variation above 10%, a min or
max 50% or more away from the mean, fewer than 3 samples).

``significance`` says whether two sets of runs differ. The unit is a run (one
value per run, never the per-second rates inside one run, which are
correlated and carry none of the run-to-run variance). With fewer than
``MIN_RUNS`` runs on a side nothing is judged. Otherwise it is Welch's t-test
at 95% (unequal variances, Welch-Satterthwaite degrees of freedom capped at
their equal-variance value so that unequal sizes keep the level), with the
Student t distribution's tail computed here from the regularised incomplete
beta function (numpy and scipy are not needed), and the 95% confidence
interval of the difference of the means. A value is known only to its
resolution (the TSC step for a latency, one part in a million of the values
otherwise), so each side's variance is at least that of a uniform rounding
error of the resolution: two constant sides that differ below it are not a
difference, and a zero variance never divides by zero.

``invocation_means`` makes the sample of a side pooled from several
invocations (one results file each): one value per invocation, the mean of its
runs. The repeats of one invocation share its process (forked from one parent)
and its window of time, so they can agree more closely with each other than
two invocations do; judging the invocation means keeps the false-positive rate
at its nominal level whatever share of the variance lies between invocations
(tests/test_stats.py's two-level A/A).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

CV_UNSTABLE = 0.10  # pyperf: "the standard deviation (...) is N% of the mean"
OUTLIER_UNSTABLE = 0.50  # pyperf: min or max 50% or more away from the mean
MIN_SAMPLES = 3
MIN_RUNS = 3  # runs a side before a difference is judged
ALPHA = 0.05
REL_RESOLUTION = 1e-6  # the resolution of a value that has no coarser one of its own

RULE_WELCH = "Welch's t-test, 95%"
RULE_TOO_FEW = f"too few runs to judge (fewer than {MIN_RUNS} a side)"


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

    def spread_reasons(self) -> list[str]:
        """pyperf's reasons to call the spread unstable (the number of samples aside)."""
        reasons = []
        if self.cv is not None and self.cv > CV_UNSTABLE:
            reasons.append(f"coefficient of variation {self.cv:.0%} (above {CV_UNSTABLE:.0%})")
        if self.mean:
            far = max(abs(self.minimum - self.mean), abs(self.maximum - self.mean)) / abs(self.mean)
            if far >= OUTLIER_UNSTABLE:
                reasons.append(f"min or max {far:.0%} away from the mean (at least {OUTLIER_UNSTABLE:.0%})")
        return reasons

    def unstable_reasons(self) -> list[str]:
        few = [f"only {self.n} sample{'s' if self.n != 1 else ''} (fewer than {MIN_SAMPLES})"] \
            if self.n < MIN_SAMPLES else []
        return few + self.spread_reasons()

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "stdev": self.stdev, "cv": self.cv, "median": self.median,
                "min": self.minimum, "max": self.maximum, "samples": list(self.samples),
                "unstable": self.unstable_reasons()}


def summarize(samples) -> Summary:
    values = tuple(float(v) for v in samples)
    if any(not math.isfinite(v) for v in values):
        raise ValueError("samples must be finite numbers")
    return Summary(values)


def invocation_means(groups) -> list[float]:
    """One sample per invocation: the mean of its runs' values (an invocation without a value is left out)."""
    return [statistics.fmean(g) for g in groups if len(g)]


# ---- the Student t distribution, from the regularised incomplete beta function ----

def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (DLMF 8.17.22), evaluated by the modified Lentz method;
    it converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15
    f, c, d = 1.0, 1.0, 0.0
    for i in range(1, 400):
        m = i // 2
        if i % 2:  # d_{2m+1}
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:  # d_{2m}
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return f


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the symmetry I_x(a, b) = 1 - I_(1-x)(b, a) keeps the fraction fast
        return 1.0 - incomplete_beta(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    return math.exp(log_front) / a / _beta_fraction(a, b, x)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return 1.0
    if math.isinf(t):
        return 0.0
    return min(1.0, incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


def _t_density(t: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


def t_quantile(p_two_sided: float, df: float) -> float:
    """The t > 0 with P(|T| >= t) = ``p_two_sided``, by Newton's method from 0: the tail is decreasing and
    convex for t > 0, so every step stays below the root and the steps converge to it."""
    t = 0.0
    for _ in range(200):
        step = (t_two_sided_p(t, df) - p_two_sided) / (2.0 * _t_density(t, df))
        t += step
        if step < 1e-12 * max(1.0, t):
            break
    return t


# ---- comparing two sets of runs ----

@dataclass(frozen=True)
class Significance:
    significant: bool
    rule: str
    p_value: float | None = None
    diff_ci: tuple[float, float] | None = None  # 95% CI of new mean - base mean

    @property
    def judged(self) -> bool:
        return self.rule != RULE_TOO_FEW


def _floored_variance(s: Summary, resolution: float) -> float:
    # a uniform rounding error of one resolution step has variance step^2 / 12
    return s.stdev ** 2 + resolution ** 2 / 12.0


def welch(base: Summary, new: Summary, resolution: float = 0.0) -> tuple[float, float, float, float]:
    """(difference of the means, its standard error, t, Welch-Satterthwaite degrees of freedom).

    ``resolution`` is the smallest step the values are known to; it is raised to REL_RESOLUTION of the
    larger |mean| (a constant side still has a spread of one rounding step)."""
    step = max(resolution, REL_RESOLUTION * max(abs(base.mean), abs(new.mean)))
    vb, vn = _floored_variance(base, step) / base.n, _floored_variance(new, step) / new.n
    diff = new.mean - base.mean
    se2 = vb + vn
    if se2 == 0.0:  # both sides are exactly 0
        return diff, 0.0, 0.0, float(base.n + new.n - 2)
    df = se2 ** 2 / (vb ** 2 / (base.n - 1) + vn ** 2 / (new.n - 1))
    se = math.sqrt(se2)
    return diff, se, diff / se, min(df, _equal_variance_df(base.n, new.n))


def _equal_variance_df(n1: int, n2: int) -> float:
    """Welch-Satterthwaite's degrees of freedom were both variances equal: 2 (n - 1) for equal sizes. The
    estimate from the sample variances is capped at it, so that a side of few runs (3 against 30) does not
    borrow the other side's degrees of freedom: uncapped, the false-positive rate of identical setups reaches
    7-8% at such sizes (tests/test_stats.py)."""
    a, b = 1.0 / n1, 1.0 / n2
    return (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))


def significance(base: Summary, new: Summary, resolution: float = 0.0) -> Significance:
    """Whether ``new`` differs from ``base``: Welch's t-test at 95% with at least MIN_RUNS runs a side,
    else not judged (the change is still worth printing, as a change that was not judged)."""
    if base.n < MIN_RUNS or new.n < MIN_RUNS:
        return Significance(False, RULE_TOO_FEW)
    diff, se, t, df = welch(base, new, resolution)
    p = t_two_sided_p(t, df) if se else 1.0
    half = t_quantile(ALPHA, df) * se
    return Significance(p < ALPHA, RULE_WELCH, p, (diff - half, diff + half))


def pct_change(base: Summary, new: Summary) -> float | None:
    """Change of the mean, in percent of the base; None when the base mean is 0."""
    return (new.mean - base.mean) / abs(base.mean) * 100.0 if base.mean else None


def pct_ci(base: Summary, sig: Significance) -> tuple[float, float] | None:
    """The confidence interval of the difference, in percent of the base mean (None without either)."""
    if sig.diff_ci is None or not base.mean:
        return None
    lo, hi = sig.diff_ci
    return lo / abs(base.mean) * 100.0, hi / abs(base.mean) * 100.0


def ratio(base: Summary, new: Summary) -> tuple[float, float] | None:
    """new / base and its uncertainty propagated from both sides' standard deviations (hyperfine's and
    pyperf's "x times faster"); None when either mean is not positive."""
    if base.mean <= 0 or new.mean <= 0:
        return None
    r = new.mean / base.mean
    return r, r * math.hypot(base.stdev / base.mean, new.stdev / new.mean)

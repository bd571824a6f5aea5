"""The statistics of online evaluation: intervals, the canary's tests, and the peeking guard.

Every online figure is reported with its sample size and an interval, so a dashboard reader (and
the automatic canary decision) can tell a difference from noise:

    proportions (hit rate, availability, personalized share)   Wilson score interval
    means (watched minutes per recommendation, ratings)         Student t interval
    latency percentiles                                          distribution-free order-statistic
                                                                 interval (binomial ranks)

The canary is compared with a two-proportion z-test and checked for a sample-ratio mismatch
(chi-square goodness of fit against the configured split). Online evaluation looks at the data
again and again; testing each look at a fixed 5% level would declare far too many false winners.
`sequential_boundary` gives a boundary on |z| that is valid under continuous monitoring up to the
planned sample size (see its docstring).

The intervals and tests are scipy.stats' own (`binomtest(...).proportion_ci`, `t.interval`,
`quantile_test(...).confidence_interval`, `chisquare`). Two stay hand-written: the pooled
two-proportion z-test (scipy has none; statsmodels would be a new dependency for six lines), and
the sequential boundary (a closed form specific to this analysis).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class Estimate:
    """A figure with its sample size and a (low, high) confidence interval."""

    value: float | None
    n: int
    low: float | None
    high: float | None
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _z(confidence: float) -> float:
    return float(st.norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Share successes/n with the Wilson score interval (sane at 0, 1 and small n)."""
    if n <= 0:
        return Estimate(None, 0, None, None, "wilson")
    ci = st.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(successes / n, n, max(0.0, float(ci.low)), min(1.0, float(ci.high)), "wilson")


def mean_ci(values, confidence: float = 0.95) -> Estimate:
    """Mean with a Student t interval (None bounds below two values)."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Estimate(None, 0, None, None, "t")
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, n, None, None, "t")
    sem = float(st.sem(x))
    if sem == 0.0:  # all values equal: the interval is the point (scipy would give NaN)
        return Estimate(mean, n, mean, mean, "t")
    low, high = st.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Estimate(mean, n, float(low), float(high), "t")


def quantile_ci(values, q: float, confidence: float = 0.95) -> Estimate:
    """The q-quantile with a distribution-free interval from binomial order-statistic ranks.

    The number of samples below the true quantile is Binomial(n, q); the interval is the pair of
    order statistics whose ranks cover the middle `confidence` of that distribution
    (`scipy.stats.quantile_test`). Where a bound falls outside the sample (too few values for
    p99) it is None."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Estimate(None, 0, None, None, "order-statistic")
    value = float(np.quantile(x, q, method="inverted_cdf"))
    ci = st.quantile_test(x, q=value, p=q).confidence_interval(confidence_level=confidence)
    low, high = (None if math.isnan(b) else float(b) for b in (ci.low, ci.high))
    return Estimate(value, n, low, high, "order-statistic")


@dataclass(frozen=True)
class ZTest:
    """Two-proportion z-test of arm b against arm a (positive z: b is higher)."""

    z: float
    p_value: float
    diff: float
    diff_low: float
    diff_high: float


def two_proportion_z(x_a: int, n_a: int, x_b: int, n_b: int, confidence: float = 0.95) -> ZTest:
    """Pooled z statistic for p_b - p_a, its two-sided p-value and an unpooled interval of the difference."""
    if n_a <= 0 or n_b <= 0:
        return ZTest(0.0, 1.0, 0.0, -1.0, 1.0)
    p_a, p_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (p_b - p_a) / se0 if se0 > 0 else 0.0
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    half = _z(confidence) * se
    return ZTest(z, float(2 * st.norm.sf(abs(z))), p_b - p_a, p_b - p_a - half, p_b - p_a + half)


@dataclass(frozen=True)
class SRM:
    """Sample-ratio mismatch check: observed vs expected units in the canary arm."""

    observed_canary: int
    observed_stable: int
    expected_share: float
    chi2: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(n_canary: int, n_stable: int, canary_share: float, threshold: float = 0.001) -> SRM:
    """Chi-square goodness of fit (1 dof) of the canary/stable split against the configured share.

    The usual threshold is p < 0.001: an SRM means the assignment or the logging is broken and the
    comparison cannot be trusted, whatever it says."""
    total = n_canary + n_stable
    if total == 0 or not 0 < canary_share < 1:
        return SRM(n_canary, n_stable, canary_share, 0.0, 1.0, False)
    result = st.chisquare([n_canary, n_stable], f_exp=[canary_share * total, (1 - canary_share) * total])
    chi2, p = float(result.statistic), float(result.pvalue)
    return SRM(n_canary, n_stable, canary_share, chi2, p, p < threshold)


def sequential_boundary(information_fraction: float, alpha: float = 0.05) -> float:
    """|z| boundary at information fraction t = n / n_planned, valid for any number of looks.

    Under H0 the score process B(t) = Z(t) * sqrt(t) is a Brownian motion in information time.
    By the reflection principle P(sup_{t<=1} |B(t)| >= c) <= 4 * (1 - Phi(c)), so choosing
    c = Phi^-1(1 - alpha / 4) and stopping when |Z(t)| >= c / sqrt(t) keeps the false-decision
    rate under alpha however often the analysis runs before t = 1 (an O'Brien-Fleming-shaped
    boundary: very strict early, 2.24 at the end for alpha = 0.05)."""
    t = min(max(information_fraction, 1e-9), 1.0)
    return float(st.norm.ppf(1 - alpha / 4)) / math.sqrt(t)

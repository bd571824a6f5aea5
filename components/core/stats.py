"""The statistics of online evaluation: intervals, the canary's tests, and the peeking guard.

Every online figure is reported with its sample size and an interval, so a dashboard reader (and
the automatic canary decision) can tell a difference from noise:

    hit rate (users are the unit)                               delta method over per-user totals
    other proportions (availability, personalized share)       Wilson score interval
    means (watched minutes per recommendation, ratings)         Student t interval
    latency percentiles                                          distribution-free order-statistic
                                                                 interval (binomial ranks)

The canary is checked for a sample-ratio mismatch (chi-square goodness of fit against the
configured split) and compared with `sequential_difference`: users as the unit, and an
always-valid mixture SPRT interval, because online evaluation looks at the data again and again
for as long as a canary runs. `two_proportion_z` and `sequential_boundary` (request-level, valid
only up to a planned size) were the first version's test; the calibration benchmark keeps them
as its baseline.

The intervals and tests are scipy.stats' own (`binomtest(...).proportion_ci`, `t.interval`,
`quantile_test(...).confidence_interval`, `chisquare`). Hand-written on purpose: the mixture SPRT
(a closed form scipy does not have) and the first version's pooled z-test and boundary, kept as the
calibration's baseline.
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


# -- the user as the unit: ratio estimates with delta-method variance, and an always-valid test ------

@dataclass(frozen=True)
class ClusteredShare:
    """A share of requests (hits / requests) whose unit of randomization is the user.

    One user's requests are correlated (the same taste, the same habits), so the variance comes
    from the per-user totals (delta method for a ratio of sums, the same as a cluster-robust
    variance with users as clusters), not from the request count."""

    value: float | None
    variance: float | None
    users: int
    requests: int


def clustered_share(successes: np.ndarray, requests: np.ndarray) -> ClusteredShare:
    """sum(successes) / sum(requests) over users, with var = m/(m-1) * sum((s_i - p n_i)^2) / (sum n_i)^2."""
    s, n = np.asarray(successes, dtype=float), np.asarray(requests, dtype=float)
    m, total = int(s.size), float(n.sum())
    if m == 0 or total <= 0:
        return ClusteredShare(None, None, m, int(total))
    p = float(s.sum() / total)
    if m < 2:
        return ClusteredShare(p, None, m, int(total))
    variance = float(m / (m - 1) * np.sum((s - p * n) ** 2) / total ** 2)
    return ClusteredShare(p, variance, m, int(total))


def clustered_interval(share: ClusteredShare, confidence: float = 0.95) -> Estimate:
    """The share as an `Estimate` with its normal interval on the users-as-unit variance."""
    if share.value is None or share.variance is None:
        return Estimate(share.value, share.requests, None, None, "delta-method (users)")
    half = _z(confidence) * math.sqrt(share.variance)
    return Estimate(share.value, share.requests, max(0.0, share.value - half), min(1.0, share.value + half),
                    "delta-method (users)")


@dataclass(frozen=True)
class SequentialDifference:
    """b - a with its fixed-sample interval and an always-valid (any number of looks) interval.

    `always_low`/`always_high` come from a mixture sequential probability ratio test (mSPRT, a
    normal mixture of width `mixture_sd` over the difference): the chance that the interval ever
    excludes the true difference, over all looks at any cadence, is at most alpha. A decision is
    taken when it excludes 0, i.e. when the mixture likelihood ratio `log_lr` exceeds log(1/alpha)."""

    diff: float
    se: float
    low: float
    high: float
    always_low: float
    always_high: float
    log_lr: float
    threshold: float


def sequential_difference(a: ClusteredShare, b: ClusteredShare, alpha: float = 0.05, mixture_sd: float = 0.05,
                          confidence: float = 0.95) -> SequentialDifference | None:
    """Compare two independent arms (users randomized): None when either has no variance yet.

    With V the variance of the difference estimate d and tau the mixture sd, the mSPRT statistic for
    H0: difference = theta is Lambda = sqrt(V / (V + tau^2)) exp(tau^2 (d - theta)^2 / (2 V (V + tau^2)));
    {theta: Lambda < 1/alpha} is the always-valid interval (Johari, Pekelis, Walsh 2017)."""
    if a.value is None or b.value is None or a.variance is None or b.variance is None:
        return None
    d = b.value - a.value
    v = a.variance + b.variance
    if v <= 0:   # no variation at all in either arm: nothing to test on
        return None
    t2 = mixture_sd ** 2
    se = math.sqrt(v)
    half = _z(confidence) * se
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    threshold = math.log(1 / alpha)
    always = math.sqrt(2 * v * (v + t2) / t2 * (threshold + 0.5 * math.log((v + t2) / v)))
    return SequentialDifference(d, se, d - half, d + half, d - always, d + always, log_lr, threshold)

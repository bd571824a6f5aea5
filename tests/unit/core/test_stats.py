"""The online statistics (scipy.stats underneath) agree with their textbook closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from components.core import stats


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 50), (10, 100), (3, 7), (999, 1000), (5000, 10000)])
def test_wilson_is_the_closed_form(k, n):
    z = st.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    e = stats.wilson(k, n)
    assert (e.value, e.n) == (p, n)
    assert e.low == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert e.high == pytest.approx(min(1.0, centre + half), abs=1e-12)


def test_mean_ci_is_the_t_interval_and_a_point_for_equal_values():
    x = np.random.default_rng(1).exponential(1.0, 40)
    half = st.t.ppf(0.975, 39) * x.std(ddof=1) / math.sqrt(40)
    e = stats.mean_ci(x)
    assert (e.low, e.high) == (pytest.approx(x.mean() - half), pytest.approx(x.mean() + half))
    assert stats.mean_ci([2.0, 2.0, 2.0]).to_dict() == {"value": 2.0, "n": 3, "low": 2.0, "high": 2.0, "method": "t"}
    assert stats.mean_ci([5.0]).low is None and stats.mean_ci([]).value is None


@pytest.mark.parametrize("n, q", [(10, 0.5), (200, 0.9), (2000, 0.99), (50, 0.99)])
def test_quantile_ci_uses_binomial_order_statistic_ranks(n, q):
    x = np.sort(np.random.default_rng(n).exponential(1.0, n))
    lo_rank, hi_rank = int(st.binom.ppf(0.025, n, q)), int(st.binom.ppf(0.975, n, q))
    e = stats.quantile_ci(x, q)
    assert e.low == (x[lo_rank - 1] if lo_rank >= 1 else None)
    assert e.high == (x[hi_rank] if hi_rank < n else None)


def test_sample_ratio_mismatch_is_the_chi_square_of_the_split():
    srm = stats.sample_ratio_mismatch(700, 9300, 0.10)
    expected = np.array([1000.0, 9000.0])
    assert srm.chi2 == pytest.approx((((np.array([700, 9300]) - expected) ** 2) / expected).sum())
    assert srm.mismatch and srm.p_value == pytest.approx(st.chi2.sf(srm.chi2, 1))
    assert not stats.sample_ratio_mismatch(0, 0, 0.1).mismatch

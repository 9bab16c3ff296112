"""A/B-test statistics: published values, simulated coverage and error rates, SRM, edge cases.

The simulations repeat seeded experiments whose true effect is known. A 95% interval
covers the truth with probability 0.95 in each run, so over ``R`` runs the observed
coverage has binomial standard error ``sqrt(0.95 * 0.05 / R)`` (0.0069 for 1000 runs,
0.0109 for 400); the tests accept 0.95 +- 3 standard errors, which a correct method
misses with probability ~0.3% (and, being seeded, the result is the same on every run).
The same reasoning with 0.05 gives the A/A bands.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from recommender.analytics import stats
from recommender.analytics.stats import (
    RateCounts,
    ValueSample,
    analyse_means,
    analyse_rates,
    compare_means,
    compare_rates,
    mean_variant,
    rate_variant,
    sample_ratio_mismatch,
    wilson_interval,
)

ROOT = Path(__file__).resolve().parents[2]


def band(rate: float, runs: int) -> tuple[float, float]:
    """``rate`` +- 3 binomial standard errors over ``runs`` independent simulated experiments."""
    se = math.sqrt(rate * (1 - rate) / runs)
    return rate - 3 * se, rate + 3 * se


def covered(low: float, value: float, high: float) -> bool:
    return low <= value <= high


def assert_no_nan(result) -> None:
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), (f.name, value)


# --------------------------------------------------------------------------- published values


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", 81/263 and 0/10.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(0, 0) is None


def test_difference_uses_newcombe_hybrid_score_interval():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # example (a): 56/70 - 48/80, method 10 gives 0.0524 to 0.3339.
    c = compare_rates(RateCounts(48, 80), RateCounts(56, 70))
    assert c.difference == pytest.approx(0.2)
    assert (round(c.difference_low, 4), round(c.difference_high, 4)) == (0.0524, 0.3339)


def test_relative_lift_interval_is_the_log_ratio_delta_method():
    c = compare_rates(RateCounts(100, 1000), RateCounts(150, 1000))
    se = math.sqrt(0.85 / 150 + 0.9 / 100)
    assert c.lift == pytest.approx(0.5)
    assert c.lift_low == pytest.approx(1.5 * math.exp(-1.959964 * se) - 1, abs=1e-6)
    assert c.lift_high == pytest.approx(1.5 * math.exp(1.959964 * se) - 1, abs=1e-6)


# --------------------------------------------------------------------------- rates by simulation


def test_rate_intervals_cover_the_true_lift_in_95_percent_of_experiments():
    runs, n = 1000, 20_000
    rng = np.random.default_rng(20261204)
    hits = np.zeros(3)
    for x0, x1 in zip(rng.binomial(n, 0.05, runs), rng.binomial(n, 0.055, runs), strict=True):
        c = compare_rates(RateCounts(int(x0), n), RateCounts(int(x1), n))
        v = rate_variant("b", RateCounts(int(x1), n))
        hits += [covered(c.difference_low, 0.005, c.difference_high), covered(c.lift_low, 0.1, c.lift_high),
                 covered(v.low, 0.055, v.high)]
    low, high = band(0.95, runs)
    print(f"rates, {runs} runs: coverage difference {hits[0] / runs:.3f}, relative lift {hits[1] / runs:.3f}, "
          f"treatment rate {hits[2] / runs:.3f} (band {low:.3f}-{high:.3f})")
    assert all(low <= h / runs <= high for h in hits), (hits / runs, (low, high))


def test_rate_aa_test_is_significant_in_5_percent_of_experiments():
    runs, n = 1000, 20_000
    rng = np.random.default_rng(5)
    positives = sum(compare_rates(RateCounts(int(x0), n), RateCounts(int(x1), n)).significant
                    for x0, x1 in zip(rng.binomial(n, 0.05, runs), rng.binomial(n, 0.05, runs), strict=True))
    low, high = band(0.05, runs)
    print(f"rates A/A, {runs} runs: p < 0.05 in {positives / runs:.3f} (band {low:.3f}-{high:.3f})")
    assert low <= positives / runs <= high, positives / runs


def test_ctr_intervals_account_for_visitors_with_many_impressions():
    """Visitors differ in how much they click: per-impression intervals under-cover, visitor-level ones do not."""
    runs, visitors = 400, 3000
    rng = np.random.default_rng(11)

    def arm(mult: float) -> tuple[np.ndarray, np.ndarray]:
        impressions = 1 + rng.poisson(6, (runs, visitors))
        ctr = 0.5 * rng.beta(0.25, 2.25, (runs, visitors)) * mult  # mean 0.05 (x mult), at most 0.55
        return rng.binomial(impressions, ctr), impressions

    (c0, i0), (c1, i1), (c2, i2) = arm(1.0), arm(1.1), arm(1.0)
    clustered = naive = aa = aa_naive = 0
    for r in range(runs):
        a, b = RateCounts.from_visitors(c0[r], i0[r]), RateCounts.from_visitors(c1[r], i1[r])
        c = compare_rates(a, b)
        clustered += covered(c.lift_low, 0.1, c.lift_high)
        c = compare_rates(RateCounts(a.successes, a.trials), RateCounts(b.successes, b.trials))
        naive += covered(c.lift_low, 0.1, c.lift_high)
        same = RateCounts.from_visitors(c2[r], i2[r])
        aa += compare_rates(a, same).significant
        aa_naive += compare_rates(RateCounts(a.successes, a.trials),
                                  RateCounts(same.successes, same.trials)).significant
    low, high = band(0.95, runs)
    print(f"CTR, {runs} runs, design effect {a.design_effect:.2f}: lift coverage visitor-level "
          f"{clustered / runs:.3f}, independent impressions {naive / runs:.3f} (band {low:.3f}-{high:.3f}); "
          f"A/A p < 0.05 in {aa / runs:.3f}, independent impressions {aa_naive / runs:.3f}")
    assert low <= clustered / runs <= high, clustered / runs
    assert naive / runs < low, naive / runs
    assert band(0.05, runs)[0] <= aa / runs <= band(0.05, runs)[1], aa / runs
    assert a.design_effect > 1.5


def test_design_effect_is_one_for_per_visitor_conversions():
    rng = np.random.default_rng(0)
    converted = rng.random(5000) < 0.1
    clustered = RateCounts.from_visitors(converted, np.ones(5000))
    plain = RateCounts(int(converted.sum()), 5000)
    assert clustered.design_effect == pytest.approx(1.0)
    assert rate_variant("a", clustered).low == pytest.approx(rate_variant("a", plain).low)


# --------------------------------------------------------------------------- revenue by simulation

#: Zero-inflated lognormal revenue: 10% of visitors buy, mean order 40 (sigma 1, skewness ~14
#: per visitor); the treatment scales every order by 1.1, so the true lift is exactly 0.1.
BUY, ORDER, SIGMA = 0.1, 40.0, 1.0


def revenue(rng: np.random.Generator, visitors: int, scale: float = 1.0) -> ValueSample:
    buyers = rng.binomial(visitors, BUY)
    orders = rng.lognormal(math.log(ORDER) - SIGMA**2 / 2, SIGMA, buyers) * scale
    return ValueSample(orders, visitors=visitors)


def test_revenue_intervals_cover_the_true_difference_and_lift():
    # 1,000 resamples (not the default 2,000) keep the 400 runs within a few seconds.
    runs, visitors = 400, 2000
    rng = np.random.default_rng(42)
    hits = np.zeros(3)
    for r in range(runs):
        c = compare_means(revenue(rng, visitors), revenue(rng, visitors, 1.1), n_resamples=1000, seed=r)
        hits += [covered(c.difference_low, BUY * ORDER * 0.1, c.difference_high),
                 covered(c.lift_low, 0.1, c.lift_high), covered(c.delta_lift_low, 0.1, c.delta_lift_high)]
    low, high = band(0.95, runs)
    print(f"revenue, {runs} runs: coverage Welch difference {hits[0] / runs:.3f}, bootstrap lift "
          f"{hits[1] / runs:.3f}, delta-method lift {hits[2] / runs:.3f} (band {low:.3f}-{high:.3f})")
    assert all(low <= h / runs <= high for h in hits), (hits / runs, (low, high))


def test_revenue_aa_test_is_significant_in_5_percent_of_experiments():
    runs, visitors = 400, 2000
    rng = np.random.default_rng(43)
    positives = sum(compare_means(revenue(rng, visitors), revenue(rng, visitors), n_resamples=50).significant
                    for _ in range(runs))
    low, high = band(0.05, runs)
    print(f"revenue A/A, {runs} runs: p < 0.05 in {positives / runs:.3f} (band {low:.3f}-{high:.3f})")
    assert low <= positives / runs <= high, positives / runs


def test_bootstrap_lift_interval_covers_better_than_the_delta_method_on_heavy_tails():
    """Why the dashboard shows the bootstrap interval: 3% buyers, lognormal sigma 2 (skewness ~50)."""
    runs, visitors, buy, sigma = 400, 5000, 0.03, 2.0
    rng = np.random.default_rng(7)
    boot = delta = 0
    for r in range(runs):
        arms = [ValueSample(rng.lognormal(-sigma**2 / 2, sigma, rng.binomial(visitors, buy)) * scale, visitors)
                for scale in (1.0, 1.1)]
        c = compare_means(*arms, n_resamples=1000, seed=r)
        boot += covered(c.lift_low, 0.1, c.lift_high)
        delta += covered(c.delta_lift_low, 0.1, c.delta_lift_high)
    print(f"heavy-tailed revenue, {runs} runs: lift coverage bootstrap {boot / runs:.3f}, "
          f"delta method {delta / runs:.3f}")
    assert boot > delta


def test_fast_bootstrap_matches_a_plain_poisson_bootstrap():
    rng = np.random.default_rng(3)
    values = np.r_[np.zeros(80), rng.lognormal(0, 1, 20)]
    fast = stats._bootstrap_means(ValueSample(values), 20_000, np.random.default_rng(1))
    weights = np.random.default_rng(2).poisson(1, (20_000, values.size))
    plain = weights @ values / weights.sum(axis=1)
    assert fast.mean() == pytest.approx(plain.mean(), rel=0.01)
    assert fast.std() == pytest.approx(plain.std(), rel=0.03)


def test_bootstrap_is_seeded_and_memory_is_bounded_on_a_million_visitors():
    rng = np.random.default_rng(9)
    a = ValueSample(rng.lognormal(3, 1, 50_000), visitors=1_000_000)
    b = ValueSample(rng.lognormal(3.05, 1, 50_000), visitors=1_000_000)
    tracemalloc.start()
    try:
        first = compare_means(a, b, n_resamples=200, seed=7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Holding all 200 x 50,000 resampled values at once would take 80 MB (120 MB with indices).
    assert peak < 40e6, peak
    assert compare_means(a, b, n_resamples=200, seed=7) == first
    assert first.lift_low < first.lift < first.lift_high


def test_disagreeing_bootstrap_and_t_test_are_flagged(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = revenue(rng, 3000), revenue(rng, 3000)
    assert stats.DISAGREE not in compare_means(a, b, n_resamples=200).warnings
    monkeypatch.setattr(stats, "bootstrap_lift_interval", lambda *args: (0.5, 0.6))
    c = compare_means(a, b)
    assert not c.significant and stats.DISAGREE in c.warnings


# --------------------------------------------------------------------------- warnings and SRM


def test_small_samples_are_flagged():
    assert stats.FEW_SUCCESSES in rate_variant("a", RateCounts(9, 5000)).warnings
    assert stats.FEW_SUCCESSES in rate_variant("a", RateCounts(4991, 5000)).warnings
    assert rate_variant("a", RateCounts(10, 5000)).warnings == []
    assert stats.FEW_VISITORS in rate_variant("a", RateCounts(40, 99)).warnings
    assert stats.INDEPENDENT_TRIALS in rate_variant("a", RateCounts(50, 5000, visitors=1000)).warnings
    rng = np.random.default_rng(0)
    assert stats.SKEWED in mean_variant("a", revenue(rng, 2000)).warnings  # needs ~70,000 visitors
    assert stats.SKEWED not in mean_variant("a", ValueSample(rng.normal(40, 5, 2000))).warnings
    # A comparison looks at the skewness of the difference, which cancels between similar arms.
    assert stats.SKEWED not in compare_means(revenue(rng, 2000), revenue(rng, 2000, 1.1), n_resamples=50).warnings
    heavy = ValueSample(rng.lognormal(0, 2, 60), visitors=2000)
    assert stats.SKEWED in compare_means(ValueSample(rng.normal(1, 1, 2000)), heavy, n_resamples=50).warnings


def test_sample_ratio_mismatch():
    flagged = sample_ratio_mismatch({"a": 52_000, "b": 48_000}, {"a": 50, "b": 50})
    assert flagged.flagged and flagged.p_value < 1e-30
    exact = sample_ratio_mismatch({"a": 50_000, "b": 50_000}, {"a": 0.5, "b": 0.5})
    assert not exact.flagged and exact.p_value == 1.0
    assert not sample_ratio_mismatch({"a": 50_150, "b": 49_850}, {"a": 1, "b": 1}).flagged  # z = 0.95
    assert not sample_ratio_mismatch({"a": 90_000, "b": 10_000}, {"a": 90, "b": 10}).flagged
    assert sample_ratio_mismatch({"a": 10, "b": 1}, {"a": 1, "b": 0}).flagged
    with pytest.raises(ValueError, match="shares must name"):
        sample_ratio_mismatch({"a": 1, "b": 1}, {"a": 1})


def test_experiment_reports_srm_and_comparisons():
    result = analyse_rates({"a": RateCounts(2600, 52_000), "b": RateCounts(2400, 48_000)}, "a", {"a": 1, "b": 1})
    assert result.srm.flagged and result.warnings == [stats.SRM]
    assert [c.variant for c in result.comparisons] == ["b"] and [v.name for v in result.variants] == ["a", "b"]


# --------------------------------------------------------------------------- edge cases


def test_zero_impressions_give_none_not_nan():
    empty = RateCounts(0, 0)
    v = rate_variant("a", empty)
    assert (v.estimate, v.low, v.high, v.warnings) == (None, None, None, [stats.NO_DATA])
    c = compare_rates(empty, RateCounts(10, 100))
    assert c.difference is None and c.p_value is None and not c.significant and stats.NO_DATA in c.warnings
    assert_no_nan(c)


def test_zero_successes():
    both = compare_rates(RateCounts(0, 1000), RateCounts(0, 1000))
    assert both.difference == 0 and both.lift is None and both.p_value is None
    assert stats.ZERO_CONTROL in both.warnings and stats.NO_VARIATION in both.warnings
    treated = compare_rates(RateCounts(20, 1000), RateCounts(0, 1000))
    assert treated.lift == -1 and treated.lift_low is None and treated.p_value < 0.001
    assert stats.ZERO_SUCCESSES in treated.warnings
    for c in (both, treated):
        assert_no_nan(c)


def test_all_zero_revenue():
    c = compare_means(ValueSample([], visitors=5000), ValueSample(np.zeros(5000)))
    assert c.difference == 0 and c.p_value is None and c.lift is None and stats.NO_VARIATION in c.warnings
    assert_no_nan(c)
    control_zero = compare_means(ValueSample([], visitors=5000), ValueSample([30.0, 50.0], visitors=5000))
    assert control_zero.lift is None and control_zero.p_value > 0.05 and stats.ZERO_CONTROL in control_zero.warnings
    assert_no_nan(mean_variant("a", ValueSample([], visitors=0)))
    one = compare_means(ValueSample([3.0]), ValueSample([1.0, 2.0]))
    assert one.p_value is None and stats.NO_DATA in one.warnings


def test_one_variant_only():
    rates = analyse_rates({"a": RateCounts(50, 1000)}, "a", {"a": 1})
    assert rates.comparisons == [] and rates.warnings == [stats.ONE_VARIANT] and rates.srm.p_value is None
    means = analyse_means({"a": ValueSample([1.0, 0.0])}, "a")
    assert means.comparisons == [] and means.srm is None
    with pytest.raises(ValueError, match="control 'z'"):
        analyse_rates({"a": RateCounts(50, 1000)}, "z")


def test_module_does_not_import_django():
    code = ("import sys, recommender.analytics.stats\n"
            "assert 'django' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_revenue_interval_never_goes_below_zero():
    from recommender.analytics.stats import ValueSample, mean_variant

    skewed = ValueSample([5000.0, 20.0], visitors=1000)  # two buyers, one very large order
    result = mean_variant("v", skewed)
    assert result.low == 0.0 and result.high > result.estimate > 0
    signed = ValueSample([-50.0, 40.0, 30.0])  # values that can be negative keep the plain t interval
    assert mean_variant("v", signed).low < 0

"""Statistics for A/B tests of recommendation algorithms: rates, revenue per visitor, SRM.

Pure numpy/scipy (never imports Django). The unit of randomisation is the visitor and
visitors are assumed independent; every interval is two-sided at ``confidence`` (95%)
and every lift is *treatment against control*: ``lift = treatment / control - 1``.

- Rates (:class:`RateCounts`): Wilson score interval per variant, Newcombe's hybrid score
  interval for the difference, the delta method on the log ratio for the relative lift,
  a pooled two-proportion z-test. A per-impression rate (CTR) with several impressions
  per visitor is clustered: given per-visitor sums the variance is the visitor-level
  (linearised) one and the intervals use the effective sample size ``trials / deff``.
- Means (:class:`ValueSample`, e.g. revenue per visitor): t interval per variant, Welch
  t-test and Welch interval for the difference, the delta method on the log ratio for the
  relative lift, plus a seeded Poisson-bootstrap percentile interval of the relative lift.
- :func:`sample_ratio_mismatch`: chi-square goodness of fit of visitors per variant.

Results are small dataclasses (:class:`VariantResult`, :class:`Comparison`,
:class:`ExperimentResult`) a template can render; ``None`` means "not enough data" and the
reason is in ``warnings`` (short English strings, marked for translation).

Example
-------
>>> from recommender.analytics.stats import RateCounts, compare_rates
>>> c = compare_rates(RateCounts(500, 10_000), RateCounts(560, 10_000))
>>> round(c.lift, 3), c.significant
(0.12, False)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import special

__all__ = ["MIN_FAILURES", "MIN_SUCCESSES", "MIN_VISITORS", "SKEW_RULE", "SRM_ALPHA", "Comparison",
           "ExperimentResult", "RateCounts", "SampleRatioCheck", "ValueSample", "VariantResult",
           "analyse_means", "analyse_rates", "bootstrap_lift_interval", "compare_means", "compare_rates",
           "mean_variant", "rate_variant", "sample_ratio_mismatch", "wilson_interval"]

#: Normal approximation rule of thumb: at least this many successes and failures per variant.
MIN_SUCCESSES = 10
MIN_FAILURES = 10
#: Fewer visitors per variant than this and visitor-level variances (design effect, Welch) are too noisy.
MIN_VISITORS = 100
#: Kohavi et al. (2014), rule 7: a mean is close enough to normal when n > 355 * skewness**2,
#: i.e. when the skewness of the estimator is below 1 / sqrt(355).
SKEW_RULE = 355
#: Flag a sample-ratio mismatch below this chi-square p-value.
SRM_ALPHA = 0.001
#: Bootstrap working memory: at most this many resampled values are held at once (8 bytes each).
_CHUNK_VALUES = 1 << 20


def gettext_noop(message: str) -> str:
    """Mark ``message`` for ``makemessages`` without importing Django; templates translate it."""
    return message


NO_DATA = gettext_noop("not enough data")
FEW_VISITORS = gettext_noop("fewer than 100 visitors")
FEW_SUCCESSES = gettext_noop("fewer than 10 successes or failures")
ZERO_CONTROL = gettext_noop("control rate is zero: no relative lift")
ZERO_SUCCESSES = gettext_noop("no successes: no relative interval")
INDEPENDENT_TRIALS = gettext_noop("interval assumes independent impressions")
SKEWED = gettext_noop("skewed values: sample too small for a normal interval")
NO_VARIATION = gettext_noop("no variation: no test")
BOOTSTRAP_UNSTABLE = gettext_noop("too few non-zero values for the bootstrap")
DISAGREE = gettext_noop("bootstrap interval and t-test disagree: inconclusive")
ONE_VARIANT = gettext_noop("only one variant")
SRM = gettext_noop("sample ratio mismatch: traffic split differs from the configuration")


@dataclass(frozen=True)
class VariantResult:
    """One variant's estimate and interval (``None`` when there is not enough data)."""

    name: str
    visitors: int
    estimate: float | None
    low: float | None
    high: float | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """A variant against the control: absolute difference, relative lift, test, warnings.

    ``lift_low``/``lift_high`` is the interval the dashboard shows. For means it is the
    Poisson-bootstrap percentile interval; the delta-method interval is kept in
    ``delta_lift_low``/``delta_lift_high`` (see docs/online-metrics.md, "Statistics of A/B tests").
    """

    variant: str
    control: str
    difference: float | None
    difference_low: float | None
    difference_high: float | None
    lift: float | None
    lift_low: float | None
    lift_high: float | None
    p_value: float | None
    significant: bool
    warnings: list[str] = field(default_factory=list)
    delta_lift_low: float | None = None
    delta_lift_high: float | None = None


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of observed visitors per variant against configured shares."""

    chi2: float | None
    p_value: float | None
    flagged: bool
    expected: dict[str, float]


@dataclass(frozen=True)
class ExperimentResult:
    """All variants, each non-control variant compared with the control, and the SRM check."""

    control: str
    variants: list[VariantResult]
    comparisons: list[Comparison]
    srm: SampleRatioCheck | None
    warnings: list[str] = field(default_factory=list)


def _z(confidence: float) -> float:
    return float(special.ndtri(0.5 + confidence / 2))


# ----------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class RateCounts:
    """Successes out of trials for one variant, optionally with per-visitor sums.

    Conversion: ``RateCounts(converting_visitors, visitors)``: each trial is a visitor.
    CTR: ``RateCounts(clicks, impressions, visitors=..., sum_successes_sq=..., ...)`` with,
    over visitors ``i`` with clicks ``c_i`` and impressions ``m_i``, ``sum_successes_sq =
    sum c_i**2``, ``sum_successes_trials = sum c_i*m_i``, ``sum_trials_sq = sum m_i**2``
    (or build it with :meth:`from_visitors`). Without those sums, impressions are treated as
    independent, which understates the variance when visitors differ in how much they click.
    """

    successes: float
    trials: float
    visitors: int | None = None
    sum_successes_sq: float | None = None
    sum_successes_trials: float | None = None
    sum_trials_sq: float | None = None

    @classmethod
    def from_visitors(cls, successes: np.ndarray, trials: np.ndarray) -> RateCounts:
        """Aggregate per-visitor counts (one entry per visitor) into sufficient statistics."""
        s = np.asarray(successes, dtype=np.float64)
        t = np.asarray(trials, dtype=np.float64)
        return cls(float(s.sum()), float(t.sum()), int(s.size), float(s @ s), float(s @ t), float(t @ t))

    @property
    def units(self) -> int:
        """Randomised units (visitors)."""
        return int(self.trials if self.visitors is None else self.visitors)

    @property
    def clustered(self) -> bool:
        return self.visitors is not None and self.sum_successes_sq is not None

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials > 0 else None

    @property
    def design_effect(self) -> float:
        """Visitor-level (linearised) variance of the rate over the binomial one, at least 1.

        ``Var(R) = sum_i (c_i - R m_i)**2 / (sum_i m_i)**2`` (the delta method for a ratio of
        sums, Deng et al. 2018); floored at 1 so clustering never narrows the interval.
        """
        p = self.rate
        if not self.clustered or p is None or p in (0.0, 1.0):
            return 1.0
        rss = self.sum_successes_sq - 2 * p * self.sum_successes_trials + p * p * self.sum_trials_sq
        return max(1.0, max(rss, 0.0) / self.trials**2 / (p * (1 - p) / self.trials))

    @property
    def effective_trials(self) -> float:
        return self.trials / self.design_effect


def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion; ``None`` when ``trials`` is 0.

    Non-integer counts are allowed (effective counts after a design effect).
    """
    if trials <= 0:
        return None
    z2 = _z(confidence) ** 2
    p = successes / trials
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = math.sqrt(z2 * p * (1 - p) / trials + z2 * z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate_interval(counts: RateCounts, confidence: float) -> tuple[float, float] | None:
    n = counts.effective_trials
    return wilson_interval(counts.rate * n, n, confidence) if counts.trials > 0 else None


def _rate_warnings(counts: RateCounts) -> list[str]:
    if counts.trials <= 0:
        return [NO_DATA]
    out = []
    if counts.units < MIN_VISITORS:
        out.append(FEW_VISITORS)
    n = counts.effective_trials
    successes = counts.rate * n
    if successes < MIN_SUCCESSES or n - successes < MIN_FAILURES:
        out.append(FEW_SUCCESSES)
    if counts.visitors is not None and not counts.clustered and counts.trials > counts.visitors:
        out.append(INDEPENDENT_TRIALS)
    return out


def rate_variant(name: str, counts: RateCounts, confidence: float = 0.95) -> VariantResult:
    """The rate of one variant with its Wilson interval (effective sample size when clustered)."""
    interval = _rate_interval(counts, confidence)
    low, high = interval if interval else (None, None)
    return VariantResult(name, counts.units, counts.rate, low, high, _rate_warnings(counts))


def compare_rates(control: RateCounts, treatment: RateCounts, confidence: float = 0.95,
                  control_name: str = "control", treatment_name: str = "treatment") -> Comparison:
    """Treatment against control for a rate.

    Difference: Newcombe's hybrid score interval (method 10, Newcombe 1998) from the two
    Wilson intervals. Relative lift: ``exp(log(p1/p0) +- z*se)`` with
    ``se**2 = deff1*(1-p1)/(n1*p1) + deff0*(1-p0)/(n0*p0)`` (delta method on the log
    ratio), which needs successes in both variants. p-value: pooled two-proportion z-test,
    ``z = (p1-p0) / sqrt(p(1-p) (deff1/n1 + deff0/n0))`` with ``p`` the pooled rate.
    """
    warnings = list(dict.fromkeys(_rate_warnings(control) + _rate_warnings(treatment)))
    p0, p1 = control.rate, treatment.rate
    if p0 is None or p1 is None:
        return Comparison(treatment_name, control_name, None, None, None, None, None, None, None, False, warnings)
    (l0, u0), (l1, u1) = _rate_interval(control, confidence), _rate_interval(treatment, confidence)
    diff = p1 - p0
    diff_low = diff - math.hypot(p1 - l1, u0 - p0)
    diff_high = diff + math.hypot(u1 - p1, p0 - l0)

    lift = lift_low = lift_high = None
    if p0 == 0:
        warnings.append(ZERO_CONTROL)
    else:
        lift = p1 / p0 - 1
        if p1 == 0:
            warnings.append(ZERO_SUCCESSES)
        else:
            se = math.sqrt((1 - p1) / (treatment.effective_trials * p1) + (1 - p0) / (control.effective_trials * p0))
            half = _z(confidence) * se
            lift_low, lift_high = math.exp(math.log(p1 / p0) - half) - 1, math.exp(math.log(p1 / p0) + half) - 1

    pooled = (control.successes + treatment.successes) / (control.trials + treatment.trials)
    var0 = pooled * (1 - pooled) * (control.design_effect / control.trials + treatment.design_effect / treatment.trials)
    p_value = float(2 * special.ndtr(-abs(diff) / math.sqrt(var0))) if var0 > 0 else None
    if p_value is None:
        warnings.append(NO_VARIATION)
    return Comparison(treatment_name, control_name, diff, max(-1.0, diff_low), min(1.0, diff_high), lift,
                      lift_low, lift_high, p_value, p_value is not None and p_value < 1 - confidence, warnings)


# ----------------------------------------------------------------------------- means


class ValueSample:
    """Per-visitor values of one variant (e.g. revenue), stored as the non-zero ones plus a count.

    ``ValueSample(values)`` takes one value per visitor; ``ValueSample(values, visitors=n)``
    takes only the non-zero values (e.g. the purchasers' revenue) and counts the other
    ``n - len(values)`` visitors as zeros, so a million visitors with 3% buying hold 30,000
    floats. Mean, variance and third central moment are computed once here.
    """

    def __init__(self, values: np.ndarray | list[float], visitors: int | None = None) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)):
            raise ValueError("values must be finite")
        self.nonzero = values[values != 0]
        self.n = int(values.size if visitors is None else visitors)
        if self.n < values.size:
            raise ValueError(f"visitors must be at least the number of values ({values.size}), got {self.n}")
        zeros = self.n - self.nonzero.size
        self.mean = float(self.nonzero.sum() / self.n) if self.n else math.nan
        dev = self.nonzero - self.mean
        ss = float(dev @ dev) + zeros * self.mean**2
        #: Sample variance (ddof=1) and the third central moment (population form).
        self.variance = ss / (self.n - 1) if self.n > 1 else math.nan
        self.m3 = (float(dev @ (dev * dev)) - zeros * self.mean**3) / self.n if self.n else math.nan

    @property
    def skewness(self) -> float:
        m2 = self.variance * (self.n - 1) / self.n if self.n > 1 else 0.0
        return self.m3 / m2**1.5 if m2 > 0 else 0.0


def _t(confidence: float, df: float) -> float:
    return float(special.stdtrit(df, 0.5 + confidence / 2))


def _mean_warnings(sample: ValueSample) -> list[str]:
    if sample.n < 2:
        return [NO_DATA]
    out = [FEW_VISITORS] if sample.n < MIN_VISITORS else []
    if sample.n < SKEW_RULE * sample.skewness**2:
        out.append(SKEWED)
    return out


def mean_variant(name: str, sample: ValueSample, confidence: float = 0.95) -> VariantResult:
    """The mean of one variant with a t interval; warns when skewness makes it unreliable."""
    warnings = _mean_warnings(sample)
    if sample.n < 2:
        return VariantResult(name, sample.n, sample.mean if sample.n else None, None, None, warnings)
    half = _t(confidence, sample.n - 1) * math.sqrt(sample.variance / sample.n)
    low = sample.mean - half
    if low < 0 and not np.any(sample.nonzero < 0):
        low = 0.0  # a mean of values that cannot be negative (revenue): the t interval's tail is cut at 0
    return VariantResult(name, sample.n, sample.mean, low, sample.mean + half, warnings)


def _bootstrap_means(sample: ValueSample, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson-bootstrap means: each visitor is drawn Poisson(1) times, in bounded memory.

    Independent Poisson(1) weights on the ``k`` non-zero visitors are a Poisson(k) total
    spread uniformly over them, and the zeros only add a Poisson(n - k) count, so each
    resample draws ``~k`` indices and never touches the zeros. Resamples are processed in
    chunks of at most ``_CHUNK_VALUES`` drawn values.
    """
    k = sample.nonzero.size
    n_nonzero = rng.poisson(k, size=n_resamples)
    n_total = n_nonzero + rng.poisson(sample.n - k, size=n_resamples)
    sums = np.zeros(n_resamples)
    index_type = np.int32 if k < 2**31 else np.int64  # int32 draws are ~3x faster
    start = 0
    while start < n_resamples and k:
        counts = n_nonzero[start:]
        stop = start + max(1, int(np.searchsorted(np.cumsum(counts), _CHUNK_VALUES, side="right")))
        counts = n_nonzero[start:stop]
        drawn = sample.nonzero[rng.integers(0, k, size=int(counts.sum()), dtype=index_type)]
        filled = counts > 0  # reduceat would copy the next value into an empty segment
        if filled.any():
            sums[start:stop][filled] = np.add.reduceat(drawn, (np.cumsum(counts) - counts)[filled])
        start = stop
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / n_total


def bootstrap_lift_interval(control: ValueSample, treatment: ValueSample, confidence: float = 0.95,
                            n_resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of ``mean(treatment) / mean(control) - 1`` over Poisson-bootstrap resamples.

    Seeded, so the same data always gives the same interval. ``None`` when a resampled
    control mean is zero or undefined (too few non-zero control values).
    """
    rng = np.random.default_rng(seed)
    m0 = _bootstrap_means(control, n_resamples, rng)
    m1 = _bootstrap_means(treatment, n_resamples, rng)
    if not np.all(m0 > 0) or not np.all(np.isfinite(m1)):
        return None
    low, high = np.quantile(m1 / m0 - 1, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(low), float(high)


def compare_means(control: ValueSample, treatment: ValueSample, confidence: float = 0.95, n_resamples: int = 2000,
                  seed: int = 0, control_name: str = "control", treatment_name: str = "treatment") -> Comparison:
    """Treatment against control for a per-visitor mean (revenue per visitor).

    Difference: Welch t-test and Welch interval (Welch-Satterthwaite degrees of freedom).
    Relative lift: the Poisson-bootstrap percentile interval (shown), and the delta method
    on the log ratio, ``se**2 = s1**2/(n1 m1**2) + s0**2/(n0 m0**2)`` with the Welch t
    quantile (kept in ``delta_lift_*``). Both need a positive control mean.
    """
    warnings = [w for w in dict.fromkeys(_mean_warnings(control) + _mean_warnings(treatment)) if w != SKEWED]
    if control.n < 2 or treatment.n < 2:
        return Comparison(treatment_name, control_name, None, None, None, None, None, None, None, False, warnings)
    m0, m1 = control.mean, treatment.mean
    v0, v1 = control.variance / control.n, treatment.variance / treatment.n
    diff = m1 - m0
    se = math.sqrt(v0 + v1)
    if se == 0:
        warnings.append(NO_VARIATION)
        return Comparison(treatment_name, control_name, diff, diff, diff, None, None, None, None, False, warnings)
    # Skewness of the difference of means: third cumulants of means are m3 / n**2.
    if abs(treatment.m3 / treatment.n**2 - control.m3 / control.n**2) / se**3 > 1 / math.sqrt(SKEW_RULE):
        warnings.append(SKEWED)
    df = (v0 + v1) ** 2 / (v0 * v0 / (control.n - 1) + v1 * v1 / (treatment.n - 1))
    t = _t(confidence, df)
    p_value = float(2 * special.stdtr(df, -abs(diff) / se))

    lift = lift_low = lift_high = delta_low = delta_high = None
    if m0 <= 0:
        warnings.append(ZERO_CONTROL)
    else:
        lift = m1 / m0 - 1
        if m1 > 0:
            half = t * math.sqrt(v1 / m1**2 + v0 / m0**2)
            delta_low, delta_high = m1 / m0 * math.exp(-half) - 1, m1 / m0 * math.exp(half) - 1
        interval = bootstrap_lift_interval(control, treatment, confidence, n_resamples, seed)
        if interval is None:
            warnings.append(BOOTSTRAP_UNSTABLE)
        else:
            lift_low, lift_high = interval
            if (lift_low > 0 or lift_high < 0) != (p_value < 1 - confidence):
                warnings.append(DISAGREE)
    return Comparison(treatment_name, control_name, diff, diff - t * se, diff + t * se, lift, lift_low, lift_high,
                      p_value, p_value < 1 - confidence, warnings, delta_low, delta_high)


# ----------------------------------------------------------------------------- experiments


def sample_ratio_mismatch(observed: Mapping[str, int], shares: Mapping[str, float],
                          alpha: float = SRM_ALPHA) -> SampleRatioCheck:
    """Chi-square goodness-of-fit test of visitors per variant against configured traffic shares.

    ``shares`` are weights (``{"a": 50, "b": 50}`` or ``{"a": 0.5, "b": 0.5}``) over the same
    variants as ``observed``. Flagged when ``p < alpha`` (0.001: with many experiments and
    daily checks a looser level would raise false alarms). No test for one variant or no
    visitors. A variant with share 0 that received visitors is always flagged.
    """
    if set(observed) != set(shares):
        raise ValueError(f"shares must name the observed variants {sorted(observed)}, got {sorted(shares)}")
    total_share = float(sum(shares.values()))
    if total_share <= 0 or any(s < 0 for s in shares.values()):
        raise ValueError(f"shares must be non-negative with a positive total, got {dict(shares)}")
    total = sum(observed.values())
    expected = {k: total * shares[k] / total_share for k in observed}
    if len(observed) < 2 or total == 0:
        return SampleRatioCheck(None, None, False, expected)
    if any(expected[k] == 0 and observed[k] > 0 for k in observed):
        return SampleRatioCheck(math.inf, 0.0, True, expected)
    tested = [k for k in observed if expected[k] > 0]
    chi2 = sum((observed[k] - expected[k]) ** 2 / expected[k] for k in tested)
    p_value = float(special.chdtrc(len(tested) - 1, chi2)) if len(tested) > 1 else None
    return SampleRatioCheck(chi2, p_value, p_value is not None and p_value < alpha, expected)


def _experiment(variants: Mapping, control: str, shares: Mapping[str, float] | None, units, describe,
                compare) -> ExperimentResult:
    if control not in variants:
        raise ValueError(f"control {control!r} is not one of the variants {sorted(variants)}")
    results = [describe(name, data) for name, data in variants.items()]
    comparisons = [compare(variants[control], data, name) for name, data in variants.items() if name != control]
    srm = sample_ratio_mismatch({k: units(v) for k, v in variants.items()}, shares) if shares else None
    warnings = [ONE_VARIANT] if len(variants) < 2 else []
    if srm is not None and srm.flagged:
        warnings.append(SRM)
    return ExperimentResult(control, results, comparisons, srm, warnings)


def analyse_rates(variants: Mapping[str, RateCounts], control: str, shares: Mapping[str, float] | None = None,
                  confidence: float = 0.95) -> ExperimentResult:
    """Every variant's rate, each non-control variant against ``control``, and SRM on visitors."""
    return _experiment(variants, control, shares, lambda c: c.units,
                       lambda name, c: rate_variant(name, c, confidence),
                       lambda c0, c1, name: compare_rates(c0, c1, confidence, control, name))


def analyse_means(variants: Mapping[str, ValueSample], control: str, shares: Mapping[str, float] | None = None,
                  confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> ExperimentResult:
    """Every variant's mean, each non-control variant against ``control``, and SRM on visitors."""
    return _experiment(variants, control, shares, lambda s: s.n,
                       lambda name, s: mean_variant(name, s, confidence),
                       lambda s0, s1, name: compare_means(s0, s1, confidence, n_resamples, seed, control, name))

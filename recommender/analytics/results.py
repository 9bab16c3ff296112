"""Experiment results: each variant's visitors and what they did after their first exposure.

The unit is the visitor (docs/online-metrics.md, "Experiment results"). A visitor is an
``Exposure``: a user, or an anonymous session that never logged in. Their variant is the one
of their earliest exposure. For each visitor, one grouped query counts these events, from
the first exposure to the experiment's stop:

- the impressions and clicks in the experiment's blocks;
- the purchases and their revenue (quantity x current price, as in the daily tables).

From those per-visitor counts (zeros for visitors who did nothing), :func:`analyse` computes
four metrics with :mod:`recommender.analytics.stats`:

- impressions per visitor and revenue per visitor (means, ``ValueSample``);
- CTR, clustered by visitor (``RateCounts.from_visitors``);
- conversion = visitors with a purchase / visitors (``RateCounts``).

Each has intervals, the lift against the control (the first variant in id order), a
p-value and warnings, including the sample-ratio-mismatch check of visitors against the
configured shares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max
from django.utils.translation import gettext_lazy as _

from recommender.analytics import attribution
from recommender.analytics.stats import ExperimentResult, RateCounts, ValueSample, analyse_means, analyse_rates
from recommender.conf import rec_settings
from recommender.models import Exposure, Interaction

__all__ = ["METRICS", "ExperimentReport", "MetricResult", "VariantOutcome", "analyse", "experiment_results",
           "outcomes"]

#: The metrics of a results page: key, label, kind ("rate" or "mean"), shown as a percentage.
METRICS = [
    ("impressions", _("Impressions per visitor"), "mean", False),
    ("ctr", _("Click-through rate"), "rate", True),
    ("conversion", _("Conversion (visitors who bought)"), "rate", True),
    ("revenue", _("Revenue per visitor"), "mean", False),
]
#: Seconds a computed result is cached; the key changes with any new interaction or exposure.
CACHE_SECONDS = 600


@dataclass
class VariantOutcome:
    """One variant's visitors and their per-visitor counts (one entry per visitor, zeros included)."""

    name: str
    algorithm: str
    share: float
    impressions: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray

    @property
    def visitors(self):
        return int(self.impressions.size)

    @property
    def converting(self):
        return int(np.count_nonzero(self.purchases))

    def totals(self):
        return {"visitors": self.visitors, "impressions": int(self.impressions.sum()),
                "clicks": int(self.clicks.sum()), "converting": self.converting,
                "purchases": int(self.purchases.sum()), "revenue": float(self.revenue.sum())}


@dataclass
class MetricResult:
    key: str
    label: str
    kind: str
    percent: bool
    result: ExperimentResult


@dataclass
class ExperimentReport:
    """What the results page shows: per-variant totals and each metric's statistics."""

    experiment_id: int
    control: str
    variants: list[dict]
    metrics: list[MetricResult]
    warnings: list[str] = field(default_factory=list)
    srm_p_value: float | None = None


def _visitor_variants(experiment):
    """``({visitor: variant}, first exposure time)``; a visitor is ``("u", user_id)`` or ``("s", session_key)``.

    A user with several exposures (a session's exposure linked at login) keeps the earliest.
    """
    variants, first = {}, None
    rows = (Exposure.objects.filter(experiment=experiment).order_by("first_seen", "id")
            .values_list("variant", "user_id", "session_key", "first_seen"))
    for variant, user_id, session_key, seen in rows.iterator():
        visitor = ("u", user_id) if user_id is not None else ("s", session_key)
        variants.setdefault(visitor, variant)
        first = first or seen
    return variants, first


def _revenue_sql(item_alias):
    """SQL of a purchase's revenue (quantity x current price), as in ``attribution.revenue_expression``."""
    price = rec_settings.item_field("price")
    if not price:
        return "0.0"
    column = Interaction._meta.get_field("item").related_model._meta.get_field(price).column
    return f"COALESCE(i.value, 1.0) * COALESCE({item_alias}.{connection.ops.quote_name(column)}, 0)"


def _per_visitor_rows(experiment, by_user):
    """``(visitor, impressions, clicks, purchases, revenue)`` from each visitor's first exposure.

    One grouped JOIN of the visitors' first exposures with their interactions, on the
    ``(user, timestamp)`` or ``(session_key, timestamp)`` index of the interactions.
    """
    quote = connection.ops.quote_name
    item_model = Interaction._meta.get_field("item").related_model
    purchases = attribution.purchase_events() or [""]
    column = "user_id" if by_user else "session_key"
    visitors = (f"SELECT user_id, MIN(first_seen) AS first_seen FROM {quote(Exposure._meta.db_table)} "
                "WHERE experiment_id = %s AND user_id IS NOT NULL GROUP BY user_id") if by_user else (
        f"SELECT session_key, MIN(first_seen) AS first_seen FROM {quote(Exposure._meta.db_table)} "
        "WHERE experiment_id = %s AND user_id IS NULL AND session_key <> '' GROUP BY session_key")
    blocks = experiment.blocks or []
    in_blocks = " OR ".join(["i.context = %s OR SUBSTR(i.context, 1, %s) = %s"] * len(blocks)) or "1 = 0"
    block_params = [p for b in blocks for p in (b, len(b) + 1, f"{b}:")]
    is_purchase = f"i.event IN ({', '.join(['%s'] * len(purchases))})"
    stop = "AND i.timestamp < %s" if experiment.stop else ""
    sql = (f"SELECT x.{column}, "
           f"SUM(CASE WHEN i.event = %s AND ({in_blocks}) THEN 1 ELSE 0 END), "
           f"SUM(CASE WHEN i.event = %s AND ({in_blocks}) THEN 1 ELSE 0 END), "
           f"SUM(CASE WHEN {is_purchase} THEN 1 ELSE 0 END), "
           f"SUM(CASE WHEN {is_purchase} THEN {_revenue_sql('p')} ELSE 0 END) "
           f"FROM ({visitors}) x JOIN {quote(Interaction._meta.db_table)} i ON i.{column} = x.{column} "
           f"{'' if by_user else 'AND i.user_id IS NULL'} AND i.timestamp >= x.first_seen {stop} "
           f"JOIN {quote(item_model._meta.db_table)} p ON p.{quote(item_model._meta.pk.column)} = i.item_id "
           f"WHERE i.event IN (%s, %s, {', '.join(['%s'] * len(purchases))}) GROUP BY x.{column}")
    params = [attribution.IMPRESSION, *block_params, attribution.CLICK, *block_params, *purchases, *purchases,
              experiment.pk, *([experiment.stop] if experiment.stop else []),
              attribution.IMPRESSION, attribution.CLICK, *purchases]
    prefix = "u" if by_user else "s"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for key, impressions, clicks, purchases_n, revenue in cursor.fetchall():
            yield (prefix, key), int(impressions or 0), int(clicks or 0), int(purchases_n or 0), float(revenue or 0)


def outcomes(experiment):
    """``{variant name: VariantOutcome}``: the configured variants in id order, then any other
    variant that has exposures (share 0, which the SRM check flags)."""
    configured = list(experiment.variants.order_by("id"))
    visitors, first = _visitor_variants(experiment)
    names = [v.name for v in configured] + sorted({*visitors.values()} - {v.name for v in configured})
    index = {name: {} for name in names}  # variant -> {visitor: position}
    for visitor, variant in visitors.items():
        index[variant][visitor] = len(index[variant])
    arrays = {name: np.zeros((4, len(index[name]))) for name in names}
    if first is not None:
        for by_user in (True, False):
            for visitor, *counts in _per_visitor_rows(experiment, by_user):
                variant = visitors.get(visitor)
                if variant is not None:
                    arrays[variant][:, index[variant][visitor]] = counts
    spec = {v.name: v for v in configured}
    return {name: VariantOutcome(name, spec[name].algorithm if name in spec else "",
                                 spec[name].share if name in spec else 0.0, *arrays[name])
            for name in names}


def analyse(experiment, n_resamples=2000):
    """The :class:`ExperimentReport` of ``experiment`` from its exposures and interactions."""
    found = outcomes(experiment)
    if not found:
        return ExperimentReport(experiment.pk, "", [], [], [str(_("No variants yet."))])
    control = next(iter(found))
    shares = {name: o.share for name, o in found.items()} if any(o.share for o in found.values()) else None
    results = {
        "impressions": analyse_means({n: ValueSample(o.impressions) for n, o in found.items()}, control, shares,
                                     n_resamples=n_resamples),
        "ctr": analyse_rates({n: RateCounts.from_visitors(o.clicks, o.impressions) for n, o in found.items()},
                             control, shares),
        "conversion": analyse_rates({n: RateCounts(o.converting, o.visitors) for n, o in found.items()}, control,
                                    shares),
        "revenue": analyse_means({n: ValueSample(o.revenue) for n, o in found.items()}, control, shares,
                                 n_resamples=n_resamples),
    }
    metrics = [MetricResult(key, str(label), kind, percent, results[key]) for key, label, kind, percent in METRICS]
    srm = results["conversion"].srm
    return ExperimentReport(
        experiment.pk, control,
        [{"name": n, "algorithm": o.algorithm, "share": o.share, "control": n == control, **o.totals()}
         for n, o in found.items()],
        metrics, list(results["conversion"].warnings), srm.p_value if srm else None)


def _cache_key(experiment):
    last = Interaction.objects.aggregate(last=Max("id"))["last"] or 0
    exposures = Exposure.objects.filter(experiment=experiment).aggregate(n=Count("id"), last=Max("id"))
    config = [experiment.pk, experiment.blocks, str(experiment.start), str(experiment.stop),
              list(experiment.variants.order_by("id").values_list("name", "algorithm", "share"))]
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:16]
    return f"recommender:experiment-results:{digest}:{last}:{exposures['n']}:{exposures['last']}"


def experiment_results(experiment):
    """:func:`analyse`, cached until an interaction or an exposure is added or the experiment changes."""
    key = _cache_key(experiment)
    report = cache.get(key)
    if report is None:
        report = analyse(experiment)
        cache.set(key, report, CACHE_SECONDS)
    return report

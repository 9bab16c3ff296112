"""Daily aggregates of the online metrics: ``DailyBlockStats`` and ``DailyVariantStats``.

``aggregate_daily()`` recomputes the days that rows added since its last run touched (an
interaction id watermark in ``AggregationState``), plus the days after them that the
attribution window reaches, plus today. Each day is recomputed whole from the raw
interactions and its rows replaced in one transaction, so a second run gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, Max, Min, OuterRef, Q, Subquery, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from recommender.analytics import attribution
from recommender.conf import rec_settings
from recommender.models import (
    AggregationState,
    DailyBlockStats,
    DailyVariantStats,
    Experiment,
    Exposure,
    Interaction,
)

STATE_NAME = "daily"
#: Days recomputed per set of queries: bounds a query's rows on the first run over a long history.
DAYS_PER_BATCH = 7
CENTS = Decimal("0.01")


def _money(value):
    return Decimal(str(value or 0)).quantize(CENTS, rounding=ROUND_HALF_UP)


def day_bounds(day):
    """Start and end (exclusive) of a day in the current time zone, as aware datetimes."""
    start = dt.datetime.combine(day, dt.time.min)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min)
    if settings.USE_TZ:
        return timezone.make_aware(start), timezone.make_aware(end)
    return start, end


def _ranges(days):
    """Contiguous runs of sorted days as ``[(first, last), ...]``."""
    runs = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return runs


def _in_days(days, field="timestamp"):
    condition = Q()
    for first, last in _ranges(days):
        condition |= Q(**{f"{field}__gte": day_bounds(first)[0], f"{field}__lt": day_bounds(last)[1]})
    return condition


def touched_days(after_id, up_to_id):
    """Days whose rows must be recomputed for the interactions ``after_id < id <= up_to_id``."""
    days = set(Interaction.objects.filter(id__gt=after_id, id__lte=up_to_id).order_by()
               .annotate(day=TruncDate("timestamp")).values_list("day", flat=True).distinct())
    # a new click changes the attribution of the conversions the window reaches after it
    reach = math.ceil(float(rec_settings.ATTRIBUTION_WINDOW_HOURS) / 24)
    today = timezone.localdate()
    days |= {day + dt.timedelta(days=k) for day in days for k in range(1, reach + 1)}
    # rows committed out of id order land on the current day: it is always recomputed
    days.add(today)
    return sorted(day for day in days if day <= today)


def all_days():
    bounds = Interaction.objects.aggregate(first=Min("timestamp"), last=Max("timestamp"))
    if bounds["first"] is None:
        return [timezone.localdate()]
    first, last = timezone.localdate(bounds["first"]), max(timezone.localdate(bounds["last"]), timezone.localdate())
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def block_rows(days):
    """``DailyBlockStats`` (unsaved) of ``days``, from the raw interactions."""
    rows = {}
    queryset = Interaction.objects.filter(_in_days(days))

    def row(day, context):
        key = attribution.parse_context(context)
        found = rows.get((day, key))
        if found is None:
            found = rows[(day, key)] = DailyBlockStats(day=day, block=key.block, algorithm=key.algorithm, run=key.run)
        return found

    for day, context, impressions, clicks, visitors in attribution.shows(queryset):
        entry = row(day, context)
        entry.impressions += impressions
        entry.clicks += clicks
        entry.visitors += visitors
    for day, context, carts, purchases, revenue in attribution.conversions(queryset):
        entry = row(day, context)
        entry.add_to_carts += carts
        entry.purchases += purchases
        entry.revenue = _money(float(entry.revenue) + revenue)
    return list(rows.values())


def _variant_of(experiment, field):
    """The variant of the row's visitor in ``experiment`` once exposed, or None."""
    exposures = Exposure.objects.filter(experiment=experiment, first_seen__lte=OuterRef("timestamp"))
    return Case(
        When(user__isnull=False,
             then=Subquery(exposures.filter(user=OuterRef("user")).order_by("first_seen").values(field)[:1])),
        default=Subquery(exposures.filter(session_key=OuterRef("session_key")).exclude(session_key="")
                         .order_by("first_seen").values(field)[:1]),
    )


def variant_rows(days):
    """``DailyVariantStats`` (unsaved) of ``days`` for the experiments with exposures by then."""
    last = day_bounds(max(days))[1]
    experiments = Experiment.objects.filter(exposures__first_seen__lt=last).distinct()
    rows = {}
    carts, purchases = attribution.cart_events(), attribution.purchase_events()
    for experiment in experiments:
        def row(day, variant, experiment=experiment):
            key = (day, experiment.pk, variant)
            if key not in rows:
                rows[key] = DailyVariantStats(day=day, experiment=experiment, variant=variant)
            return rows[key]

        exposed = (Exposure.objects.filter(_in_days(days, "first_seen"), experiment=experiment).order_by()
                   .annotate(day=TruncDate("first_seen")).values("day", "variant").annotate(n=Count("id"))
                   .values_list("day", "variant", "n"))
        for day, variant, n in exposed:
            row(day, variant).exposed = n
        in_blocks = Q()
        for block in experiment.blocks or []:
            in_blocks |= Q(context=block) | Q(context__startswith=f"{block}:")
        if not experiment.blocks:
            in_blocks = Q(pk__in=[])
        events = (Interaction.objects.filter(_in_days(days))
                  .filter(Q(event__in=carts + purchases) | (Q(event__in=[attribution.IMPRESSION, attribution.CLICK])
                                                            & in_blocks))
                  .order_by().annotate(day=TruncDate("timestamp"), variant=_variant_of(experiment, "variant"))
                  .values("day", "variant")
                  .annotate(impressions=Count("id", filter=Q(event=attribution.IMPRESSION)),
                            clicks=Count("id", filter=Q(event=attribution.CLICK)),
                            add_to_carts=Count("id", filter=Q(event__in=carts)),
                            purchases=Count("id", filter=Q(event__in=purchases)),
                            revenue=Sum(attribution.revenue_expression(),
                                                    filter=Q(event__in=purchases)))
                  .values_list("day", "variant", "impressions", "clicks", "add_to_carts", "purchases", "revenue"))
        for day, variant, impressions, clicks, carts_n, purchases_n, revenue in events.iterator():
            if variant is None:
                continue
            entry = row(day, variant)
            entry.impressions, entry.clicks = impressions, clicks
            entry.add_to_carts, entry.purchases, entry.revenue = carts_n, purchases_n, _money(revenue)
    return list(rows.values())


def rebuild_days(days):
    """Replace the stored rows of ``days`` with rows recomputed from the interactions."""
    days = sorted(set(days))
    written = 0
    for start in range(0, len(days), DAYS_PER_BATCH):
        batch = days[start:start + DAYS_PER_BATCH]
        blocks, variants = block_rows(batch), variant_rows(batch)
        with transaction.atomic():
            DailyBlockStats.objects.filter(day__in=batch).delete()
            DailyVariantStats.objects.filter(day__in=batch).delete()
            DailyBlockStats.objects.bulk_create(blocks, batch_size=1000)
            DailyVariantStats.objects.bulk_create(variants, batch_size=1000)
        written += len(blocks) + len(variants)
    return written


def aggregate_daily(full=False):
    """Bring the daily tables up to date; ``full`` recomputes every day of the history.

    Returns ``{"days": n, "rows": n, "last_id": id}``. Runs of this function are serialized
    by a row lock on their ``AggregationState`` (PostgreSQL); rows are replaced per day, so
    a run that repeats another's work writes the same rows.
    """
    AggregationState.objects.get_or_create(name=STATE_NAME)
    with transaction.atomic():
        state = AggregationState.objects.select_for_update().get(name=STATE_NAME)
        up_to = Interaction.objects.aggregate(last=Max("id"))["last"] or 0
        days = all_days() if full else touched_days(state.last_id, up_to)
        rows = rebuild_days(days)
        state.last_id = up_to
        state.save(update_fields=["last_id", "updated"])
    return {"days": len(days), "rows": rows, "last_id": up_to}

"""The daily tables: incremental by id watermark, idempotent, and equal to the raw rows."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from recommender import track
from recommender.analytics import aggregates
from recommender.analytics.experiments import Assignment, record_exposure
from recommender.models import AggregationState, DailyBlockStats, DailyVariantStats, Experiment, Interaction, Variant
from recommender.tasks import aggregate_daily as aggregate_task


def day_time(days_ago, hour):
    day = timezone.localdate() - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def table():
    return sorted(DailyBlockStats.objects.values_list(
        "day", "block", "algorithm", "run", "impressions", "clicks", "visitors", "add_to_carts", "purchases",
        "revenue"))


@pytest.mark.django_db
def test_rows_per_day_block_algorithm_and_run(catalog, alice, bob):
    red, blue = catalog[:2]
    for who in (alice, bob):
        track(who, red, "impression", context="similar_items:itemknn@7", timestamp=day_time(3, 10))
        track(who, blue, "impression", context="similar_items:itemknn@7", timestamp=day_time(3, 10))
    track(alice, red, "click", context="similar_items:itemknn@7", timestamp=day_time(3, 23))
    track(alice, red, "purchase", value=2, timestamp=day_time(2, 1))  # next day, 2 h later
    result = aggregates.aggregate_daily()
    assert result["last_id"] == Interaction.objects.order_by("-id").first().id
    three, two = timezone.localdate() - dt.timedelta(days=3), timezone.localdate() - dt.timedelta(days=2)
    assert table() == [
        (three, "similar_items", "itemknn", 7, 4, 1, 2, 0, 0, Decimal("0.00")),
        (two, "similar_items", "itemknn", 7, 0, 0, 0, 0, 1, Decimal("5.00")),
    ]
    row = DailyBlockStats.objects.get(day=three)
    assert (row.ctr, row.conversion_rate, row.rpm) == (0.25, 0.0, 0.0)


@pytest.mark.django_db
def test_incremental_and_idempotent(catalog, alice, django_assert_max_num_queries):
    track(alice, catalog[0], "impression", context="trending:trending", timestamp=day_time(10, 9))
    aggregate_task.apply().get()
    before = table()
    assert len(before) == 1
    # nothing new: only today is recomputed, and the rows stay the same
    assert aggregates.aggregate_daily()["days"] == 1
    assert table() == before
    # a late click of ten days ago reaches the purchase of the day after it
    track(alice, catalog[0], "purchase", value=1, timestamp=day_time(9, 8))
    aggregates.aggregate_daily()
    assert table() == before
    track(alice, catalog[0], "click", context="trending:trending", timestamp=day_time(10, 12))
    result = aggregates.aggregate_daily()
    assert result["days"] == 3  # the click's day, the day after (the 24 h window), today
    assert [(r[0], r[5], r[8]) for r in table()] == [
        (timezone.localdate() - dt.timedelta(days=10), 1, 0), (timezone.localdate() - dt.timedelta(days=9), 0, 1)]
    assert AggregationState.objects.get().last_id == Interaction.objects.order_by("-id").first().id
    after = table()
    aggregates.aggregate_daily(full=True)
    assert table() == after


@pytest.mark.django_db
def test_variant_rows_count_exposed_visitors_and_their_sales(catalog, alice, bob):
    experiment = Experiment.objects.create(name="fy", blocks=["recommended_for_you"], status="running")
    Variant.objects.create(experiment=experiment, name="control", algorithm="", share=0.5)
    Variant.objects.create(experiment=experiment, name="als", algorithm="als", share=0.5)
    track(alice, catalog[0], "purchase", value=1, timestamp=day_time(1, 8))   # before exposure: not counted
    record_exposure(Assignment("als", experiment.pk, "als"), f"u:{alice.pk}", user=alice)
    record_exposure(Assignment(None, experiment.pk, "control"), f"u:{bob.pk}", user=bob)
    now = timezone.now()
    track(alice, catalog[0], "impression", context="recommended_for_you:als", timestamp=now)
    track(alice, catalog[0], "impression", context="trending:trending", timestamp=now)  # another block
    track(alice, catalog[0], "purchase", value=2, timestamp=now)
    track(bob, catalog[1], "purchase", value=1, timestamp=now)
    aggregates.aggregate_daily(full=True)
    rows = {r.variant: r for r in DailyVariantStats.objects.filter(day=timezone.localdate())}
    assert (rows["als"].exposed, rows["als"].impressions, rows["als"].purchases, rows["als"].revenue) == (
        1, 1, 1, Decimal("5.00"))
    assert (rows["control"].exposed, rows["control"].impressions, rows["control"].purchases,
            rows["control"].revenue) == (1, 0, 1, Decimal("3.50"))
    assert not DailyVariantStats.objects.exclude(day=timezone.localdate()).exists()

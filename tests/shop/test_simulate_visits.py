"""manage.py shop_simulate_visits: marked, deterministic, idempotent, aggregated."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from recommender.models import DailyBlockStats, DailyVariantStats, Experiment, Exposure, Interaction, ServedList


@pytest.fixture
def customers(catalog, django_user_model):
    """30 customers with real (not simulated) purchases of the active products."""
    old = timezone.now() - dt.timedelta(days=400)
    users = []
    for k in range(30):
        user = django_user_model.objects.create_user(f"customer{k}", password="x")
        for n, item in enumerate(catalog[:3]):
            for order in range(1 + (k + n) % 4):
                Interaction.objects.create(user=user, item=item, event="purchase", value=1 + order,
                                           timestamp=old + dt.timedelta(days=order + n))
        users.append(user)
    return users


def simulated():
    return sorted(Interaction.objects.filter(session_key__startswith="sim-").values_list(
        "user_id", "session_key", "item_id", "event", "value", "timestamp", "context"))


@pytest.mark.django_db
def test_simulation_is_marked_aggregated_and_idempotent(customers, catalog):
    ServedList.objects.create(kind="for_user", algorithm="hybrid", subject=customers[0].pk,
                              items=[[catalog[2].pk, 0.9, None], [catalog[1].pk, 0.5, None]])
    call_command("shop_simulate_visits", "--days", "14", "--seed", "3", "--treatment", "itemknn")
    first = simulated()
    assert first, "the simulation wrote nothing"
    assert {row[3] for row in first} >= {"impression", "click"}
    assert all(row[1].startswith("sim-") for row in first)
    assert Interaction.objects.exclude(session_key__startswith="sim-").count() == sum(
        1 + (k + n) % 4 for k in range(30) for n in range(3))  # the real purchases are untouched
    days = {timezone.localdate(row[5]) for row in first}
    assert min(days) >= timezone.localdate() - dt.timedelta(days=14) and max(days) < timezone.localdate()
    contexts = {row[6] for row in first if row[3] == "impression"}
    assert "recommended_for_you:hybrid" in contexts and "recommended_for_you:itemknn" in contexts
    experiment = Experiment.objects.get()
    assert experiment.status == "running" and experiment.blocks == ["recommended_for_you"]
    exposures = Exposure.objects.filter(experiment=experiment)
    assert exposures.count() == len({row[0] for row in first})
    assert set(exposures.values_list("variant", flat=True)) <= {"hybrid", "itemknn"}
    assert DailyBlockStats.objects.filter(block="recommended_for_you").exists()
    assert DailyVariantStats.objects.filter(experiment=experiment).exists()
    blocks_before = sorted(DailyBlockStats.objects.values_list("day", "block", "algorithm", "impressions",
                                                               "clicks", "purchases", "revenue"))

    call_command("shop_simulate_visits", "--days", "14", "--seed", "3", "--treatment", "itemknn")
    assert simulated() == first
    assert Exposure.objects.count() == exposures.count()
    assert Experiment.objects.count() == 1
    assert sorted(DailyBlockStats.objects.values_list("day", "block", "algorithm", "impressions", "clicks",
                                                      "purchases", "revenue")) == blocks_before

    call_command("shop_simulate_visits", "--remove")
    assert simulated() == []
    assert not Exposure.objects.exists()
    assert not DailyBlockStats.objects.exists()


@pytest.mark.django_db
def test_another_seed_gives_other_visits(customers):
    call_command("shop_simulate_visits", "--days", "7", "--seed", "1")
    one = simulated()
    call_command("shop_simulate_visits", "--days", "7", "--seed", "2")
    assert simulated() != one

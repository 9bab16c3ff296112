"""The dashboard and the experiment pages of the admin: permissions, totals, validation."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from recommender.models import DailyBlockStats, Experiment, Exposure, TrainingRun, Variant

DASHBOARD = "admin:recommender_dashboard"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("merch", password="pw-merch-123", is_staff=True)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="recommender",
                                                         codename__in=codenames))


def stats_rows():
    today = timezone.localdate()
    rows = [("recommended_for_you", "hybrid", 0, 1000, 50, 8, 4, "40.00"),
            ("recommended_for_you", "hybrid", 7, 500, 10, 1, 1, "5.50"),  # same block and algorithm, run 7
            ("similar_items", "itemknn", 0, 300, 3, 0, 0, "0")]
    for days_ago in (1, 2):
        for block, algorithm, run, impressions, clicks, carts, purchases, revenue in rows:
            DailyBlockStats.objects.create(day=today - dt.timedelta(days=days_ago), block=block, algorithm=algorithm,
                                           run=run, impressions=impressions, clicks=clicks, add_to_carts=carts,
                                           purchases=purchases, revenue=Decimal(revenue))
    # outside the last 7 days
    DailyBlockStats.objects.create(day=today - dt.timedelta(days=20), block="similar_items", algorithm="itemknn",
                                   impressions=99999, clicks=1)


@pytest.mark.django_db
def test_dashboard_needs_the_view_permission(client, staff):
    client.force_login(staff)
    assert client.get(reverse(DASHBOARD)).status_code == 403
    grant(staff, "view_dailyblockstats")
    assert client.get(reverse(DASHBOARD)).status_code == 200


@pytest.mark.django_db
def test_dashboard_totals_match_the_daily_rows(client, staff):
    grant(staff, "view_dailyblockstats")
    stats_rows()
    client.force_login(staff)
    response = client.get(reverse(DASHBOARD), {"period": "7"})
    assert response.status_code == 200
    totals = {(row["block"], row["algorithm"]): row for row in response.context["totals"]}
    # both runs of hybrid, both days: 2 x (1000 + 500) impressions, 2 x 60 clicks, 2 x 5 purchases, 2 x 45.50
    hybrid = totals[("recommended_for_you", "hybrid")]
    assert (hybrid["impressions"], hybrid["clicks"], hybrid["purchases"], hybrid["revenue"]) == (
        "3,000", "120", "10", "91.00")
    assert hybrid["ctr"] == "4.00%" and hybrid["conversion"] == "8.33%" and hybrid["rpm"] == "30.33"
    assert totals[("similar_items", "itemknn")]["impressions"] == "600"  # the row of 20 days ago is out
    assert response.context["grand"]["impressions"] == "3,600"
    assert response.context["grand"]["revenue"] == "91.00"
    assert len(response.context["charts"]) == 4
    assert all(chart.startswith("<svg") for chart in response.context["charts"])
    # 30 days: the old row counts
    response = client.get(reverse(DASHBOARD), {"period": "30"})
    assert response.context["grand"]["impressions"] == "103,599"
    # a custom period
    today = timezone.localdate()
    response = client.get(reverse(DASHBOARD), {"period": "custom", "start": str(today - dt.timedelta(days=1)),
                                                "end": str(today)})
    assert response.context["grand"]["impressions"] == "1,800"


@pytest.mark.django_db
def test_training_versions_are_marked_on_the_time_axis(client, staff):
    grant(staff, "view_dailyblockstats")
    stats_rows()
    finished = timezone.now() - dt.timedelta(days=1)
    shown = TrainingRun.objects.create(algorithm="hybrid", status="succeeded", finished=finished,
                                       gate="accepted: no active version")
    TrainingRun.objects.create(algorithm="ease", status="succeeded", finished=finished, gate="refused: NDCG")
    client.force_login(staff)
    response = client.get(reverse(DASHBOARD), {"period": "7"})
    assert [run.pk for run in response.context["runs"]] == [shown.pk]
    assert f"hybrid #{shown.pk}" in response.context["charts"][0]
    assert "ease #" not in response.context["charts"][0]


@pytest.mark.django_db
def test_experiments_show_on_the_dashboard_and_their_results_page(client, staff, catalog):
    grant(staff, "view_dailyblockstats")
    experiment = Experiment.objects.create(name="knn vs hybrid", blocks=["recommended_for_you"], status="running",
                                           start=timezone.now() - dt.timedelta(days=3))
    Variant.objects.create(experiment=experiment, name="knn", algorithm="itemknn", share=0.5)
    Variant.objects.create(experiment=experiment, name="hybrid", algorithm="hybrid", share=0.5)
    Exposure.objects.bulk_create([Exposure(experiment=experiment, variant="knn", key=f"s:{k}", session_key=str(k))
                                  for k in range(300)])
    client.force_login(staff)
    response = client.get(reverse(DASHBOARD))
    assert response.context["experiments"] == []  # no view permission on experiments
    grant(staff, "view_experiment")
    response = client.get(reverse(DASHBOARD))
    [shown] = response.context["experiments"]
    assert shown["experiment"] == experiment
    body = response.content.decode()
    assert "sample ratio mismatch" in body  # 300 / 0 visitors on a 50/50 split
    results_url = reverse("admin:recommender_experiment_results", args=[experiment.pk])
    page = client.get(results_url)
    assert page.status_code == 200
    assert [m["key"] for m in page.context["metrics"]] == ["impressions", "ctr", "conversion", "revenue"]
    assert "sample ratio mismatch" in page.content.decode()
    staff.user_permissions.clear()
    staff = type(staff).objects.get(pk=staff.pk)
    client.force_login(staff)
    assert client.get(results_url).status_code == 403


@pytest.mark.django_db
def test_experiment_admin_validates_the_submitted_variants(admin_client):
    url = reverse("admin:recommender_experiment_add")
    form = {"name": "xp", "description": "", "blocks": '["recommended_for_you"]', "salt": "", "status": "running",
            "start_0": "", "start_1": "", "stop_0": "", "stop_1": "",
            "created_0": "2025-01-01", "created_1": "10:00:00",
            "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "2",
            "variants-MAX_NUM_FORMS": "1000",
            "variants-0-name": "a", "variants-0-algorithm": "itemknn", "variants-0-share": "0.5",
            "variants-1-name": "b", "variants-1-algorithm": "hybrid", "variants-1-share": "0.6"}
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "add up to 1.1, not 1" in response.content.decode()
    assert not Experiment.objects.exists()
    response = admin_client.post(url, {**form, "variants-1-share": "0.5"})
    assert response.status_code == 302
    assert list(Experiment.objects.get().variants.values_list("name", "share")) == [("a", 0.5), ("b", 0.5)]

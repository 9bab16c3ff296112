"""The training runs pages: metrics table, sizes in MB, read-only run page, the chart over
time, and live status updates (in headless Chromium)."""

import datetime as dt
import re
import time

import pytest
from django.urls import reverse
from django.utils import translation

from recommender.admin.runs import megabytes, significant
from recommender.models import TrainingRun

Status = TrainingRun.Status
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
METRICS = {"ndcg": 0.0812345, "precision": 0.0312, "recall": 0.123456, "f1": 0.05, "map": 0.04,
           "hit_rate": 0.25, "coverage": 0.4567, "novelty": 9.87654, "users": 1234, "recommend_seconds": 0.91234,
           "skipped_rows": 3, "gate_ndcg": 0.0812345, "gate_active_ndcg": 0.0799, "gate_active_run": 7,
           "gate_users": 300, "gate_interactions": 4567, "train_seconds": 12.3456, "extra_thing": 1.5}


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()


def test_significant_digits_without_exponents():
    with translation.override("en"):
        assert significant(0.0812345) == "0.08123"
        assert significant(12.3456) == "12.35"
        assert significant(1234.5678) == "1,235"
        assert significant(0.000012346) == "0.00001235"
        assert significant(1234) == "1,234" and significant(0.0) == "0"
        assert significant(0.5, 3) == "0.500"
        assert megabytes(12_345_678) == "12.3 MB" and megabytes(40_000) == "0.0400 MB" and megabytes(None) == ""


@pytest.mark.django_db
def test_run_page_shows_metrics_as_a_table_and_the_size_in_mb(admin_client):
    run = TrainingRun.objects.create(algorithm="ease", status=Status.SUCCEEDED, metrics=METRICS,
                                     artifact_size=12_345_678, started=T0, finished=T0 + dt.timedelta(seconds=13))
    page = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[run.pk])).content.decode()
    table = re.search(r'<table class="rec-metrics">.*?</table>', page, re.S)[0]
    rows = re.findall(r'<th scope="row">(.*?)</th><td class="rec-metric-(\w+)">(.*?)</td>', table)
    assert rows[0] == ("NDCG@10", "ndcg", "0.08123")
    assert ("Training time", "train_seconds", "12.35 s") in rows
    assert ("Users evaluated", "users", "1,234") in rows
    assert ("Gate: active run compared with", "gate_active_run", "#7") in rows
    assert rows[-1] == ("extra_thing", "extra_thing", "1.500")  # an unknown key keeps its name
    assert len(rows) == len(METRICS)
    assert "&quot;ndcg&quot;" not in page and "0.0812345" not in page  # not the raw JSON
    assert "12.3 MB" in page and "12345678" not in page

    zh = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[run.pk]), **ZH).content.decode()
    assert "训练耗时" in zh and "12.35 秒" in zh and "12.3 MB" in zh and "覆盖率" in zh


@pytest.mark.django_db
def test_run_page_is_read_only_but_the_actions_stay(admin_client):
    run = TrainingRun.objects.create(algorithm="ease", status=Status.FAILED, error="boom")
    url = reverse("admin:recommender_trainingrun_change", args=[run.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert admin_client.post(url, {"algorithm": "other"}).status_code == 403
    run.refresh_from_db()
    assert run.algorithm == "ease"
    changelist = admin_client.get(reverse("admin:recommender_trainingrun_changelist")).content.decode()
    assert 'value="activate_runs"' in changelist and 'value="train_again"' in changelist
    assert "Train now" in changelist
    assert "<h1>Training runs</h1>" in changelist and "to change" not in changelist
    # the Error fieldset only on a run that has an error
    assert ">Error<" in page
    succeeded = TrainingRun.objects.create(algorithm="ease", status=Status.SUCCEEDED)
    page = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[succeeded.pk])).content.decode()
    assert ">Error<" not in page and ">Results<" in page


@pytest.mark.django_db
def test_running_run_page_has_a_live_status_and_bar(admin_client):
    run = TrainingRun.objects.create(algorithm="ease", status=Status.RUNNING, progress=0.25,
                                     progress_message="epoch 1/4")
    page = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[run.pk])).content.decode()
    assert f'data-run-status="{run.pk}"' in page and f'data-run="{run.pk}"' in page and 'value="25"' in page
    script = f'data-progress-url="{reverse("admin:recommender_trainingrun_progress")}"'
    assert "recommender/admin_runs.js" in page and script in page
    changelist = admin_client.get(reverse("admin:recommender_trainingrun_changelist")).content.decode()
    assert "recommender/admin_runs.js" in changelist and script in changelist
    assert f'data-run-status="{run.pk}"' in changelist


def _points(svg):
    """``{pk: (x, y, colour)}`` of the chart's points."""
    return {int(m[5]): (float(m[1]), float(m[2]), m[3]) for m in re.finditer(
        r'<circle cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+" fill="(#\w+)"[^>]*><title>(\w+) #(\d+)', svg)}


@pytest.mark.django_db
def test_chart_spreads_versions_along_time_with_a_legend_and_axes(admin_client):
    runs = [TrainingRun.objects.create(algorithm=algorithm, status=Status.SUCCEEDED, metrics={"ndcg": ndcg},
                                       finished=T0 + dt.timedelta(hours=hours), is_active=active)
            for algorithm, ndcg, hours, active in [("ease", 0.05, 0, False), ("ease", 0.06, 1, False),
                                                   ("ease", 0.07, 10, True), ("itemknn", 0.04, 5, True)]]
    page = admin_client.get(reverse("admin:recommender_trainingrun_chart")).content.decode()
    svg = re.search(r'<svg [^>]*class="rec-chart".*?</svg>', page, re.S)[0]
    points = _points(svg)
    x = {run.pk: points[run.pk][0] for run in runs}
    # x follows the finish time: 1 h after the first is a tenth of the way to 10 h
    assert (x[runs[1].pk] - x[runs[0].pk]) * 10 == pytest.approx(x[runs[2].pk] - x[runs[0].pk], rel=0.01)
    assert (x[runs[3].pk] - x[runs[0].pk]) * 2 == pytest.approx(x[runs[2].pk] - x[runs[0].pk], rel=0.01)
    colours = {points[run.pk][2] for run in runs[:3]}
    assert len(colours) == 1 and points[runs[3].pk][2] not in colours  # a colour per algorithm
    assert points[runs[2].pk][1] < points[runs[0].pk][1]  # higher NDCG is higher up
    legend = re.findall(r'<g class="rec-legend">.*?<text[^>]*>(.*?)</text></g>', svg)
    assert legend == ["ease", "itemknn", "active version"]
    assert re.search(r'class="rec-y-label"[^>]*>NDCG@10<', svg) and re.search(r'class="rec-x-label"[^>]*>Finished at<',
                                                                               svg)
    assert "08:00" in svg and "18:00" in svg  # time ticks over a 10-hour span (UTC in tests)

    zh = admin_client.get(reverse("admin:recommender_trainingrun_chart"), {"metric": "train_seconds"}, **ZH)
    assert "No succeeded" not in zh.content.decode()
    runs[0].metrics = {"ndcg": 0.05, "train_seconds": 3.0}
    runs[0].save()
    zh = admin_client.get(reverse("admin:recommender_trainingrun_chart"), {"metric": "train_seconds"}, **ZH)
    zh = zh.content.decode()
    assert re.search(r'class="rec-x-label"[^>]*>完成时间<', zh)
    assert re.search(r'class="rec-y-label"[^>]*>训练耗时（秒）<', zh)
    assert "已启用的版本" in zh


# The live updates, in headless Chromium ----------------------------------------------------





def _logged_in_page(browser, live_server, client, user):
    client.force_login(user)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": live_server.url}])
    return context.new_page()


def _wait(predicate, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.django_db(transaction=True)
def test_list_and_run_page_follow_a_run_live(live_server, browser, client, admin_user):
    queued = TrainingRun.objects.create(algorithm="ease", status=Status.QUEUED)
    page = _logged_in_page(browser, live_server, client, admin_user)
    page.goto(live_server.url + reverse("admin:recommender_trainingrun_changelist"))
    page.evaluate("window.notReloaded = true")
    badge = page.locator(f'[data-run-status="{queued.pk}"]')
    assert badge.inner_text() == "queued"

    TrainingRun.objects.filter(pk=queued.pk).update(status=Status.RUNNING, progress=0.3,
                                                     progress_message="epoch 1/3", started=T0)
    assert _wait(lambda: badge.inner_text() == "running"), badge.inner_text()
    bar = page.locator(f'[data-run="{queued.pk}"]')
    assert _wait(lambda: bar.locator("progress").get_attribute("value") is not None
                 and page.evaluate(f'document.querySelector(\'[data-run="{queued.pk}"] progress\').value') == 30)
    assert "epoch 1/3" in bar.inner_text()

    TrainingRun.objects.filter(pk=queued.pk).update(status=Status.SUCCEEDED, progress=1.0, progress_message="done",
                                                     metrics={"ndcg": 0.0777}, finished=T0 + dt.timedelta(seconds=42))
    assert _wait(lambda: badge.inner_text() == "succeeded")
    assert "rec-succeeded" in badge.get_attribute("class") and bar.count() == 0
    assert page.locator("td.field-ndcg").first.inner_text() == "0.0777"
    assert page.locator("td.field-duration_display").first.inner_text() == "42.0 s"
    assert page.evaluate("window.notReloaded") is True  # no reload

    # the run's page: the status turns, then the metrics appear, without a reload
    running = TrainingRun.objects.create(algorithm="itemknn", status=Status.RUNNING, progress=0.5, started=T0)
    page.goto(live_server.url + reverse("admin:recommender_trainingrun_change", args=[running.pk]))
    page.evaluate("window.notReloaded = true")
    badge = page.locator(f'[data-run-status="{running.pk}"]')
    assert badge.inner_text() == "running" and page.locator("table.rec-metrics").count() == 0
    TrainingRun.objects.filter(pk=running.pk).update(status=Status.FAILED, progress_message="failed",
                                                      error="ValueError: bad", finished=T0)
    assert _wait(lambda: badge.inner_text() == "failed") or badge.inner_text() == "failed"
    assert _wait(lambda: "ValueError: bad" in page.content())
    assert page.evaluate("window.notReloaded") is True

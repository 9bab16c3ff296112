"""Admin of training runs: list, live progress, train now, activate / roll back, chart."""

import datetime as dt

import pytest
from django.urls import reverse

from recommender.models import TrainingRun

Status = TrainingRun.Status


@pytest.fixture
def runs(db, tmp_path):
    artifact = tmp_path / "run"
    artifact.mkdir()
    return [
        TrainingRun.objects.create(algorithm="itemknn", status=Status.SUCCEEDED, metrics={"ndcg": 0.08},
                                   artifact_path=str(artifact)),
        TrainingRun.objects.create(algorithm="itemknn", status=Status.SUCCEEDED, is_active=True,
                                   metrics={"ndcg": 0.09}, artifact_path=str(artifact)),
        TrainingRun.objects.create(algorithm="ease", status=Status.RUNNING, progress=0.4,
                                   progress_message="epoch 2/5"),
        TrainingRun.objects.create(algorithm="als", status=Status.FAILED, error="ValueError: bad data",
                                   traceback="Traceback (most recent call last): ..."),
    ]


@pytest.fixture
def sent(monkeypatch):
    calls = []
    def record(args, queue):
        calls.append(args)

    monkeypatch.setattr("recommender.training.tasks.train_algorithm.apply_async", record)
    monkeypatch.setattr("recommender.training.tasks.refresh_lists.apply_async", record)
    return calls


@pytest.mark.django_db
def test_changelist_shows_status_progress_and_metrics(admin_client, runs):
    page = admin_client.get(reverse("admin:recommender_trainingrun_changelist")).content.decode()
    assert f'data-run="{runs[2].pk}"' in page and 'value="40"' in page and "epoch 2/5" in page
    assert f'data-run="{runs[3].pk}"' not in page      # a finished run shows no progress bar
    assert "0.0900" in page and "rec-failed" in page
    assert "Train now" in page and "Metrics chart" in page


@pytest.mark.django_db
def test_changelist_says_which_runs_the_gate_refused(admin_client, runs):
    refused = TrainingRun.objects.create(
        algorithm="itemknn", status=Status.SUCCEEDED, metrics={"ndcg": 0.12},
        gate="refused: NDCG@10 0.2111 is below 0.2118 (active #2 0.2230 minus 5%), on the same 1306 held-out "
             "interactions of 858 users")
    page = admin_client.get(reverse("admin:recommender_trainingrun_changelist")).content.decode()
    # only that run: an accepted run that a later one replaced is just not active
    assert page.count('class="rec-gate"') == 1
    assert f'title="{refused.gate}">refused by the gate</small>' in page
    assert page.count('src="/static/admin/img/icon-yes.svg" alt="True"') == 1


@pytest.mark.django_db
def test_detail_shows_the_error(admin_client, runs):
    page = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[runs[3].pk])).content.decode()
    assert "ValueError: bad data" in page and "Traceback" in page


@pytest.mark.django_db
def test_progress_endpoint(admin_client, runs):
    url = reverse("admin:recommender_trainingrun_progress")
    data = admin_client.get(url, {"ids": f"{runs[2].pk},x"}).json()
    assert data == {"runs": [{"pk": runs[2].pk, "status": "running", "status_display": "running",
                              "progress": 40, "progress_message": "epoch 2/5", "ndcg": "", "duration": ""}]}
    # a run that finished meanwhile brings what its list row shows (the script fills it in)
    TrainingRun.objects.filter(pk=runs[2].pk).update(
        status=Status.SUCCEEDED, progress=1.0, progress_message="done", metrics={"ndcg": 0.12345},
        started=dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC),
        finished=dt.datetime(2026, 1, 1, 12, 1, 5, tzinfo=dt.UTC))
    [run] = admin_client.get(url, {"ids": str(runs[2].pk)}).json()["runs"]
    assert run == {"pk": runs[2].pk, "status": "succeeded", "status_display": "succeeded", "progress": 100,
                   "progress_message": "done", "ndcg": "0.1235", "duration": "65.0 s"}


@pytest.mark.django_db(transaction=True)
def test_train_now_page_queues_runs(admin_client, runs, sent):
    url = reverse("admin:recommender_trainingrun_train")
    assert "itemknn" in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"algorithms": ["popular", "ease"]}, follow=True)
    assert "Queued" in response.content.decode()
    queued = TrainingRun.objects.filter(algorithm="popular", status=Status.QUEUED)
    assert queued.count() == 1 and queued.get().requested_by == "admin"
    # ease was already running: it is not queued twice
    assert TrainingRun.objects.filter(algorithm="ease").count() == 1
    assert [queued.get().pk] in sent


@pytest.mark.django_db(transaction=True)
def test_activate_action_rolls_back(admin_client, runs, sent):
    url = reverse("admin:recommender_trainingrun_changelist")
    response = admin_client.post(url, {"action": "activate_runs", "_selected_action": [runs[0].pk]}, follow=True)
    assert "Activated" in response.content.decode()
    assert TrainingRun.objects.get(algorithm="itemknn", is_active=True).pk == runs[0].pk
    assert ["itemknn"] in sent  # its lists are refreshed
    response = admin_client.post(url, {"action": "activate_runs", "_selected_action": [runs[3].pk]}, follow=True)
    assert "did not succeed" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_train_again_action(admin_client, runs, sent):
    url = reverse("admin:recommender_trainingrun_changelist")
    admin_client.post(url, {"action": "train_again", "_selected_action": [runs[3].pk]})
    assert TrainingRun.objects.filter(algorithm="als", status=Status.QUEUED).exists()


@pytest.mark.django_db
def test_chart_compares_versions(admin_client, runs):
    page = admin_client.get(reverse("admin:recommender_trainingrun_chart")).content.decode()
    assert "<svg" in page and "<polyline" in page and f"itemknn #{runs[1].pk}: 0.0900 (active)" in page
    page = admin_client.get(reverse("admin:recommender_trainingrun_chart"), {"metric": "recall"}).content.decode()
    assert "No succeeded training runs yet" in page


@pytest.mark.django_db
def test_active_run_cannot_be_deleted_and_non_staff_are_kept_out(admin_client, client, runs, alice):
    response = admin_client.get(reverse("admin:recommender_trainingrun_delete", args=[runs[1].pk]))
    assert response.status_code == 403
    client.force_login(alice)
    for name in ["changelist", "train", "progress", "chart"]:
        response = client.get(reverse(f"admin:recommender_trainingrun_{name}"))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.fixture
def viewer(django_user_model):
    """Staff who may only view training runs."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("vera", "", "pw-vera-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_trainingrun"))
    return user


@pytest.mark.django_db(transaction=True)
def test_view_only_staff_cannot_activate_or_train(client, viewer, runs, sent):
    client.force_login(viewer)
    url = reverse("admin:recommender_trainingrun_changelist")
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "activate_runs" not in html and "train_again" not in html and "Train now" not in html
    for action, selected in [("activate_runs", runs[0]), ("train_again", runs[3])]:
        client.post(url, {"action": action, "_selected_action": [selected.pk]})
    assert TrainingRun.objects.get(algorithm="itemknn", is_active=True).pk == runs[1].pk
    assert not TrainingRun.objects.filter(status=Status.QUEUED).exists() and sent == []
    train = reverse("admin:recommender_trainingrun_train")
    assert client.get(train).status_code == 403
    assert client.post(train, {"algorithms": ["popular"]}).status_code == 403
    assert not TrainingRun.objects.filter(algorithm="popular").exists()
    # viewing is allowed: the chart and the progress
    assert client.get(reverse("admin:recommender_trainingrun_chart")).status_code == 200
    assert client.get(reverse("admin:recommender_trainingrun_progress")).status_code == 200


@pytest.mark.django_db
def test_chart_needs_the_view_permission(client, django_user_model, runs):
    staff = django_user_model.objects.create_user("stan", "", "pw-stan-123", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:recommender_trainingrun_chart")).status_code == 403
    assert client.get(reverse("admin:recommender_trainingrun_progress")).status_code == 403

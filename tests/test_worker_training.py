"""Training through real Celery worker processes over Redis, on PostgreSQL."""

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone

from recommender.models import Interaction, ServedList, TrainingRun
from recommender.serving import published
from recommender.training import services

pytestmark = pytest.mark.services
Status = TrainingRun.Status


def wait_for(predicate, seconds=60, what="condition"):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def shoppers(catalog, django_user_model):
    users = [django_user_model.objects.create_user(f"w{i}") for i in range(8)]
    t0 = timezone.now() - dt.timedelta(days=3)
    Interaction.objects.bulk_create([
        Interaction(user=user, item=catalog[(u + step) % 3], event="view",
                    timestamp=t0 + dt.timedelta(minutes=u * 10 + step))
        for u, user in enumerate(users) for step in range(5)
    ])
    return users


@pytest.fixture
def overrides(tmp_path, settings):
    values = {
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "STALE_RUN_SECONDS": 4,
        "ALGORITHMS": {
            "itemknn": {"class": "recommender.engine.neighbors.ItemKNN", "params": {"k": 10}},
            "popular": {"class": "recommender.engine.popular.Popular"},
            "slow": {"class": "tests.engines.SlowPopular"},
            "broken": {"class": "tests.engines.FailingPopular"},
        },
        "POPULAR_ALGORITHM": "slow",
    }
    settings.RECOMMENDER = {**settings.RECOMMENDER, **values}
    return values


def status_of(run):
    return TrainingRun.objects.get(pk=run.pk).status


def test_run_is_queued_trained_activated_and_lists_refreshed(celery_workers, overrides, shoppers):
    celery_workers.start(overrides)
    (run,) = services.enqueue_training(["itemknn"], requested_by="test")
    assert run.status == Status.QUEUED
    wait_for(lambda: status_of(run) == Status.SUCCEEDED, what="the training")
    run.refresh_from_db()
    assert run.is_active and run.started and run.finished and run.metrics and run.task_id
    # the activation queued a refresh: every shopper gets a served list
    wait_for(lambda: ServedList.objects.filter(algorithm="itemknn", kind="for_user").count() == 8,
             what="the served lists")
    assert published.read("for_user", "itemknn", shoppers[0].pk) is not None


def test_a_failing_training_keeps_the_old_version_serving(celery_workers, overrides, shoppers):
    celery_workers.start(overrides)
    (good,) = services.enqueue_training(["popular"])
    wait_for(lambda: status_of(good) == Status.SUCCEEDED, what="the first training")
    overrides["ALGORITHMS"]["popular"] = {"class": "tests.engines.FailingPopular"}
    celery_workers.stop()
    celery_workers.start(overrides)
    (bad,) = services.enqueue_training(["popular"])
    wait_for(lambda: status_of(bad) == Status.FAILED, what="the failure")
    bad.refresh_from_db()
    assert "the engine broke on purpose" in bad.error and "Traceback" in bad.traceback
    assert services.active_run("popular").pk == good.pk


def send(algorithm, **params):
    """Record a run with explicit parameters and send it, as enqueue_training does."""
    from recommender.training.tasks import train_algorithm

    run = TrainingRun.objects.create(algorithm=algorithm, params=params)
    train_algorithm.apply_async(args=[run.pk], queue="recommender_training")
    return run


def test_sigkill_mid_training_leaves_old_version_and_no_half_artifact(celery_workers, overrides, shoppers,
                                                                     tmp_path):
    worker = celery_workers.start(overrides)
    old = send("slow")
    wait_for(lambda: status_of(old) == Status.SUCCEEDED, what="the first version")
    assert TrainingRun.objects.get(pk=old.pk).is_active

    doomed = send("slow", sleep_seconds=120, marker=str(tmp_path / "started"))
    wait_for(lambda: (tmp_path / "started").exists(), what="the training to start")
    assert status_of(doomed) == Status.RUNNING
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    # the heartbeat stops; the run is failed (by the periodic task, called here), never "running" forever
    time.sleep(overrides["STALE_RUN_SECONDS"] + 1)
    services.fail_stale_runs()
    doomed.refresh_from_db()
    assert doomed.status == Status.FAILED and "stopped answering" in doomed.error
    active = services.active_run("slow")
    assert active.pk == old.pk and Path(active.artifact_path).is_dir()
    run_dirs = sorted(p.name for p in Path(overrides["ARTIFACT_DIR"], "slow").iterdir())
    assert run_dirs == [f"run-{old.pk}"]  # nothing of the killed run under a final name
    from recommender.training import artifacts

    model, *_ = artifacts.load(active.artifact_path)  # the serving artifact is intact
    assert model is not None
    # a redelivered message of the killed run finds it failed and does nothing
    services.train(doomed.pk)
    assert status_of(doomed) == Status.FAILED


def test_two_concurrent_requests_do_not_both_run(celery_workers, overrides, shoppers):
    celery_workers.start(overrides, concurrency=2)
    # two runs recorded for the same algorithm (e.g. by two web servers at once), sent at once
    first = send("slow", sleep_seconds=3)
    second = send("slow", sleep_seconds=3)
    wait_for(lambda: {status_of(first), status_of(second)} <= {Status.SUCCEEDED, Status.FAILED},
             what="both requests to finish")
    statuses = sorted([status_of(first), status_of(second)])
    assert statuses == [Status.FAILED, Status.SUCCEEDED]
    loser = first if status_of(first) == Status.FAILED else second
    assert "already running" in TrainingRun.objects.get(pk=loser.pk).error


def test_a_killed_workers_run_is_failed_when_the_worker_starts_again(celery_workers, overrides, shoppers,
                                                                     tmp_path):
    overrides["STALE_RUN_SECONDS"] = 600   # only the start-up check can fail it within this test
    worker = celery_workers.start(overrides)
    doomed = send("slow", sleep_seconds=120, marker=str(tmp_path / "started"))
    wait_for(lambda: (tmp_path / "started").exists(), what="the training to start")
    doomed.refresh_from_db()
    assert doomed.status == Status.RUNNING and doomed.worker.startswith("w0@")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stdout.close()
    celery_workers.procs.remove(worker)   # the next worker gets the same node name, w0@<host>
    leftover = Path(overrides["ARTIFACT_DIR"], "slow", f"run-{doomed.pk}.tmp-0000dead")
    leftover.mkdir(parents=True)           # as if it died while writing its artifact
    started = time.time()
    celery_workers.start(overrides)
    wait_for(lambda: status_of(doomed) == Status.FAILED, seconds=30, what="the start-up check")
    doomed.refresh_from_db()
    assert f"{doomed.worker} restarted" in doomed.error
    assert time.time() - started < 60 and not leftover.exists()
    # the lock is free: the next run of the algorithm trains
    assert status_of(send("slow")) in (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED)
    nxt = TrainingRun.objects.latest("pk")
    wait_for(lambda: status_of(nxt) == Status.SUCCEEDED, what="the next training")

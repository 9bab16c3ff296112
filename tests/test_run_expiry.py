"""Queued runs whose task never started, dead workers' runs, and a gate that compares like with like."""

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from recommender.engine.neighbors import ItemKNN
from recommender.models import Interaction, TrainingRun
from recommender.training import artifacts, services

Status = TrainingRun.Status


class Backwards(ItemKNN):
    """ItemKNN that ranks the least similar items first: a genuinely worse model."""

    def _score_block(self, user_indices, user_items):
        return -super()._score_block(user_indices, user_items)


@pytest.fixture
def configure(tmp_path, settings):
    def apply(**extra):
        settings.RECOMMENDER = {
            **settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "ALGORITHMS": {
                "popular": {"class": "recommender.engine.popular.Popular"},
                "trending": {"class": "recommender.engine.popular.Trending"},
                "itemknn": {"class": "recommender.engine.neighbors.ItemKNN", "params": {"k": 20}},
                "backwards": {"class": "tests.test_run_expiry.Backwards", "params": {"k": 20}},
                "slow": {"class": "tests.engines.SlowPopular", "params": {"sleep_seconds": 0}},
            },
            **extra,
        }
    apply()
    return apply


@pytest.fixture
def shop(db, django_user_model):
    """Sixteen products; two groups of shoppers, each buying within its own group of items."""
    from shopdemo.shop.models import Category, Product

    category = Category.objects.create(name="All", slug="all")
    items = [Product.objects.create(stock_code=f"3000{i}", title=f"Item {i}", category=category, price=1)
             for i in range(16)]
    users = [django_user_model.objects.create_user(f"x{i}") for i in range(40)]
    return items, users


def buy(users, items, start, rng, groups, per_user=6, noise=0.0):
    """User u buys ``per_user`` distinct items of ``groups[u % len(groups)]``; a ``noise`` share
    of the users buys from the whole catalog instead."""
    rows = []
    for u, user in enumerate(users):
        pool = range(len(items)) if rng.random() < noise else groups[u % len(groups)]
        for step, i in enumerate(rng.choice(list(pool), size=min(per_user, len(pool)), replace=False)):
            rows.append(Interaction(user=user, item=items[int(i)], event="purchase",
                                    timestamp=start + dt.timedelta(minutes=u * 20 + step)))
    Interaction.objects.bulk_create(rows)


def run_of(algorithm, **fields):
    return TrainingRun.objects.create(algorithm=algorithm, **fields)


def shifted(items, users, seed=3):
    """Sixty days ago two groups of shoppers bought within two halves of the catalog; in the
    last days they buy across both halves (30% of them anything at all)."""
    rng = np.random.default_rng(seed)
    now = timezone.now()
    buy(users, items, now - dt.timedelta(days=60), rng, groups=(range(0, 8), range(8, 16)))
    yield
    buy(users, items, now - dt.timedelta(days=5), rng, noise=0.3,
        groups=([*range(0, 4), *range(8, 12)], [*range(4, 8), *range(12, 16)]))
    yield


# Queued runs whose task never started ---------------------------------------------------

@pytest.fixture
def sent(monkeypatch):
    calls = []

    class Result:
        id = "task-1"

    monkeypatch.setattr("recommender.training.dispatch.train", lambda run_id: calls.append(run_id) or Result())
    return calls


@pytest.mark.django_db
def test_a_queued_run_never_picked_up_is_sent_again_and_does_not_block(configure, shop, sent,
                                                                      django_capture_on_commit_callbacks):
    configure(QUEUED_RUN_SECONDS=300)
    lost = run_of("itemknn", created=timezone.now() - dt.timedelta(minutes=10))  # its message was lost
    fresh = run_of("popular")                                                   # sent a moment ago
    with django_capture_on_commit_callbacks(execute=True):
        runs = services.enqueue_training(["itemknn"], requested_by="alice")       # "Train now"
    assert [r.pk for r in runs] == [lost.pk] and sent == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == Status.QUEUED and lost.task_id == "task-1"
    assert lost.heartbeat > timezone.now() - dt.timedelta(seconds=30)  # the time of the last send
    with django_capture_on_commit_callbacks(execute=True):
        services.fail_stale_runs()   # within QUEUED_RUN_SECONDS of the new send: not sent again
    assert sent == [lost.pk] and fresh.pk not in sent
    TrainingRun.objects.filter(pk=lost.pk).update(heartbeat=timezone.now() - dt.timedelta(minutes=6))
    with django_capture_on_commit_callbacks(execute=True):
        services.fail_stale_runs()   # the beat entry: still not started, sent once more
    assert sent == [lost.pk, lost.pk]
    # the duplicate message is harmless: the run trains once
    assert services.train(lost.pk, refresh=False).status == Status.FAILED  # no interactions here
    assert services.train(lost.pk, refresh=False).finished == TrainingRun.objects.get(pk=lost.pk).finished


@pytest.mark.django_db
def test_the_retrain_check_sends_an_unstarted_run_again(configure, shop, sent, django_capture_on_commit_callbacks):
    from recommender.training.tasks import retrain_if_new_data

    configure(RETRAIN_AFTER_INTERACTIONS=1)
    lost = run_of("itemknn", created=timezone.now() - dt.timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert retrain_if_new_data() == []   # busy: the run is in flight again
    assert sent == [lost.pk]


@pytest.mark.django_db
def test_a_failed_send_is_recorded_on_the_run_not_raised(configure, shop, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    def down(run_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("recommender.training.dispatch.train", down)
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = services.enqueue_training(["itemknn"])   # the request does not fail
    run.refresh_from_db()
    assert run.status == Status.QUEUED and "Connection refused" in run.error
    assert run.progress_message.startswith("not sent")
    assert run.heartbeat is not None    # sent again QUEUED_RUN_SECONDS after this attempt


# Dead workers ---------------------------------------------------------------------------

def test_defaults_fail_a_dead_run_within_minutes():
    from recommender.conf import DEFAULTS
    from recommender.training.schedules import beat_schedule

    assert DEFAULTS["STALE_RUN_SECONDS"] <= 120 and DEFAULTS["QUEUED_RUN_SECONDS"] <= 300
    every = beat_schedule()["recommender.fail_stale_runs"]["schedule"]
    assert every.minute == set(range(60))   # checked every minute


@pytest.mark.django_db
def test_a_dead_runs_temporary_artifact_goes_when_the_run_is_failed(configure, shop):
    configure(STALE_RUN_SECONDS=60)
    old = timezone.now() - dt.timedelta(minutes=5)
    dead = run_of("itemknn", status=Status.RUNNING, started=old, heartbeat=old)
    alive = run_of("popular", status=Status.RUNNING, started=old, heartbeat=timezone.now())
    tmp_dead = artifacts.root() / "itemknn" / f"run-{dead.pk}.tmp-abcd1234"
    tmp_alive = artifacts.root() / "popular" / f"run-{alive.pk}.tmp-abcd1234"
    for path in (tmp_dead, tmp_alive):
        path.mkdir(parents=True)
    assert services.fail_stale_runs() == 1
    assert not tmp_dead.exists() and tmp_alive.exists()   # a fresh file, removed at once
    # the cleanup removes temporaries of runs that are not running, however recent
    TrainingRun.objects.filter(pk=alive.pk).update(status=Status.FAILED)
    tmp_dead.mkdir()
    assert services.cleanup_artifacts() == 2
    assert not tmp_dead.exists() and not tmp_alive.exists()


@pytest.mark.django_db
def test_a_restarted_worker_fails_the_runs_it_had_claimed(configure, shop, monkeypatch):
    import time
    from types import SimpleNamespace

    from recommender.training.tasks import fail_runs_of_restarted_worker

    monkeypatch.setattr("recommender.training.tasks._LOADED_AT", time.time())   # the worker just started
    # the receiver closes the worker's connections; here it would close the test's transaction
    monkeypatch.setattr("django.db.connections.close_all", lambda: None)
    old = timezone.now() - dt.timedelta(seconds=20)
    mine = run_of("itemknn", status=Status.RUNNING, started=old, heartbeat=timezone.now(), worker="train@a")
    other = run_of("popular", status=Status.RUNNING, started=old, heartbeat=timezone.now(), worker="train@b")
    fail_runs_of_restarted_worker(sender=SimpleNamespace(hostname="train@a"))
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.status == Status.FAILED and "train@a restarted" in mine.error
    assert other.status == Status.RUNNING
    # a run this worker claimed after it loaded its tasks is its own live run
    assert services.fail_runs_of_worker("train@b", started_before=old) == 0


@pytest.mark.django_db
def test_the_worker_name_is_recorded_on_the_run(configure, shop, monkeypatch):
    items, users = shop
    for _ in shifted(items, users):
        break
    from recommender.training.tasks import train_algorithm

    monkeypatch.setattr("celery.app.task.gethostname", lambda: "train@box")   # the request's node name
    run = run_of("itemknn")
    train_algorithm.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.worker == "train@box"


@pytest.mark.django_db
def test_a_run_failed_as_dead_while_it_trained_does_not_come_back(configure, shop, monkeypatch):
    items, users = shop
    for _ in shifted(items, users):
        break
    run = run_of("itemknn")
    real_write = artifacts.write

    def stalled(*args):   # its heartbeat stalled: another process failed it meanwhile
        TrainingRun.objects.filter(pk=run.pk).update(status=Status.FAILED, error="stopped answering")
        return real_write(*args)

    monkeypatch.setattr(artifacts, "write", stalled)
    done = services.train(run.pk, refresh=False)
    assert done.status == Status.FAILED and not done.is_active
    assert not artifacts.final_path("itemknn", run.pk).exists()


# Skipped rows ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_skipped_rows_are_recorded(configure, shop, monkeypatch, caplog):
    from recommender.training import dataset

    items, users = shop
    for _ in shifted(items, users):
        break
    real = dataset.load_interactions
    messages = []

    def with_skipped(*args, **kwargs):
        data = real(*args, **kwargs)
        data.skipped = 3
        return data

    monkeypatch.setattr(services, "load_interactions", with_skipped)
    original = services._Progress.__call__
    monkeypatch.setattr(services._Progress, "__call__",
                        lambda self, f, m="": messages.append(m) or original(self, f, m))
    run = services.train(run_of("itemknn").pk, refresh=False)
    assert run.metrics["skipped_rows"] == 3
    assert any("3 rows skipped" in m for m in messages)
    assert "3 interaction rows skipped" in caplog.text


# The gate -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_after_a_shift_the_gate_scores_both_versions_on_the_same_new_data(configure, shop):
    items, users = shop
    phases = shifted(items, users)
    next(phases)
    first = services.train(run_of("itemknn").pk, refresh=False)
    next(phases)
    second = services.train(run_of("itemknn").pk, refresh=False)
    m = second.metrics
    # the old rule (this run's NDCG against the number the active version measured on older
    # data) refuses it ...
    assert m["ndcg"] < first.metrics["ndcg"] * (1 - 0.05)
    # ... on the same held-out interactions the new version is the better one
    assert m["gate_active_run"] == first.pk and m["gate_ndcg"] > m["gate_active_ndcg"]
    assert second.is_active and "on the same" in second.gate, second.gate
    # only interactions the active version never trained on are compared
    seen = artifacts.load(first.artifact_path)[3]
    assert 0 < m["gate_interactions"] <= second.n_interactions - seen.nnz


@pytest.mark.django_db
def test_the_gate_refuses_a_worse_version_on_the_same_new_data(configure, shop):
    items, users = shop
    phases = shifted(items, users)
    next(phases)
    next(phases)
    first = services.train(run_of("itemknn").pk, refresh=False)
    Interaction.objects.filter(timestamp__gt=timezone.now() - dt.timedelta(days=6)).update(
        timestamp=timezone.now() - dt.timedelta(days=90))   # the active version is fitted on older data
    buy(users, items, timezone.now() - dt.timedelta(days=1), np.random.default_rng(5),
        groups=([*range(0, 4), *range(8, 12)], [*range(4, 8), *range(12, 16)]))
    configure(ALGORITHMS={"itemknn": {"class": "tests.test_run_expiry.Backwards", "params": {"k": 20}},
                          "plain": {"class": "recommender.engine.neighbors.ItemKNN"}})
    worse = services.train(run_of("itemknn").pk, refresh=False)
    assert worse.status == Status.SUCCEEDED and not worse.is_active
    assert worse.gate.startswith("refused") and "on the same" in worse.gate, worse.gate
    assert services.active_run("itemknn").pk == first.pk


@pytest.mark.django_db
def test_popular_and_trending_are_not_gated(configure, shop):
    items, users = shop
    for _ in shifted(items, users):
        break
    for name in ("popular", "trending"):
        first = services.train(run_of(name).pk, refresh=False)
        TrainingRun.objects.filter(pk=first.pk).update(metrics={**first.metrics, "ndcg": 0.999})
        second = services.train(run_of(name).pk, refresh=False)
        assert second.is_active and "not gated" in second.gate

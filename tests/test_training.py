"""Training runs: statuses, gate, rollback, lock, stale runs, atomic artifacts, served lists."""

import datetime as dt
import io
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from recommender.models import Interaction, ServedList, TrainingRun
from recommender.serving import published
from recommender.training import artifacts, services
from recommender.training.refresh import plan, refresh_chunk

Status = TrainingRun.Status


@pytest.fixture
def history(catalog, alice, bob, django_user_model):
    """Six shoppers, each touching six of eight items over time: enough for a held-out split."""
    from shopdemo.shop.models import Product

    users = [alice, bob] + [django_user_model.objects.create_user(f"s{i}") for i in range(4)]
    extra = [Product.objects.create(stock_code=f"2000{i}", title=f"Extra {i}", category=catalog[0].category,
                                    price=1) for i in range(5)]
    items = catalog[:3] + extra
    t0 = timezone.now() - dt.timedelta(days=30)
    rows = []
    for u, user in enumerate(users):
        for step in range(6):
            item = items[(u + step) % len(items)]
            rows.append(Interaction(user=user, item=item, event="purchase" if step % 2 else "view",
                                    timestamp=t0 + dt.timedelta(hours=u * 10 + step)))
    Interaction.objects.bulk_create(rows)
    return users


@pytest.fixture
def settings_for(tmp_path, settings):
    def apply(**extra):
        settings.RECOMMENDER = {
            **settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "ALGORITHMS": {
                "popular": {"class": "recommender.engine.popular.Popular"},
                "itemknn": {"class": "recommender.engine.neighbors.ItemKNN", "params": {"k": 10}},
                "broken": {"class": "tests.engines.FailingPopular"},
                "slow": {"class": "tests.engines.SlowPopular", "params": {"sleep_seconds": 0}},
            },
            **extra,
        }
    apply()
    return apply


def run_of(algorithm, **fields):
    return TrainingRun.objects.create(algorithm=algorithm, **fields)


@pytest.mark.django_db
def test_enqueue_sends_tasks_after_commit_and_does_not_queue_twice(settings_for, history,
                                                                   django_capture_on_commit_callbacks,
                                                                   monkeypatch):
    sent = []
    monkeypatch.setattr("recommender.training.tasks.train_algorithm.apply_async",
                        lambda args, queue: sent.append((args, queue)))  # returns no task id
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        runs = services.enqueue_training(["popular", "itemknn"], requested_by="alice")
        assert sent == []  # nothing is sent before the commit
    for callback in callbacks:
        callback()
    assert sorted(sent) == sorted(([r.pk], "recommender_training") for r in runs)
    assert {r.status for r in runs} == {Status.QUEUED}
    again = services.enqueue_training(["popular"])
    assert [r.pk for r in again] == [runs[0].pk]  # still queued: not queued twice
    with pytest.raises(services.TrainingError, match="Unknown algorithm 'nope'"):
        services.enqueue_training(["nope"])


@pytest.mark.django_db
def test_run_succeeds_becomes_active_and_publishes_lists(settings_for, history, catalog):
    run = services.train(run_of("itemknn").pk, refresh=False)
    assert run.status == Status.SUCCEEDED and run.is_active and run.progress == 1.0
    assert (run.n_users, run.n_items, run.n_interactions) == (6, 9, 36)
    assert 0 <= run.metrics["ndcg"] <= 1 and run.metrics["train_seconds"] > 0
    assert Path(run.artifact_path).is_dir() and run.artifact_size > 0
    assert run.gate.startswith("accepted")
    run_id, chunks = plan("itemknn")
    assert run_id == run.pk
    written = sum(refresh_chunk("itemknn", run.pk, kind, a, b) for kind, a, b in chunks)
    assert written > 0
    alice_list = published.read("for_user", "itemknn", history[0].pk)
    inactive = catalog[3].pk
    assert alice_list is not None and inactive not in [i for i, *_ in alice_list]
    # items alice bought are never offered to her again
    bought = set(Interaction.objects.filter(user=history[0], event="purchase").values_list("item", flat=True))
    assert not bought & {i for i, *_ in alice_list}
    similar = published.read("similar", "itemknn", catalog[0].pk)
    assert similar and all(because == catalog[0].pk for _i, _s, because in similar)
    assert ServedList.objects.filter(algorithm="itemknn", kind="for_user").count() == 6


@pytest.mark.django_db
def test_training_twice_is_a_no_op(settings_for, history):
    run = services.train(run_of("popular").pk, refresh=False)
    finished = run.finished
    again = services.train(run.pk, refresh=False)
    assert again.finished == finished and TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_failed_training_keeps_the_old_version(settings_for, history, settings):
    good = services.train(run_of("popular").pk, refresh=False)
    settings_for(ALGORITHMS={"popular": {"class": "tests.engines.FailingPopular"}})
    bad = services.train(run_of("popular").pk, refresh=False)
    assert bad.status == Status.FAILED and not bad.is_active
    assert "RuntimeError: the engine broke on purpose" in bad.error
    assert "Traceback" in bad.traceback and "_fit" in bad.traceback
    assert services.active_run("popular").pk == good.pk
    assert list(Path(good.artifact_path).parent.iterdir()) == [Path(good.artifact_path)]


@pytest.mark.django_db
def test_no_interactions_is_a_clear_failure(settings_for, catalog):
    run = services.train(run_of("popular").pk, refresh=False)
    assert run.status == Status.FAILED and "no interactions" in run.error


@pytest.mark.django_db
def test_gate_refuses_a_worse_model_and_rollback_restores(settings_for, history):
    first = services.train(run_of("itemknn").pk, refresh=False)
    TrainingRun.objects.filter(pk=first.pk).update(metrics={**first.metrics, "ndcg": 0.999})
    second = services.train(run_of("itemknn").pk, refresh=False)
    assert second.status == Status.SUCCEEDED and not second.is_active
    assert second.gate.startswith("refused: NDCG@10")
    assert second.refused_by_gate and not first.refused_by_gate  # what the admin's list says
    assert services.active_run("itemknn").pk == first.pk
    settings_for(GATE_MARGIN=1.0)  # a margin of 100% accepts anything
    third = services.train(run_of("itemknn").pk, refresh=False)
    assert third.is_active and not third.refused_by_gate
    services.activate(TrainingRun.objects.get(pk=first.pk), refresh=False)  # roll back
    assert services.active_run("itemknn").pk == first.pk
    assert TrainingRun.objects.filter(algorithm="itemknn", is_active=True).count() == 1
    failed = services.train(run_of("broken").pk, refresh=False)
    with pytest.raises(services.TrainingError, match="did not succeed"):
        services.activate(failed)


@pytest.mark.django_db
def test_one_training_per_algorithm_at_a_time(settings_for, history):
    holder = run_of("slow", status=Status.RUNNING, started=timezone.now(), heartbeat=timezone.now())
    second = services.train(run_of("slow").pk, refresh=False)
    assert second.status == Status.FAILED
    assert f"run #{holder.pk} of slow was already running" in second.error
    # another algorithm is not blocked
    assert services.train(run_of("popular").pk, refresh=False).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_failed_and_releases_the_lock(settings_for, history):
    settings_for(STALE_RUN_SECONDS=60)
    old = timezone.now() - dt.timedelta(minutes=5)
    dead = run_of("slow", status=Status.RUNNING, started=old, heartbeat=old)
    assert services.fail_stale_runs() == 1
    dead.refresh_from_db()
    assert dead.status == Status.FAILED and "stopped answering" in dead.error
    assert services.train(run_of("slow").pk, refresh=False).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_artifact_write_is_atomic(settings_for, history, monkeypatch):
    from recommender.engine.popular import Popular
    from recommender.training.dataset import load_interactions

    data = load_interactions()
    model = Popular().fit(data.matrix)

    def broken_save(path):
        Path(path).mkdir()
        (Path(path) / "half-written").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        artifacts.write("popular", 99, model, data, data.matrix)
    assert not artifacts.final_path("popular", 99).exists()
    assert list(artifacts.final_path("popular", 99).parent.iterdir()) == []


@pytest.mark.django_db
def test_cleanup_keeps_recent_versions(settings_for, history):
    settings_for(KEEP_VERSIONS=1, GATE_MARGIN=1.0)
    runs = [services.train(run_of("popular").pk, refresh=False) for _ in range(3)]
    assert services.cleanup_artifacts() == 1
    paths = [TrainingRun.objects.get(pk=r.pk).artifact_path for r in runs]
    assert paths[0] == "" and all(Path(p).exists() for p in paths[1:])


@pytest.mark.django_db
def test_retrain_check_counts_new_interactions(settings_for, history, catalog, alice, monkeypatch):
    from recommender.training.tasks import retrain_if_new_data

    queued = []
    monkeypatch.setattr(services, "enqueue_training", lambda **kw: queued.append(kw) or [])
    settings_for(RETRAIN_AFTER_INTERACTIONS=3)
    services.train(run_of("popular").pk, refresh=False)
    assert services.new_interactions_since_last_run() == 0
    retrain_if_new_data()
    assert queued == []
    for _ in range(3):
        Interaction.objects.create(user=alice, item=catalog[0], event="view")
    retrain_if_new_data()
    assert queued == [{"requested_by": "new data"}]


@pytest.mark.django_db
def test_evaluate_reports_metrics_without_activating(settings_for, history):
    from recommender.training.tasks import evaluate

    table = evaluate(["popular", "itemknn"], k=5)
    assert [row["algorithm"] for row in table] == ["popular", "itemknn"]
    assert all(0 <= row["ndcg"] <= 1 and row["fit_seconds"] >= 0 for row in table)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_deep_model_reports_each_epoch(settings_for, history,
                                                                             monkeypatch):
    from recommender.training import services as svc

    settings_for(ALGORITHMS={"deep": {"class": "recommender.engine.deep.TwoTower", "params": {
        "embedding_dim": 8, "hidden_dim": 8, "content_dim": 4, "epochs": 3, "batch_size": 4,
        "patience": 3, "validation_fraction": 0.2}}})
    messages = []
    original = svc._Progress.__call__
    def record(self, fraction, message=""):
        messages.append(message)
        return original(self, fraction, message)

    monkeypatch.setattr(svc._Progress, "__call__", record)
    run = services.train(run_of("deep").pk, refresh=False)
    assert run.status == Status.SUCCEEDED, run.error
    assert any(m.startswith("epoch 1/") for m in messages)  # live progress per epoch
    assert (Path(run.artifact_path) / "model").is_dir()


@pytest.mark.django_db(transaction=True)
def test_heartbeat_and_progress_survive_a_failed_write(settings_for, monkeypatch, caplog):
    """A locked SQLite file (seen in CI) must not stop the heartbeat thread or the training."""
    from django.db import OperationalError
    from django.db.models import QuerySet

    settings_for(STALE_RUN_SECONDS=2)   # a beat every 0.5 s
    run = run_of("slow", status=Status.RUNNING, started=timezone.now(),
                 heartbeat=timezone.now() - dt.timedelta(minutes=5))
    real_update, failures = QuerySet.update, []

    def update(self, **fields):
        if self.model is TrainingRun and len(failures) < 2:
            failures.append(fields)
            raise OperationalError("database table is locked")
        return real_update(self, **fields)

    monkeypatch.setattr(QuerySet, "update", update)
    with services._Progress(run.pk) as progress:
        progress(0.3, "epoch 1/3")                  # fails: logged, training goes on
        deadline = time.time() + 5
        while time.time() < deadline:
            run.refresh_from_db()
            if run.heartbeat > timezone.now() - dt.timedelta(seconds=30):
                break
            time.sleep(0.1)
        progress(0.6, "epoch 2/3")
    run.refresh_from_db()
    assert len(failures) == 2                       # the progress call and the first beat
    assert run.heartbeat > timezone.now() - dt.timedelta(seconds=30)   # a later beat wrote
    assert (run.progress, run.progress_message) == (0.6, "epoch 2/3")
    assert "progress not saved" in caplog.text


@pytest.mark.django_db
def test_a_failed_progress_write_inside_a_transaction_is_raised(settings_for, monkeypatch):
    """Swallowing it would leave the caller's transaction broken without telling it."""
    from django.db import OperationalError, transaction
    from django.db.models import QuerySet

    run = run_of("slow", status=Status.RUNNING, started=timezone.now(), heartbeat=timezone.now())

    def update(self, **fields):
        raise OperationalError("database table is locked")

    monkeypatch.setattr(QuerySet, "update", update)
    progress = services._Progress(run.pk)
    with pytest.raises(OperationalError), transaction.atomic():
        progress(0.3, "epoch 1/3")


@pytest.mark.django_db
def test_sync_command_writes_each_run_as_it_trains(settings_for, history, monkeypatch):
    """``recommender_train --sync`` leaves no run queued while another trains: a queued row
    older than QUEUED_RUN_SECONDS is re-sent to the workers by fail_stale_runs."""
    queued_when_training = []
    train = services.train

    def watching(run_id, **kwargs):
        queued_when_training.append(sorted(TrainingRun.objects.filter(status=Status.QUEUED)
                                           .values_list("algorithm", flat=True)))
        return train(run_id, **kwargs)

    monkeypatch.setattr(services, "train", watching)
    call_command("recommender_train", "--sync", "--no-progress", "--algorithm", "popular",
                 "--algorithm", "itemknn", stdout=io.StringIO())
    assert queued_when_training == [["popular"], ["itemknn"]]
    assert set(TrainingRun.objects.values_list("algorithm", "status")) == {
        ("popular", Status.SUCCEEDED), ("itemknn", Status.SUCCEEDED)}


@pytest.mark.django_db
def test_sync_command_checks_every_name_before_training(settings_for, history):
    with pytest.raises(CommandError, match="nope"):
        call_command("recommender_train", "--sync", "--no-progress", "--algorithm", "popular",
                     "--algorithm", "nope", stdout=io.StringIO())
    assert not TrainingRun.objects.exists()


def test_every_item_of_a_user_list_gets_its_reason():
    # a category page's block is filled from far down the list: items past the tenth need
    # a "because" too
    import numpy as np
    import scipy.sparse as sp

    from recommender.engine import ItemKNN
    from recommender.training.refresh import _user_list

    rng = np.random.default_rng(0)
    dense = (rng.random((200, 40)) < 0.3).astype(np.float32)
    history = [0, 1, 2, 3]
    dense[0] = 0
    dense[0, history] = 1.0
    X = sp.csr_matrix(dense)
    model = ItemKNN().fit(X)
    idx, scores = model.recommend(0, X[0], n=30)
    item_ids = np.arange(1000, 1040)
    items = _user_list(model, 0, X[0], idx, scores, set(), item_ids, 25)
    assert len(items) == 25
    assert all(because in {1000 + h for h in history} for _pk, _score, because in items)
    assert len({because for *_rest, because in items}) > 1  # varied across the list

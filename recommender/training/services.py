"""Orchestration: build data, fit, evaluate, gate, save, record the run, activate.

Tasks, admin actions, commands and API views only call into this module.
"""

import datetime as dt
import logging
import threading
import time
import traceback
from datetime import timedelta

import numpy as np
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from recommender.conf import rec_settings
from recommender.models import Interaction, TrainingRun
from recommender.training import artifacts, dispatch
from recommender.training.dataset import load_interactions

log = logging.getLogger("recommender")
Status = TrainingRun.Status


class TrainingError(Exception):
    """A training request that cannot be carried out (unknown algorithm, not activatable...)."""


def algorithm_spec(name):
    spec = (rec_settings.ALGORITHMS or {}).get(name)
    if spec is None:
        known = ", ".join(sorted(rec_settings.ALGORITHMS or {}))
        raise TrainingError(_("Unknown algorithm %(name)s; configured: %(known)s.")
                            % {"name": repr(name), "known": known})
    return spec.get("class", name), dict(spec.get("params") or {})


# Requests -----------------------------------------------------------------------------

def enqueue_training(algorithms=None, requested_by=""):
    """Record a queued run per algorithm and send the tasks after the commit.

    An algorithm that already has a queued or running run is not queued again:
    its pending run is returned instead.
    """
    names = list(dict.fromkeys(algorithms or rec_settings.TRAIN_ALGORITHMS))
    for name in names:
        algorithm_spec(name)
    runs, new = [], []
    for name in names:
        pending = TrainingRun.objects.filter(algorithm=name, status__in=[Status.QUEUED, Status.RUNNING]).first()
        if pending is not None:
            runs.append(pending)
            continue
        _cls, params = algorithm_spec(name)
        run = TrainingRun.objects.create(algorithm=name, params=params, requested_by=requested_by)
        runs.append(run)
        new.append(run)
    for run in new:
        transaction.on_commit(lambda pk=run.pk: _send(pk))
    return runs


def _send(run_id):
    result = dispatch.train(run_id)
    if getattr(result, "id", None):
        TrainingRun.objects.filter(pk=run_id).update(task_id=result.id)


def active_run(algorithm):
    return TrainingRun.objects.filter(algorithm=algorithm, is_active=True).first()


# Training -----------------------------------------------------------------------------

class _Progress:
    """Writes progress and a heartbeat to the run row; a thread keeps the heartbeat fresh."""

    def __init__(self, run_id):
        self.run_id = run_id
        self.interval = max(0.5, min(10.0, rec_settings.STALE_RUN_SECONDS / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self):
        from django.db import connection

        while not self._stop.wait(self.interval):
            self._write(heartbeat=timezone.now())
        connection.close()

    def __call__(self, fraction, message=""):
        self._write(progress=round(min(max(fraction, 0.0), 1.0), 4), progress_message=message[:200],
                    heartbeat=timezone.now())

    def _write(self, **fields):
        """Update the running row; a failed write (a locked SQLite file, a dropped
        connection) is logged and skipped: the next beat or progress call writes again,
        and neither the heartbeat thread nor the training stops for it."""
        from django.db import connection

        try:
            TrainingRun.objects.filter(pk=self.run_id, status=Status.RUNNING).update(**fields)
        except DatabaseError as exc:
            if connection.in_atomic_block:
                raise  # the caller's transaction is broken: it must not carry on unaware
            connection.close_if_unusable_or_obsolete()  # a dropped connection: a new one next time
            log.warning("Training run #%s: progress not saved (%s); retrying at the next update.",
                        self.run_id, exc)


def fail_stale_runs():
    """Runs whose worker died: queued/running with no heartbeat for STALE_RUN_SECONDS."""
    cutoff = timezone.now() - timedelta(seconds=rec_settings.STALE_RUN_SECONDS)
    stale = TrainingRun.objects.filter(status=Status.RUNNING, heartbeat__lt=cutoff)
    return stale.update(status=Status.FAILED, finished=timezone.now(),
                        error="The worker stopped answering (killed or lost) during training.")


def _claim(run):
    """Move the run to running; False if another run of the algorithm holds the lock."""
    fail_stale_runs()
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
                status=Status.RUNNING, started=now, heartbeat=now, progress=0.0,
                progress_message="starting", error="", traceback="")
    except IntegrityError:
        holder = TrainingRun.objects.filter(algorithm=run.algorithm, status=Status.RUNNING).first()
        TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
            status=Status.FAILED, finished=now,
            error=f"Not run: run #{holder.pk if holder else '?'} of {run.algorithm} was already running.")
        return False
    return bool(updated)


def item_features(item_ids):
    """Texts of the configured item fields, aligned with ``item_ids``."""
    model = rec_settings.item_model()
    fields = {}
    for role in ("title", "category"):
        name = rec_settings.item_field(role)
        if name:
            field = model._meta.get_field(name)
            if field.is_relation:
                related = field.related_model
                name = f"{name}__name" if any(f.name == "name" for f in related._meta.fields) else f"{name}_id"
            fields[role] = name
    for i, name in enumerate(rec_settings.item_field("text") or []):
        fields[f"text{i}"] = name
    if not fields:
        return None
    rows = dict((pk, values) for pk, *values in model._default_manager.filter(pk__in=list(map(int, item_ids)))
                .values_list("pk", *fields.values()).iterator(chunk_size=10_000))
    columns = {role: [] for role in fields}
    for pk in item_ids:
        values = rows.get(int(pk), [""] * len(fields))
        for role, value in zip(fields, values, strict=True):
            columns[role].append("" if value is None else str(value))
    return columns


def train(run_id, refresh=True):
    """Train one queued run; safe to call twice (a finished run is left as it is).

    An accepted version becomes active and, with ``refresh``, its served lists are
    refreshed by the workers.
    """
    from recommender.engine import build_engine
    from recommender.engine.evaluation import evaluate_engine, split_matrix

    run = TrainingRun.objects.get(pk=run_id)
    if run.status in (Status.SUCCEEDED, Status.FAILED):
        return run
    if not _claim(run):
        return TrainingRun.objects.get(pk=run_id)
    cls_path, params = algorithm_spec(run.algorithm)
    params = {**params, **(run.params or {})}
    started = time.perf_counter()
    with _Progress(run.pk) as progress:
        try:
            progress(0.02, "loading interactions")
            data = load_interactions(half_life_days=rec_settings.HALF_LIFE_DAYS,
                                     log_damping=rec_settings.LOG_DAMPING, with_timestamps=True)
            if data.n_interactions == 0:
                raise TrainingError("There are no interactions to train on.")
            TrainingRun.objects.filter(pk=run.pk).update(
                n_users=len(data.user_ids), n_items=len(data.item_ids), n_interactions=data.n_interactions,
                data_cutoff=dt.datetime.fromtimestamp(data.cutoff, tz=dt.UTC))
            features = item_features(data.item_ids)
            progress(0.1, "evaluating on held-out interactions")
            train_x, test_x = split_matrix(data.matrix, rec_settings.EVALUATION_FRACTION,
                                           timestamps=data.timestamps)
            train_t = _pattern_like(data.timestamps, train_x)

            def epochs(share, start):
                def callback(epoch, total, logs=None):  # epoch counts from 1 (engine contract)
                    progress(start + share * epoch / max(total, 1), f"epoch {epoch}/{total}")
                return callback

            model = build_engine(cls_path, **params)
            model.fit(train_x, item_features=features, timestamps=train_t, reference_time=data.cutoff,
                      progress_callback=epochs(0.35, 0.1))
            metrics = evaluate_engine(model, train_x, test_x, k=10) if test_x.nnz else {}
            metrics = {k: float(v) for k, v in metrics.items()}
            progress(0.5, "training on all interactions")
            model = build_engine(cls_path, **params)
            model.fit(data.matrix, item_features=features, timestamps=data.timestamps,
                      reference_time=data.cutoff, progress_callback=epochs(0.4, 0.5))
            progress(0.92, "saving")
            path, size = artifacts.write(run.algorithm, run.pk, model, data, data.matrix)
        except Exception as exc:
            TrainingRun.objects.filter(pk=run.pk).update(
                status=Status.FAILED, finished=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:5000],
                traceback=traceback.format_exc()[-20000:], progress_message="failed")
            log.exception("training run %s (%s) failed", run.pk, run.algorithm)
            return TrainingRun.objects.get(pk=run.pk)
    seconds = time.perf_counter() - started
    metrics["train_seconds"] = round(seconds, 3)
    # Success, the gate's decision and the activation commit together: nobody sees a
    # succeeded run whose fate is not decided yet.
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.SUCCEEDED, finished=timezone.now(), progress=1.0, progress_message="done",
            metrics=metrics, artifact_path=path, artifact_size=size)
        run = TrainingRun.objects.get(pk=run.pk)
        accepted, reason = gate(run)
        TrainingRun.objects.filter(pk=run.pk).update(gate=reason)
        if accepted:
            activate(run, refresh=refresh)
    return TrainingRun.objects.get(pk=run.pk)


def _pattern_like(T, X):
    """The timestamps of ``T`` on the non-zero pattern of ``X`` (a subset of T's)."""
    if T is None:
        return None
    mask = X.copy()
    mask.data = np.ones_like(mask.data)
    out = T.multiply(mask).tocsr()
    out.sort_indices()
    return out


def gate(run):
    """Accept a new version unless its NDCG@10 is worse than the active one's by more than GATE_MARGIN."""
    current = active_run(run.algorithm)
    new = run.metrics.get("ndcg")
    if current is None or current.pk == run.pk:
        return True, "accepted: no active version"
    old = (current.metrics or {}).get("ndcg")
    if new is None or old is None:
        return True, "accepted: no held-out NDCG to compare"
    floor = old * (1 - rec_settings.GATE_MARGIN)
    if new >= floor:
        return True, f"accepted: NDCG@10 {new:.4f} vs active #{current.pk} {old:.4f}"
    return False, (f"refused: NDCG@10 {new:.4f} is below {floor:.4f} "
                   f"(active #{current.pk} {old:.4f} minus {rec_settings.GATE_MARGIN:.0%})")


def activate(run, refresh=True):
    """Make a succeeded run the active version of its algorithm (also used to roll back)."""
    if run.status != Status.SUCCEEDED or not run.artifact_path:
        raise TrainingError(_("Run #%(pk)s did not succeed; only succeeded runs can be activated.")
                            % {"pk": run.pk})
    from pathlib import Path

    if not Path(run.artifact_path).exists():
        raise TrainingError(_("The artifact of run #%(pk)s is gone (%(path)s).")
                            % {"pk": run.pk, "path": run.artifact_path})
    with transaction.atomic():
        TrainingRun.objects.select_for_update().filter(algorithm=run.algorithm, is_active=True).exclude(
            pk=run.pk).update(is_active=False)
        TrainingRun.objects.filter(pk=run.pk).update(is_active=True)
        if refresh:
            transaction.on_commit(lambda: dispatch.refresh_lists(run.algorithm))
    run.is_active = True
    return run


def evaluate(algorithms=None, k=10):
    """Offline metrics of algorithms on the current data (latest share of each user held out).

    Nothing is saved or activated; returns one row of metrics per algorithm.
    """
    from recommender.engine import build_engine
    from recommender.engine.evaluation import evaluate_engine, split_matrix

    data = load_interactions(half_life_days=rec_settings.HALF_LIFE_DAYS,
                             log_damping=rec_settings.LOG_DAMPING, with_timestamps=True)
    if data.n_interactions == 0:
        raise TrainingError("There are no interactions to evaluate on.")
    features = item_features(data.item_ids)
    train_x, test_x = split_matrix(data.matrix, rec_settings.EVALUATION_FRACTION, timestamps=data.timestamps)
    train_t = _pattern_like(data.timestamps, train_x)
    table = []
    for name in algorithms or rec_settings.TRAIN_ALGORITHMS:
        cls_path, params = algorithm_spec(name)
        started = time.perf_counter()
        model = build_engine(cls_path, **params).fit(train_x, item_features=features, timestamps=train_t,
                                                     reference_time=data.cutoff)
        seconds = time.perf_counter() - started
        metrics = evaluate_engine(model, train_x, test_x, k=k)
        table.append({"algorithm": name, **{key: float(v) for key, v in metrics.items()},
                      "fit_seconds": round(seconds, 3)})
    return table


def new_interactions_since_last_run():
    last = (TrainingRun.objects.filter(status=Status.SUCCEEDED, data_cutoff__isnull=False)
            .order_by("-data_cutoff").values_list("data_cutoff", flat=True).first())
    qs = Interaction.objects.filter(user__isnull=False)
    return qs.filter(timestamp__gt=last).count() if last else qs.count()


def cleanup_artifacts():
    """Delete artifacts of old versions (beyond KEEP_VERSIONS), of failed runs and stale temporaries."""
    removed = 0
    keep = rec_settings.KEEP_VERSIONS
    for algorithm in TrainingRun.objects.values_list("algorithm", flat=True).distinct():
        done = TrainingRun.objects.filter(algorithm=algorithm, status=Status.SUCCEEDED, is_active=False) \
            .exclude(artifact_path="").order_by("-finished")
        for run in done[keep:]:
            artifacts.remove(run.artifact_path)
            TrainingRun.objects.filter(pk=run.pk).update(artifact_path="", artifact_size=None)
            removed += 1
    for path in artifacts.stale_temporaries():
        artifacts.remove(path)
        removed += 1
    return removed

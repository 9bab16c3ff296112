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
import scipy.sparse as sp
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from recommender.conf import rec_settings
from recommender.models import Interaction, TrainingRun
from recommender.training import artifacts, dispatch
from recommender.training.dataset import engine_inputs, load_interactions

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
    its pending run is returned instead. Dead runs and queued runs whose task never
    started are dealt with first (:func:`fail_stale_runs`), so they never block a request.
    """
    names = list(dict.fromkeys(algorithms or rec_settings.TRAIN_ALGORITHMS))
    for name in names:
        algorithm_spec(name)
    fail_stale_runs()
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
    """Send the run's task. A send that fails (broker down, no Celery app configured in this
    process) is recorded on the queued run, which :func:`fail_stale_runs` sends again after
    QUEUED_RUN_SECONDS; the request that queued it does not fail."""
    try:
        result = dispatch.train(run_id)
    except Exception as exc:
        log.exception("Training run #%s: sending its task failed; it is sent again later.", run_id)
        TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
            heartbeat=timezone.now(), progress_message="not sent: the task broker did not answer",
            error=(f"Sending the task failed ({type(exc).__name__}: {exc}); it is sent again "
                   f"{rec_settings.QUEUED_RUN_SECONDS} s later.")[:5000])
        return None
    if getattr(result, "id", None):
        TrainingRun.objects.filter(pk=run_id).update(task_id=result.id)
    return result


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
    """Expire what dead workers and lost messages left behind; returns the number of runs failed.

    - A running run with no heartbeat for STALE_RUN_SECONDS is failed (its worker died),
      which releases its training lock; its temporary artifact directory is removed.
    - A queued run whose task has not started QUEUED_RUN_SECONDS after it was last sent is
      sent again (heartbeat holds the time of the last send of a queued run).
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=rec_settings.STALE_RUN_SECONDS)
    failed = _fail(TrainingRun.objects.filter(status=Status.RUNNING, heartbeat__lt=cutoff),
                   "The worker stopped answering (killed or lost) during training.")
    _resend_queued(now)
    return failed


def fail_runs_of_worker(worker, started_before):
    """Fail the runs a (re)starting worker had claimed before ``started_before``: it runs none of them."""
    runs = TrainingRun.objects.filter(status=Status.RUNNING, worker=worker, started__lt=started_before)
    return _fail(runs, f"The worker {worker} restarted during training (it was killed or lost).")


def _fail(runs, error):
    dead = list(runs.values_list("pk", "algorithm"))
    if not dead:
        return 0
    failed = runs.filter(pk__in=[pk for pk, _a in dead]).update(
        status=Status.FAILED, finished=timezone.now(), error=error, progress_message="failed")
    for pk, algorithm in dead:
        for path in artifacts.temporaries(algorithm, pk):
            artifacts.remove(path)
    if failed:
        log.warning("Failed %d training run(s) whose worker is gone: %s", failed, error)
    return failed


def _resend_queued(now):
    cutoff = now - timedelta(seconds=rec_settings.QUEUED_RUN_SECONDS)
    late = Q(heartbeat__lt=cutoff) | Q(heartbeat__isnull=True, created__lt=cutoff)
    for pk in TrainingRun.objects.filter(late, status=Status.QUEUED).values_list("pk", flat=True):
        # The conditional update makes one process the sender, however many check at once.
        if TrainingRun.objects.filter(late, pk=pk, status=Status.QUEUED).update(
                heartbeat=now, progress_message="sent again: its task had not started"):
            log.warning("Training run #%s: not started %ss after it was sent; sending it again.",
                        pk, rec_settings.QUEUED_RUN_SECONDS)
            transaction.on_commit(lambda pk=pk: _send(pk))


def _claim(run, worker=""):
    """Move the run to running; False if another run of the algorithm holds the lock."""
    fail_stale_runs()
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
                status=Status.RUNNING, started=now, heartbeat=now, progress=0.0, worker=worker[:200],
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


def train(run_id, refresh=True, worker=""):
    """Train one queued run; safe to call twice (a finished run is left as it is).

    An accepted version becomes active and, with ``refresh``, its served lists are
    refreshed by the workers. ``worker`` is the Celery node name of the caller, recorded
    so that the worker's restart fails the run at once.
    """
    from recommender.engine import build_engine
    from recommender.engine.evaluation import evaluate_engine, split_matrix

    run = TrainingRun.objects.get(pk=run_id)
    if run.status in (Status.SUCCEEDED, Status.FAILED):
        return run
    if not _claim(run, worker):
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
            skipped = int(getattr(data, "skipped", 0) or 0)
            if skipped:
                log.warning("Training run #%s (%s): %d interaction rows skipped (non-finite or absurd weights).",
                            run.pk, run.algorithm, skipped)
            TrainingRun.objects.filter(pk=run.pk).update(
                n_users=len(data.user_ids), n_items=len(data.item_ids), n_interactions=data.n_interactions,
                data_cutoff=dt.datetime.fromtimestamp(data.cutoff, tz=dt.UTC))
            features = item_features(data.item_ids)
            progress(0.1, "evaluating on held-out interactions"
                     + (f" ({skipped} rows skipped: non-finite or absurd weights)" if skipped else ""))
            train_x, test_x = split_matrix(data.matrix, rec_settings.EVALUATION_FRACTION,
                                           timestamps=data.timestamps)
            train_t = _pattern_like(data.timestamps, train_x)

            def epochs(share, start):
                def callback(epoch, total, logs=None):  # epoch counts from 1 (engine contract)
                    progress(start + share * epoch / max(total, 1), f"epoch {epoch}/{total}")
                return callback

            model = build_engine(cls_path, **params)
            extras = engine_inputs(model, data)  # baskets / views for the shelf engines
            model.fit(train_x, item_features=features, timestamps=train_t, reference_time=data.cutoff,
                      progress_callback=epochs(0.35, 0.1), **extras)
            metrics = evaluate_engine(model, train_x, test_x, k=10) if test_x.nnz else {}
            metrics = {k: float(v) for k, v in metrics.items()}
            metrics["skipped_rows"] = skipped
            if test_x.nnz and not _exempt_from_gate(run.algorithm):
                progress(0.47, "scoring the active version on the same held-out interactions")
                metrics.update(compare_with_active(run.algorithm, model, data, train_x, test_x, k=10))
            progress(0.5, "training on all interactions")
            model = build_engine(cls_path, **_final_params(model, params))
            model.fit(data.matrix, item_features=features, timestamps=data.timestamps,
                      reference_time=data.cutoff, progress_callback=epochs(0.4, 0.5), **extras)
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
        done = TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(
            status=Status.SUCCEEDED, finished=timezone.now(), progress=1.0, progress_message="done",
            metrics=metrics, artifact_path=path, artifact_size=size)
        if not done:  # failed meanwhile as dead (a heartbeat that stalled): the lock was released
            artifacts.remove(path)
            log.warning("Training run #%s finished after it was failed as dead; its artifact is discarded.",
                        run.pk)
            return TrainingRun.objects.get(pk=run.pk)
        run = TrainingRun.objects.get(pk=run.pk)
        accepted, reason = gate(run)
        TrainingRun.objects.filter(pk=run.pk).update(gate=reason[:300])
        if accepted:
            activate(run, refresh=refresh)
    return TrainingRun.objects.get(pk=run.pk)


def _final_params(model, params):
    """The parameters of the all-data fit that follows the evaluation fit ``model``.

    A :class:`~recommender.engine.hybrid.Hybrid` whose parameters leave ``weights`` open
    tunes them in ``fit`` by fitting every component on a validation split. The all-data fit
    takes the weights, and the default components when ``components`` is open too, that the
    evaluation fit chose instead of tuning again: the blend that was measured and gated is
    the one saved, and a component weighed 0 is not fitted. Other engines keep ``params``.
    """
    from recommender.engine.hybrid import Hybrid

    if not isinstance(model, Hybrid) or model.weights is not None:
        return params
    chosen = {**params, "weights": [float(w) for w in model.weights_]}
    if model.components is None:
        chosen["components"] = list(model.component_names_)
    return chosen


def _pattern_like(T, X):
    """The timestamps of ``T`` on the non-zero pattern of ``X`` (a subset of T's)."""
    if T is None:
        return None
    mask = X.copy()
    mask.data = np.ones_like(mask.data)
    out = T.multiply(mask).tocsr()
    out.sort_indices()
    return out


def _exempt_from_gate(algorithm):
    return algorithm in (rec_settings.POPULAR_ALGORITHM, rec_settings.TRENDING_ALGORITHM)


def compare_with_active(algorithm, model, data, train_x, test_x, k=10):
    """NDCG@k of the candidate and of the active version on the same held-out interactions.

    ``model`` is the candidate fitted on ``train_x``. The active version is loaded from its
    artifact and asked for the same users' top ``k`` from the same training rows
    (``train_x``, mapped onto the items it knows; a user it does not know is a new user to
    it). Held-out cells present in the active version's own training matrix are left out
    for both models: the active version was fitted on all data up to its cutoff and would
    otherwise be scored on interactions it learned. Returns the ``gate_*`` metrics, or {}
    when there is no active version, its artifact does not load or no held-out cell is
    new to it.
    """
    from recommender.engine.evaluation import evaluate_engine, ranking_metrics

    current = active_run(algorithm)
    if current is None or not current.artifact_path:
        return {}
    try:
        active, user_ids, item_ids, seen = artifacts.load(current.artifact_path)
    except Exception as exc:  # a missing or unloadable artifact: the gate falls back
        log.warning("Gate of %s: the active version #%s did not load (%s).", algorithm, current.pk, exc)
        return {}
    col = _positions(item_ids, data.item_ids)  # candidate column -> active column or -1
    row = _positions(user_ids, data.user_ids)
    test = test_x.tocoo()
    r, c = row[test.row], col[test.col]
    known = (r >= 0) & (c >= 0)
    learned = np.zeros(test.nnz, dtype=bool)
    learned[known] = np.asarray(seen[r[known], c[known]]).ravel() != 0
    fresh = sp.csr_matrix((test.data[~learned], (test.row[~learned], test.col[~learned])),
                          shape=test_x.shape, dtype=np.float32)
    users = np.flatnonzero(np.diff(fresh.indptr) > 0)
    if not len(users):
        return {}
    candidate = evaluate_engine(model, train_x, fresh, k=k, users=users)
    history = train_x[users].tocoo()
    mapped = col[history.col] >= 0
    rows = sp.csr_matrix((history.data[mapped], (history.row[mapped], col[history.col[mapped]])),
                         shape=(len(users), active.n_items_), dtype=np.float32)
    indices = np.where(row[users] >= 0, row[users], active.n_users_)
    recs, _scores = active.recommend_batch(indices, rows, n=k, filter_seen=True)
    back = np.append(_positions(data.item_ids, item_ids), -1)  # active column -> candidate column
    scored = ranking_metrics(back[recs], fresh[users], k)
    return {"gate_active_run": current.pk, "gate_ndcg": float(candidate["ndcg"]),
            "gate_active_ndcg": float(scored["ndcg"]), "gate_users": int(len(users)),
            "gate_interactions": int(fresh.nnz)}


def _positions(keys, of):
    """Index of each of ``of`` in the sorted array ``keys`` (-1 when absent)."""
    keys, of = np.asarray(keys), np.asarray(of)
    if not len(keys):
        return np.full(len(of), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, of), len(keys) - 1)
    return np.where(keys[pos] == of, pos, -1).astype(np.int64)


def gate(run):
    """Accept a new version unless its NDCG@10 is worse than the active one's by more than GATE_MARGIN.

    Both are measured on the same held-out interactions (:func:`compare_with_active`). When
    none of the held-out interactions is new to the active version (no new data since it was
    trained), its own held-out NDCG, measured on that same data, is compared. The popular
    and trending lists are recomputed statistics of the latest data: always accepted.
    """
    if _exempt_from_gate(run.algorithm):
        return True, "accepted: popular and trending are recomputed statistics, not gated"
    current = active_run(run.algorithm)
    if current is None or current.pk == run.pk:
        return True, "accepted: no active version"
    metrics = run.metrics or {}
    margin = rec_settings.GATE_MARGIN
    if metrics.get("gate_active_run") == current.pk:
        new, old = metrics["gate_ndcg"], metrics["gate_active_ndcg"]
        basis = (f"on the same {int(metrics['gate_interactions'])} held-out interactions of "
                 f"{int(metrics['gate_users'])} users")
    else:
        new, old = metrics.get("ndcg"), (current.metrics or {}).get("ndcg")
        basis = "each on its held-out data (no held-out interaction new to the active version)"
        if new is None or old is None:
            return True, "accepted: no held-out NDCG to compare"
    floor = old * (1 - margin)
    if new >= floor:
        return True, f"accepted: NDCG@10 {new:.4f} vs active #{current.pk} {old:.4f}, {basis}"
    return False, (f"{TrainingRun.GATE_REFUSED} NDCG@10 {new:.4f} is below {floor:.4f} "
                   f"(active #{current.pk} {old:.4f} minus {margin:.0%}), {basis}")


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
        model = build_engine(cls_path, **params)
        model.fit(train_x, item_features=features, timestamps=train_t, reference_time=data.cutoff,
                  **engine_inputs(model, data))
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
    """Delete artifacts of old versions (beyond KEEP_VERSIONS) and the temporaries of runs not running."""
    removed = 0
    keep = rec_settings.KEEP_VERSIONS
    for algorithm in TrainingRun.objects.values_list("algorithm", flat=True).distinct():
        done = TrainingRun.objects.filter(algorithm=algorithm, status=Status.SUCCEEDED, is_active=False) \
            .exclude(artifact_path="").order_by("-finished")
        for run in done[keep:]:
            artifacts.remove(run.artifact_path)
            TrainingRun.objects.filter(pk=run.pk).update(artifact_path="", artifact_size=None)
            removed += 1
    running = set(TrainingRun.objects.filter(status=Status.RUNNING).values_list("pk", flat=True))
    for path in artifacts.stale_temporaries(running=running):
        artifacts.remove(path)
        removed += 1
    return removed

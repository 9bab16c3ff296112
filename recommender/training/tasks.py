"""Celery tasks of the recommender app (``@shared_task``: the site owns the Celery app).

Tasks take ids and names, are sent after the database commit by the services,
and are safe to run twice. Training goes to TRAINING_QUEUE, list refreshes to
REFRESH_QUEUE, so a long training never delays a refresh.
"""

import datetime as dt
import logging
import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from recommender.conf import rec_settings
from recommender.models import Interaction

__all__ = [
    "train_algorithm", "train_all", "retrain_if_new_data", "evaluate", "refresh_lists", "refresh_chunk",
    "refresh_all", "refresh_user", "fail_stale_runs", "cleanup_artifacts", "purge_anonymous",
]


#: Before any task of this process runs (tasks are registered by importing this module).
_LOADED_AT = time.time()


@shared_task(name="recommender.train_algorithm", acks_late=True, reject_on_worker_lost=True, bind=True)
def train_algorithm(self, run_id):
    """Train one recorded run (see ``services.enqueue_training``); returns its final status."""
    from recommender.training import services

    return services.train(run_id, worker=self.request.hostname or "").status


@worker_ready.connect(dispatch_uid="recommender.fail_runs_of_restarted_worker")
def fail_runs_of_restarted_worker(sender=None, **kwargs):
    """A worker that starts runs none of the runs its node name claimed before: fail them now
    instead of waiting STALE_RUN_SECONDS for their heartbeat to expire."""
    hostname = getattr(sender, "hostname", "")
    if not hostname:
        return
    from django.db import connections

    from recommender.training import services

    try:
        loaded = dt.datetime.fromtimestamp(_LOADED_AT, tz=dt.UTC)
        services.fail_runs_of_worker(hostname, loaded if settings.USE_TZ else timezone.make_naive(loaded))
    except Exception:  # the database may be unreachable at start-up: fail_stale_runs catches up
        logging.getLogger("recommender").exception("Checking the runs of %s at start-up failed.", hostname)
    finally:
        connections.close_all()  # the main process of a prefork worker runs no tasks


@shared_task(name="recommender.train_all", ignore_result=True)
def train_all():
    """Queue a run of every algorithm in TRAIN_ALGORITHMS; workers train them in parallel."""
    from recommender.training import services

    return [run.pk for run in services.enqueue_training(requested_by="schedule")]


@shared_task(name="recommender.retrain_if_new_data", ignore_result=True)
def retrain_if_new_data():
    """Train all when RETRAIN_AFTER_INTERACTIONS new interactions arrived since the last run."""
    from recommender.models import TrainingRun
    from recommender.training import services

    threshold = rec_settings.RETRAIN_AFTER_INTERACTIONS
    if threshold is None:
        return None
    services.fail_stale_runs()  # dead runs stop counting as busy; unstarted queued runs are sent again
    busy = TrainingRun.objects.filter(status__in=["queued", "running"]).exists()
    if busy or services.new_interactions_since_last_run() < threshold:
        return []
    return [run.pk for run in services.enqueue_training(requested_by="new data")]


@shared_task(name="recommender.evaluate")
def evaluate(algorithms=None, k=10):
    """Offline metrics of the algorithms on the current data; logged and returned, nothing activated."""
    import logging

    from recommender.training import services

    table = services.evaluate(algorithms, k=k)
    for row in table:
        logging.getLogger("recommender").info("evaluation %s", row)
    return table


@shared_task(name="recommender.refresh_lists", ignore_result=True)
def refresh_lists(algorithm):
    """Split the refresh of an algorithm's served lists into chunk tasks."""
    from recommender.training import refresh

    run_id, chunks = refresh.plan(algorithm)
    for kind, start, stop in chunks:
        refresh_chunk.apply_async(args=[algorithm, run_id, str(kind), start, stop],
                                  queue=rec_settings.REFRESH_QUEUE)
    return len(chunks)


@shared_task(name="recommender.refresh_chunk", acks_late=True, reject_on_worker_lost=True)
def refresh_chunk(algorithm, run_id, kind, start, stop):
    from recommender.training import refresh

    return refresh.refresh_chunk(algorithm, run_id, kind, start, stop)


@shared_task(name="recommender.refresh_user", ignore_result=True)
def refresh_user(user_pk):
    """Re-score a logged-in user's "recommended for you" lists from their current history
    (queued after their events by :mod:`recommender.training.follow`)."""
    from recommender.training import follow

    return follow.run(user_pk)


@shared_task(name="recommender.refresh_all", ignore_result=True)
def refresh_all():
    from recommender.models import TrainingRun

    algorithms = list(TrainingRun.objects.filter(is_active=True).values_list("algorithm", flat=True))
    for algorithm in algorithms:
        refresh_lists.apply_async(args=[algorithm], queue=rec_settings.REFRESH_QUEUE)
    return algorithms


@shared_task(name="recommender.fail_stale_runs", ignore_result=True)
def fail_stale_runs():
    from recommender.training import services

    return services.fail_stale_runs()


@shared_task(name="recommender.cleanup_artifacts", ignore_result=True)
def cleanup_artifacts():
    from recommender.training import services

    return services.cleanup_artifacts()


@shared_task(name="recommender.purge_anonymous", ignore_result=True)
def purge_anonymous(days=None, batch_size=10_000):
    """Delete anonymous interactions older than ``ANONYMOUS_RETENTION_DAYS``, in batches.

    Safe to run twice; returns the number of rows deleted.
    """
    days = days if days is not None else rec_settings.ANONYMOUS_RETENTION_DAYS
    if days is None:
        return 0
    cutoff = timezone.now() - dt.timedelta(days=days)
    old = Interaction.objects.filter(user__isnull=True, timestamp__lt=cutoff)
    deleted = 0
    while True:
        ids = list(old.values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += Interaction.objects.filter(id__in=ids).delete()[0]

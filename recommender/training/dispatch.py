"""Sending the app's Celery tasks by name.

The orchestration (:mod:`recommender.training.services`) queues work through here and
never imports :mod:`recommender.training.tasks`, which imports the orchestration: the
dependency runs one way, tasks -> services.
"""

from recommender.conf import rec_settings

TRAIN = "recommender.train_algorithm"
REFRESH_LISTS = "recommender.refresh_lists"
REFRESH_USER = "recommender.refresh_user"


def send(name, args=(), queue=None, **options):
    """Send task ``name`` with ``args`` to ``queue``; returns Celery's ``AsyncResult``.

    A task registered in the current Celery app is sent through its own object (so
    ``task_always_eager`` and the task's options apply); otherwise by name. ``options``
    go to ``apply_async`` (``countdown``, ``retry``...).
    """
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is not None:
        return task.apply_async(args=list(args), queue=queue, **options)
    return current_app.send_task(name, args=list(args), queue=queue, **options)


def train(run_id):
    return send(TRAIN, [run_id], queue=rec_settings.TRAINING_QUEUE)


def refresh_lists(algorithm):
    return send(REFRESH_LISTS, [algorithm], queue=rec_settings.REFRESH_QUEUE)


def refresh_user(user_pk, countdown=None):
    """Queue the re-scoring of a user's lists (:mod:`recommender.training.follow`). It is
    sent once, without Celery's publish retries: an unreachable broker fails at once
    instead of holding the request that recorded the event."""
    return send(REFRESH_USER, [user_pk], queue=rec_settings.REFRESH_QUEUE, countdown=countdown or None,
                retry=False)

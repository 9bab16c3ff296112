"""Sending the app's Celery tasks by name.

The orchestration (:mod:`recommender.training.services`) queues work through here and
never imports :mod:`recommender.training.tasks`, which imports the orchestration: the
dependency runs one way, tasks -> services.
"""

from recommender.conf import rec_settings

TRAIN = "recommender.train_algorithm"
REFRESH_LISTS = "recommender.refresh_lists"


def send(name, args=(), queue=None):
    """Send task ``name`` with ``args`` to ``queue``; returns Celery's ``AsyncResult``.

    A task registered in the current Celery app is sent through its own object (so
    ``task_always_eager`` and the task's options apply); otherwise by name.
    """
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is not None:
        return task.apply_async(args=list(args), queue=queue)
    return current_app.send_task(name, args=list(args), queue=queue)


def train(run_id):
    return send(TRAIN, [run_id], queue=rec_settings.TRAINING_QUEUE)


def refresh_lists(algorithm):
    return send(REFRESH_LISTS, [algorithm], queue=rec_settings.REFRESH_QUEUE)

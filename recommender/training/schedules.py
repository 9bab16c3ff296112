"""Celery beat entries built from ``RECOMMENDER["SCHEDULE"]``.

In the site's Celery app::

    from recommender.training.schedules import beat_schedule
    app.conf.beat_schedule = beat_schedule()
"""

from celery.schedules import crontab

from recommender.conf import rec_settings

TASKS = {
    "train_all": ("recommender.train_all", "TRAINING_QUEUE"),
    "refresh_all": ("recommender.refresh_all", "REFRESH_QUEUE"),
    "retrain_if_new_data": ("recommender.retrain_if_new_data", "TRAINING_QUEUE"),
    "fail_stale_runs": ("recommender.fail_stale_runs", "REFRESH_QUEUE"),
    "cleanup_artifacts": ("recommender.cleanup_artifacts", "REFRESH_QUEUE"),
    "purge_anonymous": ("recommender.purge_anonymous", "REFRESH_QUEUE"),
    "aggregate_daily": ("recommender.aggregate_daily", "REFRESH_QUEUE"),
}


def parse_crontab(expression):
    """``crontab`` from "minute hour day-of-month month day-of-week"."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"{expression!r} is not a crontab expression of five fields")
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                   month_of_year=month_of_year, day_of_week=day_of_week)


def beat_schedule():
    """The beat entries of the enabled schedules (a value of None disables one)."""
    entries = {}
    for key, expression in (rec_settings.SCHEDULE or {}).items():
        if expression is None:
            continue
        if key not in TASKS:
            raise ValueError(f"RECOMMENDER['SCHEDULE'] has an unknown entry {key!r}; known: {', '.join(TASKS)}")
        task, queue_setting = TASKS[key]
        entries[f"recommender.{key}"] = {
            "task": task,
            "schedule": parse_crontab(expression),
            "options": {"queue": getattr(rec_settings, queue_setting)},
        }
    return entries

"""Celery tasks of the online metrics (registered through ``recommender.tasks``)."""

from celery import shared_task

from recommender.analytics import aggregates

__all__ = ["aggregate_daily"]


@shared_task(name="recommender.aggregate_daily")
def aggregate_daily(full=False):
    """Bring ``DailyBlockStats`` and ``DailyVariantStats`` up to date (safe to run twice)."""
    return aggregates.aggregate_daily(full=full)

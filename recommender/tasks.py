"""Celery tasks of the recommender app (``@shared_task``: the site owns the Celery app)."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from recommender.conf import rec_settings
from recommender.models import Interaction


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

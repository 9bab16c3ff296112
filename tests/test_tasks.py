"""Celery tasks, run by a real worker process over Redis on PostgreSQL."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from recommender.models import Interaction
from recommender.training.tasks import purge_anonymous


def _rows(catalog, alice):
    old = timezone.now() - dt.timedelta(days=200)
    Interaction.objects.bulk_create([
        Interaction(session_key="old-visitor", item=catalog[0], event="view", timestamp=old),
        Interaction(session_key="old-visitor", item=catalog[1], event="view", timestamp=old),
        Interaction(session_key="new-visitor", item=catalog[0], event="view"),
        Interaction(user=alice, item=catalog[0], event="view", timestamp=old),
    ])


@pytest.mark.django_db
def test_purge_anonymous_keeps_users_and_recent_sessions(catalog, alice):
    _rows(catalog, alice)
    assert purge_anonymous(days=90, batch_size=1) == 2
    assert purge_anonymous(days=90) == 0  # safe to run twice
    assert sorted(Interaction.objects.values_list("session_key", flat=True)) == ["", "new-visitor"]


@pytest.mark.services
def test_worker_runs_purge_over_redis(celery_worker_process, catalog, alice):
    _rows(catalog, alice)
    purge_anonymous.delay(days=90)
    deadline = time.time() + 30
    while time.time() < deadline and Interaction.objects.filter(session_key="old-visitor").exists():
        time.sleep(0.2)
    assert not Interaction.objects.filter(session_key="old-visitor").exists()
    assert Interaction.objects.count() == 2

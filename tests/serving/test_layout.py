"""The package's layout: the lanes depend on each other one way, and the fast path can be turned off."""

import ast
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.serving.conftest import ranked

APP = Path(__file__).resolve().parents[2] / "recommender"


def imported_modules(path):
    """Every module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_orchestration_does_not_import_the_tasks():
    """tasks -> services only: services sends tasks by name through training.dispatch."""
    imported = imported_modules(APP / "training" / "services.py")
    assert not {name for name in imported if name.startswith("recommender.training.tasks")
                or name == "recommender.tasks"}, imported


def test_the_core_does_not_import_the_fast_path():
    """tracking/, training/ and serving/ read plainly without recommender.fastpath."""
    for lane in ("tracking", "training", "serving"):
        for path in (APP / lane).glob("*.py"):
            assert not [name for name in imported_modules(path) if name.startswith("recommender.fastpath")], path


def test_celery_autodiscovery_finds_the_tasks():
    import recommender.tasks
    from recommender.training import tasks

    assert recommender.tasks.train_algorithm is tasks.train_algorithm
    assert set(tasks.__all__) <= set(vars(recommender.tasks))


def test_dispatch_sends_through_the_registered_task(monkeypatch):
    from recommender.training import dispatch, tasks

    sent = []
    monkeypatch.setattr("recommender.training.tasks.train_algorithm.apply_async",
                        lambda args, queue: sent.append((args, queue)))
    assert tasks.train_algorithm.name == dispatch.TRAIN
    dispatch.train(7)
    assert sent == [([7], "recommender_training")]


@pytest.mark.django_db
def test_fast_path_off_serves_the_same_through_drf(redis_cache, shelf, alice, publish, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "FAST_PATH": False}
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    api = APIClient()
    api.force_login(alice)
    url = "/recommender/api/recommendations/"
    first = api.get(url, {"limit": 2})
    with CaptureQueriesContext(connection) as queries:
        second = api.get(url, {"limit": 2})
    assert second.json() == first.json()
    assert [r["item"] for r in second.json()["results"]] == [shelf[4].pk, shelf[5].pk]
    # the plain path resolves the session and the items itself: no stored response served
    assert [q for q in queries if "django_session" in q["sql"]]
    from django.core.cache import caches

    assert not [key for key in caches["default"]._cache.get_client().keys("*recommender:api:*")]


@pytest.mark.django_db
def test_fast_path_on_stores_the_response(redis_cache, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    api = APIClient()
    api.force_login(alice)
    api.get("/recommender/api/recommendations/", {"limit": 2})
    from django.core.cache import caches

    assert [key for key in caches["default"]._cache.get_client().keys("*recommender:api:*")]

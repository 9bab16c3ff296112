"""Shared fixtures: demo catalog data and a real Celery worker process."""

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Set by './run tests' for the PostgreSQL pass: service-backed tests must run there.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture
def catalog(db):
    """Three categories' worth of products, one of them inactive."""
    from shopdemo.shop.models import Category, Product

    mugs = Category.objects.create(name="Mugs", slug="mugs")
    bags = Category.objects.create(name="Bags", slug="bags")
    products = [
        Product.objects.create(stock_code=f"1000{i}", title=title, description=title.lower(),
                               category=cat, price=Decimal("2.50") + i, is_active=active)
        for i, (title, cat, active) in enumerate([
            ("Red Spotty Mug", mugs, True),
            ("Blue Polka Mug", mugs, True),
            ("Jumbo Shopper Bag", bags, True),
            ("Retired Lunch Bag", bags, False),
        ])
    ]
    return products


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "pw-alice-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "pw-bob-123")


def _redis_up():
    try:
        import redis

        return redis.Redis.from_url(os.environ.get("CELERY_BROKER_URL", "")).ping()
    except Exception:
        return False


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real ``celery worker`` process over Redis, sharing the test database (PostgreSQL)."""
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL", "")
    ready = connection.vendor == "postgresql" and broker.startswith("redis://") and _redis_up()
    if not ready:
        message = "needs PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               PYTHONPATH=str(ROOT))
    import redis

    redis.Redis.from_url(broker).flushdb()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shopdemo", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    from shopdemo.celery import app

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("celery worker exited:\n" + proc.stdout.read())
        replies = app.control.ping(timeout=0.5)
        if replies:
            break
    else:
        proc.kill()
        pytest.fail("celery worker did not answer a ping within 60 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()

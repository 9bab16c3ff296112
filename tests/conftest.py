"""Shared fixtures: demo catalog data and a real Celery worker process."""

import os
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: tests/standalone is a site of its own (its settings, its product model): run it with
#: ``--ds tests.standalone.settings`` (./run tests does).
collect_ignore = [] if os.environ.get("DJANGO_SETTINGS_MODULE") == "tests.standalone.settings" else ["standalone"]
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


class WorkerFactory:
    """Starts real ``celery worker`` processes over Redis on the test database (PostgreSQL)."""

    def __init__(self, env):
        self.env = env
        self.procs = []

    def start(self, overrides=None, concurrency=1):
        import json

        from shopdemo.celery import app

        env = dict(self.env, RECOMMENDER_TEST_OVERRIDES=json.dumps(overrides or {}))
        pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "prefork", "--concurrency", str(concurrency)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shopdemo", "worker", *pool, "--loglevel", "INFO",
             "-Q", "celery,recommender_training,recommender_refresh", "-n", f"w{len(self.procs)}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.procs.append(proc)
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail("celery worker exited:\n" + proc.stdout.read())
            if any(f"w{len(self.procs) - 1}@" in name for reply in app.control.ping(timeout=0.5)
                   for name in reply):
                return proc
        proc.kill()
        pytest.fail("celery worker did not answer a ping within 60 s")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.stdout.close()


@pytest.fixture
def celery_workers(transactional_db, settings):
    """Factory of real worker processes; needs PostgreSQL and Redis (fails under ./run tests if absent)."""
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL", "")
    ready = connection.vendor == "postgresql" and broker.startswith("redis://") and _redis_up()
    if not ready:
        message = "needs PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    import redis

    redis.Redis.from_url(broker).flushdb()
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(ROOT),
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    factory = WorkerFactory(env)
    yield factory
    factory.stop()
    # Connections of killed workers (or their pool children) must not outlive the test:
    # the test database is dropped at the end of the session.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def celery_worker_process(celery_workers):
    return celery_workers.start()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say loudly how many tests were skipped for want of PostgreSQL, Redis or a worker."""
    needs = [report for report in terminalreporter.stats.get("skipped", [])
             if "needs" in str(getattr(report, "longrepr", "")).lower()]
    if needs and not REQUIRE_SERVICES:
        terminalreporter.write_sep(
            "!", f"{len(needs)} service tests SKIPPED: they need PostgreSQL, Redis and a Celery worker. "
                 "Run './run tests' (starts the services) for the whole suite.", yellow=True, bold=True)


@pytest.fixture(autouse=True)
def _process_state():
    """Each test starts with this process's per-process state empty: the copy of the running
    experiments, the record of exposures (database ids are reused after a test's rollback)
    and the cache-outage state of the serving (a test that simulates an outage must not
    leave the next test skipping cache writes), and the refresh's loaded artifacts (keyed by
    run id: a later test's run with a reused id must not get an earlier test's model)."""
    from recommender.analytics import experiments
    from recommender.serving import published
    from recommender.training import refresh

    def reset():
        experiments._running.clear()
        experiments._recorded.clear()
        published._outage.__init__()
        refresh._loaded.clear()
        refresh._unavailable.clear()

    reset()
    yield
    reset()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVICES:
            pytest.fail("chromium is not installed (./run tests installs Debian's package)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test
    # itself are still plain synchronous code (the documented Django + Playwright setting).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def fake_services(monkeypatch):
    """``services.enqueue_training`` that records the call and makes the runs (no Celery)."""
    import sys
    import types

    from recommender.models import TrainingRun

    calls = []

    def enqueue_training(algorithms, requested_by=""):
        calls.append((algorithms, requested_by))
        return [TrainingRun.objects.create(algorithm=name, requested_by=requested_by) for name in algorithms]

    fake = types.ModuleType("recommender.training.services")
    fake.enqueue_training = enqueue_training
    monkeypatch.setitem(sys.modules, "recommender.training.services", fake)
    import recommender.training as package

    monkeypatch.setattr(package, "services", fake, raising=False)
    return calls

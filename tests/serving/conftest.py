"""Fixtures of the serving tests: a bigger catalog, staff, and lists published by hand."""

import os
from decimal import Decimal

import pytest
from django.core.cache import cache

from recommender import serving
from recommender.serving import published

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def _fresh_cache_and_receivers():
    cache.clear()
    serving.connect()  # idempotent; AppConfig.ready() also connects it once wired
    yield
    cache.clear()


@pytest.fixture
def shelf(catalog):
    """The catalog (mugs 0-1, bags 2-3, 3 inactive) plus mugs 4-7 and bags 8-11, all active."""
    from shopdemo.shop.models import Category, Product

    mugs, bags = Category.objects.get(slug="mugs"), Category.objects.get(slug="bags")
    extra = [
        Product.objects.create(stock_code=f"2000{i}", title=f"{kind} {i}", description="",
                               category=cat, price=Decimal("5.00") + i)
        for i, (kind, cat) in enumerate([("Mug", mugs)] * 4 + [("Bag", bags)] * 4, start=4)
    ]
    return list(catalog) + extra


@pytest.fixture
def staff(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("sam", "sam@example.com", "pw-sam-123", is_staff=True)
    # the API checks model permissions, not is_staff (docs/reliability.md)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="recommender",
        codename__in=["view_trainingrun", "add_trainingrun", "view_interaction"]))
    return user


@pytest.fixture
def publish():
    """``publish(kind, algorithm, {subject: [(item, score, because), ...]})`` with items or keys."""
    def _publish(kind, algorithm, lists):
        def key(x):
            return getattr(x, "pk", x)

        published.publish(kind, algorithm, {
            key(subject): [[key(item), score, key(because) if because is not None else None]
                           for item, score, because in items]
            for subject, items in lists.items()
        })
    return _publish


def ranked(items, because=None, start=1.0):
    """``[(item, score, because), ...]`` with decreasing scores."""
    return [(item, round(start - i * 0.05, 3), because) for i, item in enumerate(items)]


def _redis_url():
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
    db = os.environ.get("TEST_REDIS_DB", "15")  # parallel runs on one machine: one database each
    return url.rstrip("/").rsplit("/", 1)[0] + f"/{db}" if url.count("/") > 2 else url + f"/{db}"


@pytest.fixture
def redis_cache(settings):
    import redis

    url = _redis_url()
    try:
        redis.Redis.from_url(url).ping()
    except Exception:
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip(f"needs Redis at {url}")
    settings.CACHES = {"default": {"BACKEND": "recommender.fastpath.redis_cache.RedisCache", "LOCATION": url,
                                   "KEY_PREFIX": "rec-test"}}
    from django.core.cache import cache

    cache.clear()
    yield url
    cache.clear()

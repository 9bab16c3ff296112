"""Fixtures of the serving tests: a bigger catalog, staff, and lists published by hand."""

from decimal import Decimal

import pytest
from django.core.cache import cache

from recommender import served, serving


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
    return django_user_model.objects.create_user("sam", "sam@example.com", "pw-sam-123", is_staff=True)


@pytest.fixture
def publish():
    """``publish(kind, algorithm, {subject: [(item, score, because), ...]})`` with items or keys."""
    def _publish(kind, algorithm, lists):
        def key(x):
            return getattr(x, "pk", x)

        served.publish(kind, algorithm, {
            key(subject): [[key(item), score, key(because) if because is not None else None]
                           for item, score, because in items]
            for subject, items in lists.items()
        })
    return _publish


def ranked(items, because=None, start=1.0):
    """``[(item, score, because), ...]`` with decreasing scores."""
    return [(item, round(start - i * 0.05, 3), because) for i, item in enumerate(items)]

"""The request path stays light: no TensorFlow, and pre-rendered responses through Redis."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.serving.conftest import ranked

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.db import connection
connection.creation.create_test_db(verbosity=0)

from decimal import Decimal
from django.contrib.auth import get_user_model
from django.test import Client
from recommender.serving import published
from shopdemo.shop.models import Category, Product

cat = Category.objects.create(name="Mugs", slug="mugs")
p = [Product.objects.create(stock_code=str(i), title=f"Mug {i}", category=cat, price=Decimal("2.50"))
     for i in range(6)]
user = get_user_model().objects.create_user("alice", password="pw-alice-123")
published.publish("for_user", "hybrid", {user.pk: [[p[1].pk, 0.9, p[0].pk], [p[2].pk, 0.8, None]]})
published.publish("similar", "itemknn", {p[0].pk: [[p[3].pk, 0.5, None]]})
published.publish("bought_together", "cooccurrence", {p[0].pk: [[p[4].pk, 0.5, None]]})
published.publish("trending", "trending", {0: [[p[5].pk, 3.0, None]]})
published.publish("popular", "popular", {0: [[p[5].pk, 9.0, None]]})

def heavy():
    return {m for m in sys.modules
            if m.split(".")[0] in ("tensorflow", "keras") or m.startswith("recommender.engine")}

before = heavy()
client = Client()
statuses = [client.get(url).status_code for url in [
    "/", f"/product/{p[0].pk}/", "/cart/", "/recommender/api/recommendations/",
    f"/recommender/api/items/{p[0].pk}/similar/", f"/recommender/api/items/{p[0].pk}/bought-together/",
    "/recommender/api/trending/"]]
client.post("/recommender/api/events/", {"item": p[0].pk, "event": "view"}, content_type="application/json")
client.force_login(user)
statuses += [client.get(url).status_code for url in [
    "/", "/recommender/api/recommendations/", "/recommender/api/recommendations/"]]
after = heavy()
print(json.dumps({"statuses": statuses, "loaded_by_requests": sorted(after - before),
                  "tensorflow": sorted(m for m in after if m.split(".")[0] in ("tensorflow", "keras"))}))
"""


def test_no_tensorflow_on_the_request_path():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)  # its own in-memory SQLite database
    env.pop("RECOMMENDER_TEST_OVERRIDES", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["statuses"]) == {200}, result
    assert result["tensorflow"] == [], result
    # rendering blocks and serving the API load no engine module (start-up may, e.g. the admin)
    assert result["loaded_by_requests"] == [], result


@pytest.mark.django_db
def test_prerendered_responses_through_redis(redis_cache, shelf, alice, publish):
    from recommender.fastpath import responses
    from recommender.serving import published

    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    api = APIClient()
    api.force_login(alice)
    url = "/recommender/api/recommendations/"
    first = api.get(url, {"limit": 2})
    assert [r["item"] for r in first.json()["results"]] == [shelf[4].pk, shelf[5].pk]
    with CaptureQueriesContext(connection) as queries:
        second = api.get(url, {"limit": 2})
    assert second.content == responses.encode(first.json())
    assert not [q for q in queries if "shop_product" in q["sql"] or "recommender_" in q["sql"]]
    assert published._clients  # one redis-py client for the process
    publish("for_user", "hybrid", {alice: ranked(shelf[8:12])})
    assert [r["item"] for r in api.get(url, {"limit": 2}).json()["results"]] == [shelf[8].pk, shelf[9].pk]
    shelf[8].is_active = False
    shelf[8].save()
    assert [r["item"] for r in api.get(url, {"limit": 2}).json()["results"]] == [shelf[9].pk, shelf[10].pk]
    import recommender

    recommender.track(alice, shelf[9], "purchase")
    assert [r["item"] for r in api.get(url, {"limit": 2}).json()["results"]] == [shelf[10].pk, shelf[11].pk]


def test_cache_backend_keeps_one_client(redis_cache):
    from django.core.cache import caches

    from recommender.fastpath.redis_cache import RedisCache

    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=True)
    cache.set("recommender-test-key", {"a": 1}, 30)
    assert cache.get("recommender-test-key") == {"a": 1}
    assert cache.get_many(["recommender-test-key", "nothing"]) == {"recommender-test-key": {"a": 1}}

"""Throttles count in Redis with one INCR per request, and fall back to DRF's history elsewhere."""

import os

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

URL = "/recommender/api/events/"
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture
def redis_cache(settings):
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except Exception:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is not reachable at {REDIS}")
        pytest.skip(f"needs Redis at {REDIS}")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS,
                                   "KEY_PREFIX": "throttle-test"}}
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_redis_fixed_window_counts_and_refuses(redis_cache, catalog, alice):
    import redis

    api = APIClient()
    api.force_authenticate(alice)
    rates = {"events_anon": None, "events_user": "2/min"}
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "THROTTLE_RATES": rates}):
        codes = [api.post(URL, {"item": catalog[0].pk, "event": "view"}, format="json").status_code
                 for _ in range(3)]
        refused = api.post(URL, {"item": catalog[0].pk, "event": "view"}, format="json")
    assert codes == [201, 201, 429]
    assert 0 < int(refused["Retry-After"]) <= 61
    counters = [k for k in redis.Redis.from_url(REDIS).keys("*throttle*") if b"events_user" in k]
    assert len(counters) == 1 and 0 < redis.Redis.from_url(REDIS).ttl(counters[0]) <= 61


@pytest.mark.django_db
def test_unlimited_scope_is_not_counted(redis_cache, catalog, alice):
    api = APIClient()
    api.force_authenticate(alice)
    rates = {"events_anon": None, "events_user": None}
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "THROTTLE_RATES": rates}):
        codes = {api.post(URL, {"item": catalog[0].pk, "event": "view"}, format="json").status_code
                 for _ in range(5)}
    assert codes == {201}


@pytest.mark.django_db
def test_recommendations_fast_path_counts_in_the_same_round_trip(redis_cache, catalog, alice):
    from recommender import serving
    from recommender.serving import published

    serving.connect()
    published.publish("for_user", "hybrid", {alice.pk: [[catalog[1].pk, 0.9, None], [catalog[2].pk, 0.8, None]]})
    api = APIClient()
    api.force_login(alice)
    rates = {"recommendations_user": "3/min"}
    url = "/recommender/api/recommendations/"
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "THROTTLE_RATES": rates}):
        responses = [api.get(url, {"limit": 2}) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[1].content == responses[2].content  # served from the stored response
    assert [r["item"] for r in responses[2].json()["results"]] == [catalog[1].pk, catalog[2].pk]
    assert "Retry-After" in responses[3]


# The anonymous throttles and X-Forwarded-For ---------------------------------------------------

TRENDING = "/recommender/api/trending/"


def _statuses(forwarded_for, **extra):
    """Anonymous GETs, one per X-Forwarded-For value, from the same REMOTE_ADDR."""
    api = APIClient()
    return [api.get(TRENDING, HTTP_X_FORWARDED_FOR=xff, REMOTE_ADDR="192.0.2.7", **extra).status_code
            for xff in forwarded_for]


@pytest.fixture
def anon_rate():
    overrides = {"ITEM_MODEL": "shop.Product", "THROTTLE_RATES": {"recommendations_anon": "3/min"}}
    with override_settings(RECOMMENDER=overrides):
        yield overrides


@pytest.mark.django_db
def test_rotating_x_forwarded_for_does_not_escape_the_anonymous_throttle(catalog, anon_rate):
    cache.clear()
    assert _statuses([f"203.0.113.{n}" for n in range(5)]) == [200, 200, 200, 429, 429]


@pytest.mark.django_db
def test_rotating_x_forwarded_for_through_the_fast_path(redis_cache, catalog, anon_rate):
    assert _statuses([f"203.0.113.{n}" for n in range(5)]) == [200, 200, 200, 429, 429]


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_address_it_saw_counts(catalog, anon_rate):
    cache.clear()
    with override_settings(RECOMMENDER={**anon_rate, "TRUSTED_PROXY_COUNT": 1}):
        # the client wrote the first entry; the proxy appended the address it saw
        first = _statuses([f"{n}.0.0.1, 198.51.100.1" for n in range(4)])
        second = _statuses(["198.51.100.2", "spoofed, 198.51.100.2"])
    assert first == [200, 200, 200, 429] and second == [200, 200]


@pytest.mark.django_db
def test_drf_num_proxies_is_used_when_the_app_setting_is_unset(catalog, anon_rate):
    cache.clear()
    with override_settings(REST_FRAMEWORK={"NUM_PROXIES": 1}):
        assert _statuses([f"198.51.100.{n}" for n in range(4)]) == [200, 200, 200, 200]
    cache.clear()
    with override_settings(REST_FRAMEWORK={"NUM_PROXIES": 0}):
        assert _statuses([f"198.51.100.{n}" for n in range(4)]) == [200, 200, 200, 429]

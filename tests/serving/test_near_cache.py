"""The near cache (recommender/near_cache.py) and the fast paths' local throttle counts, on real Redis.

"Another process" is a separate Redis connection: to Redis it is just another client.
Its writes reach this process's near cache only through Redis' invalidation messages.
"""

import select
import time

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from recommender.fastpath.throttle_counts import LocalCounts
from recommender.serving import published

pytestmark = pytest.mark.django_db


@pytest.fixture
def near(redis_cache):
    near = cache.near_cache
    assert near is not None and near.active
    return near


@pytest.fixture
def other(redis_cache):
    """A client of the same Redis database that is not this process's cache."""
    client = redis.Redis.from_url(redis_cache)
    yield client
    client.close()


def _raw(value):
    return cache._cache._serializer.dumps(value)


def _wait_for_invalidations(near, before, timeout=5.0):
    """Until Redis' invalidation message has reached this process (it is asynchronous)."""
    deadline = time.monotonic() + timeout
    while near.invalidations == before:
        assert time.monotonic() < deadline, "no invalidation message arrived"
        near.active  # noqa: B018 - drains the socket
        time.sleep(0.001)


def _no_round_trips(monkeypatch):
    client = published.backend()[1]

    def refuse(*args, **kwargs):
        raise AssertionError("went to Redis")

    monkeypatch.setattr(client, "mget", refuse)
    monkeypatch.setattr(client, "pipeline", refuse)
    monkeypatch.setattr(client, "get", refuse)


def test_a_repeated_read_is_answered_in_the_process(near, monkeypatch):
    cache.set("recommender:test:a", {"x": 1})
    cache.set("recommender:test:b", 2)
    assert cache.get_many(["recommender:test:a", "recommender:test:b", "recommender:test:none"]) == {
        "recommender:test:a": {"x": 1}, "recommender:test:b": 2}
    _no_round_trips(monkeypatch)
    assert cache.get("recommender:test:a") == {"x": 1}
    assert cache.get("recommender:test:none", "absent") == "absent"  # absence is kept too
    assert cache.get_many(["recommender:test:a", "recommender:test:b"]) == {
        "recommender:test:a": {"x": 1}, "recommender:test:b": 2}


def test_values_are_copies_not_shared_objects(near):
    cache.set("recommender:test:session", {"cart": [1]})
    first = cache.get("recommender:test:session")
    first["cart"].append(2)  # as a session would mutate what it loaded
    assert cache.get("recommender:test:session") == {"cart": [1]}


def test_a_write_by_another_process_invalidates_the_copy(near, other):
    cache.set("recommender:test:a", "old")
    assert cache.get("recommender:test:a") == "old"
    before = near.invalidations
    other.set(cache.make_key("recommender:test:a"), _raw("new"))
    _wait_for_invalidations(near, before)
    assert cache.get("recommender:test:a") == "new"
    before = near.invalidations
    other.delete(cache.make_key("recommender:test:a"))
    _wait_for_invalidations(near, before)
    assert cache.get("recommender:test:a") is None


def test_an_idle_process_drains_its_messages_in_the_background(near, other):
    cache.set("recommender:test:a", "old")
    assert cache.get("recommender:test:a") == "old"
    before = near.invalidations
    other.set(cache.make_key("recommender:test:a"), _raw("new"))
    deadline = time.monotonic() + 5
    while near.invalidations == before:  # no read here: only the listener thread can see it
        assert time.monotonic() < deadline, "the listener thread did not drain the message"
        time.sleep(0.005)
    assert cache.make_key("recommender:test:a") not in near._data


def test_creating_a_key_that_was_absent_invalidates_the_absence(near, other):
    assert cache.get("recommender:test:later") is None
    before = near.invalidations
    other.set(cache.make_key("recommender:test:later"), _raw("here"))
    _wait_for_invalidations(near, before)
    assert cache.get("recommender:test:later") == "here"


def test_a_flush_empties_it(near, other):
    cache.set("recommender:test:a", 1)
    assert cache.get("recommender:test:a") == 1
    before = near.invalidations
    other.flushdb()
    _wait_for_invalidations(near, before)
    assert len(near) == 0
    assert cache.get("recommender:test:a") is None


def test_this_process_sees_its_own_writes_at_once(near, monkeypatch):
    cache.set("recommender:test:a", 1)
    assert cache.get("recommender:test:a") == 1
    # even if Redis' message were late, the process's own write drops its copy
    monkeypatch.setattr(near, "_drain", lambda: True)
    cache.set("recommender:test:a", 2)
    assert cache.get("recommender:test:a") == 2
    cache.delete("recommender:test:a")
    assert cache.get("recommender:test:a") is None
    published.set_raw("recommender:test:raw", b"one", 60)
    assert published.mget_raw(["recommender:test:raw"]) == [b"one"]
    published.set_raw("recommender:test:raw", b"two", 60)
    assert published.mget_raw(["recommender:test:raw"]) == [b"two"]


def test_entries_expire_with_their_redis_ttl(near, other):
    other.set(cache.make_key("recommender:test:brief"), _raw("soon gone"), px=150)
    assert cache.get("recommender:test:brief") == "soon gone"
    time.sleep(0.2)
    # Redis may not have reclaimed the key (nor sent a message) yet: the copy expires by itself
    assert cache.get("recommender:test:brief") is None


def test_a_value_that_changed_while_it_was_read_is_not_kept(near, other, monkeypatch):
    key = cache.make_key("recommender:test:racy")
    other.set(key, _raw("v1"))
    client = published.backend()[1]
    real_pipeline = client.pipeline

    class WriteAfterRead:
        """The read returns v1; another process writes v2 before the copy is kept."""

        def __init__(self, *args, **kwargs):
            self.pipe = real_pipeline(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def execute(self):
            values = self.pipe.execute()
            before = near.invalidations
            other.set(key, _raw("v2"))
            # wait until Redis' message has arrived: drained by the listener thread, or
            # waiting in the socket for the keeping step to drain
            deadline = time.monotonic() + 5
            while near.invalidations == before and not select.select([near._sock], [], [], 0.005)[0]:
                assert time.monotonic() < deadline, "no invalidation message arrived"
            return values

    monkeypatch.setattr(client, "pipeline", WriteAfterRead)
    assert cache.get("recommender:test:racy") == "v1"  # what Redis held when the read began
    monkeypatch.setattr(client, "pipeline", real_pipeline)
    assert cache.get("recommender:test:racy") == "v2"  # v1 was not kept


def test_keys_outside_its_prefixes_always_go_to_redis(near, other):
    cache.set("elsewhere:a", 1)
    assert cache.get("elsewhere:a") == 1
    other.set(cache.make_key("elsewhere:a"), _raw(2))  # no message: not a tracked prefix
    assert cache.get("elsewhere:a") == 2


def test_a_lost_tracking_connection_falls_back_to_redis_then_reconnects(near, other, monkeypatch):
    cache.set("recommender:test:a", "old")
    assert cache.get("recommender:test:a") == "old"
    killed = near.client_id
    other.client_kill_filter(_id=killed)
    # the kill may take a moment to reach the socket; once seen, the copy is gone
    deadline = time.monotonic() + 5
    while near._sock is not None:
        assert time.monotonic() < deadline
        near.active  # noqa: B018
        time.sleep(0.001)
    assert len(near) == 0
    other.set(cache.make_key("recommender:test:a"), _raw("new"))  # nobody tells us now
    assert cache.get("recommender:test:a") == "new"  # read from Redis
    assert not near.active  # waits before reconnecting
    monkeypatch.setattr(near, "_retry_at", 0.0)
    assert near.active and near.client_id != killed
    assert cache.get("recommender:test:a") == "new"


def test_a_forked_process_opens_its_own_tracking_connection(near):
    cache.set("recommender:test:a", 1)
    assert cache.get("recommender:test:a") == 1
    parent_connection = near.client_id
    near._pid = -1  # as seen from a child after fork()
    assert near.active
    assert near.client_id != parent_connection and len(near) == 0


def test_max_entries_bounds_it_dropping_the_least_recently_used(near, monkeypatch):
    monkeypatch.setattr(near, "max_entries", 3)
    for i in range(3):
        cache.set(f"recommender:test:{i}", i)
        assert cache.get(f"recommender:test:{i}") == i
    assert cache.get("recommender:test:0") == 0  # used again: now the most recent
    cache.set("recommender:test:3", 3)
    assert cache.get("recommender:test:3") == 3
    assert len(near) == 3
    assert set(near._data) == {cache.make_key(f"recommender:test:{i}") for i in (0, 2, 3)}


def test_it_can_be_turned_off(redis_cache, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "OPTIONS": {"NEAR_CACHE": None}}}
    from django.core.cache import cache as fresh

    assert fresh.near_cache is None
    fresh.set("recommender:test:a", 1)
    assert fresh.get("recommender:test:a") == 1


@pytest.fixture
def limited_cache(redis_cache, settings):
    """The cache as a Redis ACL user that may not run CLIENT (so no CLIENT TRACKING), as on
    some hosted Redis services."""
    admin = redis.Redis.from_url(redis_cache)
    admin.acl_setuser("rec-test-nearless", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-client"])
    original = settings.CACHES
    settings.CACHES = {"default": {**original["default"],
                                   "LOCATION": redis_cache.replace("redis://", "redis://rec-test-nearless@")}}
    from django.core.cache import cache as limited

    yield limited
    settings.CACHES = original
    admin.acl_deluser("rec-test-nearless")
    admin.close()


def test_without_tracking_reads_go_to_redis(limited_cache, other, caplog):
    near = limited_cache.near_cache
    limited_cache.set("recommender:test:a", 1)
    assert limited_cache.get("recommender:test:a") == 1
    assert not near.active and len(near) == 0
    assert "near cache off" in caplog.text and "client|id" in caplog.text
    other.set(limited_cache.make_key("recommender:test:a"), _raw(2))
    assert limited_cache.get("recommender:test:a") == 2  # every read went to Redis


# Sessions through the near cache --------------------------------------------------------


@pytest.fixture
def session_near(redis_cache, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "OPTIONS": {
        "NEAR_CACHE": {"PREFIXES": ["recommender:", "django.contrib.sessions."]}}}}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    from django.core.cache import cache as fresh

    return fresh.near_cache


def test_logging_out_ends_the_session_served_from_the_near_cache(session_near, shelf, publish):
    from tests.serving.conftest import ranked

    user = get_user_model().objects.create_user("nina", password="pw-nina-123")
    publish("for_user", "hybrid", {user: ranked(shelf[0:3])})
    client = Client()
    client.force_login(user)
    url = "/recommender/api/recommendations/"
    assert client.get(url).json()["count"] == 3
    assert client.get(url).json()["count"] == 3  # the session now comes from the near cache
    session_key = client.cookies["sessionid"].value
    assert any(session_key in key for key in session_near._data)
    stolen = Client()
    stolen.cookies["sessionid"] = session_key
    client.logout()
    # the old cookie no longer names a user: the anonymous fallback, not nina's list
    response = stolen.get(url)
    assert response.status_code == 200
    assert all(rec["reason"]["kind"] != "for_user" for rec in response.json()["results"])


# The fast paths' throttle counts -------------------------------------------------------


def test_local_counts_reach_redis_and_are_shared_by_processes(redis_cache, other):
    first, second = LocalCounts(background=False), LocalCounts(background=False)  # two processes
    key = cache.make_key("throttle-test:window")
    assert [first.count(key, 60, interval=3600) for _ in range(5)] == [1, 2, 3, 4, 5]  # counted here
    assert other.get(key) is None
    first.sync()
    assert int(other.get(key)) == 5
    assert second.count(key, 60, interval=3600) == 1  # it has not synced yet: its own count
    second.sync()  # learns the total, its request included
    assert second.count(key, 60, interval=3600) == 7
    assert first.count(key, 60, interval=3600) == 6  # first has not heard of second's yet
    first.sync()  # adds its sixth request, learns second's two... of which one was synced
    assert first.count(key, 60, interval=3600) == 8
    second.sync()
    first.sync()
    assert int(other.get(key)) == 9 and 0 < other.ttl(key) <= 60  # every request, once


def test_local_counts_are_kept_when_redis_fails(redis_cache, other, monkeypatch):
    counts = LocalCounts(background=False)
    key = cache.make_key("throttle-test:window")
    counts.count(key, 60, interval=3600)
    counts.count(key, 60, interval=3600)
    client = published.backend()[1]

    def down(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    with monkeypatch.context() as patch:
        patch.setattr(client, "evalsha", down)
        patch.setattr(client, "eval", down)
        with pytest.raises(redis.ConnectionError):
            counts.sync()
    assert other.get(key) is None
    assert counts.count(key, 60, interval=3600) == 3  # nothing was lost meanwhile
    counts.sync()
    assert int(other.get(key)) == 3


def test_the_background_thread_syncs_the_counts(redis_cache, other):
    counts = LocalCounts()
    key = cache.make_key("throttle-test:window")
    assert counts.count(key, 60, interval=0.01) == 1
    deadline = time.monotonic() + 5
    while other.get(key) is None:
        assert time.monotonic() < deadline, "the counts never reached Redis"
        time.sleep(0.01)
    assert int(other.get(key)) == 1


def test_the_fast_path_counts_in_the_process_between_syncs(redis_cache, settings, shelf, publish, other):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_SYNC_INTERVAL": 3600,
                            "THROTTLE_RATES": {"recommendations_user": "4/min"}}
    from tests.serving.conftest import ranked

    user = get_user_model().objects.create_user("olga", password="pw-olga-123")
    publish("for_user", "hybrid", {user: ranked(shelf[0:3])})
    client = Client()
    client.force_login(user)
    codes = [client.get("/recommender/api/recommendations/").status_code for _ in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    # no request waited for Redis: the six are counted here until the next sync
    assert list(other.scan_iter("*throttle*recommendations_user*")) == []
    from recommender.fastpath.throttle_counts import local_counts

    local_counts.sync()
    window = list(other.scan_iter("*throttle*recommendations_user*"))
    assert len(window) == 1 and int(other.get(window[0])) == 6

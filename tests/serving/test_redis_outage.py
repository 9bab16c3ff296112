"""The site with Redis down: a real redis-server, stopped and started again under a request loop.

The fault test starts its own ``redis-server`` on a free port as the cache
(``recommender.fastpath.redis_cache.RedisCache``), runs a bounded loop of storefront
pages, recommendation API calls and event POSTs through Django's test client, stops the
server (``SHUTDOWN NOSAVE``) for a stretch of the loop, starts it again and checks that
no response was a server error, that every event reached the database, and that the
fast path serves from Redis again.

Knobs (docs/reliability.md): ``REDIS_OUTAGE_SECONDS=20`` runs the loop 20 s before,
20 s during and 20 s after the outage instead of a few cycles; ``REDIS_OUTAGE_CYCLES``
sets the cycles of the short loop; ``REDIS_OUTAGE_SESSION_ENGINE`` another session
engine than ``db``; ``REDIS_OUTAGE_REPORT=1`` prints the counts.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from unittest import mock

import pytest
from django.urls import reverse

from recommender import serving
from recommender.api.recommendations import RecommendationsView
from recommender.fastpath import identity
from recommender.models import Interaction
from recommender.serving import published
from tests.serving.conftest import REQUIRE_SERVICES, ranked

OUTAGE_SECONDS = float(os.environ.get("REDIS_OUTAGE_SECONDS", "0"))  # 0: a fixed number of cycles
OUTAGE_CYCLES = int(os.environ.get("REDIS_OUTAGE_CYCLES", "15"))  # cycles run before and during the outage
SESSION_ENGINE = os.environ.get("REDIS_OUTAGE_SESSION_ENGINE", "django.contrib.sessions.backends.db")
REPORT = os.environ.get("REDIS_OUTAGE_REPORT") == "1"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process of the test's own, on a free port, with no persistence."""

    def __init__(self, executable, directory):
        self.executable, self.directory = executable, directory
        self.port = _free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self):
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def pause(self):
        """SIGSTOP: the server keeps its data and its port, and answers nothing (timeouts)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self):
        """``SHUTDOWN NOSAVE``: the server exits, its data is gone, connections are refused."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()  # in case a test paused it
        try:
            self.client().shutdown(nosave=True)
        except Exception:  # noqa: BLE001 - redis-py reports the closed connection of a shutdown
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server(tmp_path):
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "REDIS OUTAGE TEST NOT RUN: redis-server is not installed (apt-get install redis-server)"
        if REQUIRE_SERVICES:
            pytest.fail(reason)
        pytest.skip(reason)
    server = RedisServer(executable, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outage_cache(settings, redis_server):
    """The test's Redis as the cache, with the demo's near cache; the outage state reset around."""
    settings.CACHES = {"default": {"BACKEND": "recommender.fastpath.redis_cache.RedisCache",
                                   "LOCATION": redis_server.url,
                                   "OPTIONS": {"NEAR_CACHE": {"PREFIXES": ["recommender:"]}}}}
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_RATES": {
        "events_anon": "100000/min", "events_user": "100000/min",
        "recommendations_anon": "100000/min", "recommendations_user": "100000/min"}}
    settings.SESSION_ENGINE = SESSION_ENGINE
    published._outage.__init__()
    yield redis_server
    published._outage.__init__()


def _published_lists(shelf, alice, publish):
    publish("for_user", "hybrid", {alice.pk: ranked(shelf[4:8], because=shelf[0])})
    publish("similar", "itemknn", {p.pk: ranked([q for q in shelf if q.pk != p.pk][:5]) for p in shelf})
    publish("bought_together", "cooccurrence", {p.pk: ranked([q for q in shelf if q.pk != p.pk][-4:]) for p in shelf})
    publish("trending", "trending", {0: ranked(shelf[6:12])})
    publish("popular", "popular", {0: ranked(shelf[:8])})


class Loop:
    """The bounded request loop: one cycle is 12 requests, 3 of them event POSTs, 1 a cart add."""

    def __init__(self, client_factory, alice, shelf):
        self.anon = client_factory()
        self.user = client_factory()
        self.user.force_login(alice)
        self.shelf = [p for p in shelf if p.is_active]
        self.statuses = []
        self.seconds = []  # time of each request
        self.errors = []
        self.events = 0
        self.cycles = 0

    def _send(self, what, method, *args, **kwargs):
        started = time.perf_counter()
        response = method(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)
        self.statuses.append(response.status_code)
        if response.status_code >= 400:
            self.errors.append((what, response.status_code, len(self.statuses)))
        return response

    def cycle(self):
        product = self.shelf[self.cycles % len(self.shelf)]
        self.cycles += 1
        api = {"HTTP_ACCEPT": "application/json"}
        self._send("home anon", self.anon.get, "/")
        self._send("home user", self.user.get, "/")
        self._send("product anon", self.anon.get, reverse("shop:product", args=[product.pk]))
        self._send("cart user", self.user.get, reverse("shop:cart"))
        # alice's events are all about the first item: the items she just saw would be left
        # out of her recommendations (serving's history source), and her list is of others
        first = self.shelf[0]
        response = self._send("cart add", self.user.post, reverse("shop:cart_add", args=[first.pk]),
                              {"quantity": 1, "source": "t"})
        self.events += response.status_code == 302  # the cart add tracks one add_to_cart
        self._send("recs user", self.user.get, reverse("recommender:recommendations"), **api)
        self._send("recs anon", self.anon.get, reverse("recommender:recommendations"), **api)
        self._send("similar", self.anon.get, reverse("recommender:similar-items", args=[product.pk]), **api)
        self._send("trending", self.anon.get, reverse("recommender:trending"), **api)
        for client, event, item in ((self.anon, "view", product), (self.user, "click", first),
                                    (self.user, "purchase", first)):
            response = self._send(f"event {event}", client.post, reverse("recommender:events"),
                                  {"item": item.pk, "event": event}, content_type="application/json")
            self.events += response.status_code == 201

    def run(self, cycles=None, seconds=None):
        started = time.monotonic()
        count = 0
        while (count < cycles) if seconds is None else (time.monotonic() - started < seconds):
            self.cycle()
            count += 1
        return time.monotonic() - started


def _served_by_fast_path(client):
    """Whether a repeated GET of the user's recommendations is answered before DRF."""
    url = reverse("recommender:recommendations")
    client.get(url, HTTP_ACCEPT="application/json")  # stores the response if it was not
    with mock.patch.object(RecommendationsView, "get", autospec=True, side_effect=RecommendationsView.get) as drf:
        response = client.get(url, HTTP_ACCEPT="application/json")
    return response.status_code == 200 and not drf.called


@pytest.mark.parametrize("fault", ["shutdown", "pause"])
def test_site_keeps_serving_and_tracking_through_a_redis_outage(fault, outage_cache, shelf, alice, publish, client,
                                                                 caplog):
    """``shutdown``: the server exits (connections refused), and starts again empty.
    ``pause``: the process is stopped (SIGSTOP), so calls time out; then it goes on with its data."""
    _published_lists(shelf, alice, publish)
    loop = Loop(type(client), alice, shelf)
    caplog.set_level(logging.WARNING, logger="recommender")

    loop.run(cycles=3, seconds=OUTAGE_SECONDS or None)
    assert _served_by_fast_path(loop.user), "the fast path should serve from Redis before the outage"
    before = len(loop.statuses)

    outage_cache.stop() if fault == "shutdown" else outage_cache.pause()
    outage_started = time.monotonic()
    if OUTAGE_SECONDS:
        loop.run(seconds=OUTAGE_SECONDS)
    else:
        loop.run(cycles=OUTAGE_CYCLES)
    outage = time.monotonic() - outage_started
    during = len(loop.statuses) - before
    outage_cache.start() if fault == "shutdown" else outage_cache.resume()

    # the fast path serves from Redis again once the process retries (within RETRY_SECONDS)
    deadline = time.monotonic() + 10
    while True:
        loop.cycle()
        if _served_by_fast_path(loop.user):
            break
        assert time.monotonic() < deadline, "the fast path did not serve from Redis after the restart"
        time.sleep(0.1)
    stored = outage_cache.client().keys("*recommender:api:rec:*")
    assert stored, "no response stored in the restarted Redis"
    if OUTAGE_SECONDS:
        loop.run(seconds=OUTAGE_SECONDS)

    server_errors = sum(1 for error in loop.errors if error[1] >= 500)
    recorded = Interaction.objects.count()
    if REPORT:
        def timing(seconds):
            seconds = sorted(seconds)
            return f"median {seconds[len(seconds) // 2] * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms"

        print(f"\nredis outage ({fault}): {len(loop.statuses)} requests ({during} during a {outage:.1f} s outage), "
              f"{server_errors} responses >= 500, {loop.events} events accepted, {recorded} recorded; "
              f"Redis up: {timing(loop.seconds[:before])}; down: {timing(loop.seconds[before:before + during])}")
    assert loop.errors == []  # no 5xx, and no event refused
    assert during >= 12 * min(OUTAGE_CYCLES, 1)
    assert recorded == loop.events
    assert loop.events == 4 * loop.cycles  # every event POST and cart add was accepted
    warnings = [r for r in caplog.records if "cache unreachable" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage"


# Single pieces, against the same real server -------------------------------------------


def test_an_invalidation_skipped_during_the_outage_is_written_when_redis_answers(outage_cache, db):
    key = serving.user_token_key(7)
    serving.touch_user(7)
    before = published.get_many([key])[key]
    outage_cache.stop()
    serving.touch_user(7)  # a purchase while Redis is down: not raised, kept for later
    outage_cache.start()
    published._outage.retry_at = 0.0  # do not wait for RETRY_SECONDS
    published.get_many(["recommender:other"])  # the first call that reaches Redis writes it
    after = published.get_many([key])[key]
    assert after is not None and after != before


def test_an_auth_tombstone_skipped_during_the_outage_is_written_when_redis_answers(outage_cache, db):
    outage_cache.stop()
    identity.forget(7)  # the user changed their password while Redis is down
    outage_cache.start()
    published._outage.retry_at = 0.0
    assert published.mget_raw([identity.auth_key(7)]) == [b"-"]


def test_throttles_fail_open_when_redis_is_down(outage_cache, rf, db):
    from rest_framework.request import Request

    from recommender.api.throttling import EventsAnonThrottle

    settings_rate = {"events_anon": "1/min"}
    with mock.patch.object(EventsAnonThrottle, "get_rate", lambda self: settings_rate["events_anon"]):
        request = Request(rf.post("/"))
        request.user = mock.Mock(is_authenticated=False)
        assert EventsAnonThrottle().allow_request(request, None)
        assert not EventsAnonThrottle().allow_request(request, None)  # the limit holds with Redis up
        outage_cache.stop()
        assert EventsAnonThrottle().allow_request(request, None)  # down: let through, not a 500


def test_redis_cache_connects_and_reads_with_short_timeouts(settings):
    from django.core.cache import caches

    settings.CACHES = {"default": {"BACKEND": "recommender.fastpath.redis_cache.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    pool = caches["default"]._cache._get_connection_pool(write=True)
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.5
    assert pool.connection_kwargs["socket_timeout"] == 1.0
    settings.CACHES = {"default": {**settings.CACHES["default"], "OPTIONS": {"socket_timeout": 3}}}
    assert caches["default"]._cache._get_connection_pool(write=True).connection_kwargs["socket_timeout"] == 3


def test_lists_are_read_from_the_table_while_redis_is_down(outage_cache, shelf, publish):
    publish("similar", "itemknn", {shelf[0].pk: ranked(shelf[1:3])})
    outage_cache.stop()
    assert [row[0] for row in published.read("similar", "itemknn", shelf[0].pk)] == [p.pk for p in shelf[1:3]]
    lists = serving.read_lists([("similar", "itemknn", shelf[0].pk), ("similar", "itemknn", shelf[1].pk)])
    assert [row[0] for row in lists[("similar", "itemknn", shelf[0].pk)]] == [p.pk for p in shelf[1:3]]
    assert lists[("similar", "itemknn", shelf[1].pk)] is None
    assert published.mget_raw(["recommender:x"], counter="c", counter_ttl=5) == [None, None]  # nothing, no count


def test_near_cache_gives_up_fast_on_a_redis_that_does_not_answer_and_backs_off():
    import redis

    from recommender.fastpath import near_cache

    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        pool = redis.ConnectionPool.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", socket_timeout=5)
        near = near_cache.NearCache(pool, ["recommender:"])
        started = time.monotonic()
        with near._lock:
            assert not near._ready()
        assert time.monotonic() - started < 1.0  # the handshake's 0.25 s, not socket_timeout's 5 s
        delays = []
        for _attempt in range(5):
            near._retry_at = 0.0
            with near._lock:
                near._ready()
            delays.append(near._retry_at - time.monotonic())
        assert [round(d) for d in delays] == [2, 4, 8, 8, 8]

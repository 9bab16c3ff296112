"""Throttles of the recommender API, with rates from RECOMMENDER['THROTTLE_RATES'].

A scope without a rate is not throttled.
"""

import logging
import os
import threading
import time

from django.core.signals import setting_changed
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from recommender import served
from recommender.conf import rec_settings

logger = logging.getLogger(__name__)


class _SettingsRateMixin:
    """Rates from the settings; with Redis, a fixed-window counter: one round trip per request.

    DRF's own throttle keeps a list of request times and costs a cache get and a set;
    on the recommendations hot path that doubled the cost of the response itself.
    """

    def get_rate(self):
        return (rec_settings.THROTTLE_RATES or {}).get(self.scope)

    def counter_key(self, request, view):
        """The Redis key counting this request's window; None when not counted in Redis."""
        if self.rate is None:
            return None
        cache, client = served.backend()
        key = self.get_cache_key(request, view) if client is not None else None
        return self._window(cache, key)

    def counter_key_for(self, ident):
        """The Redis key counting the window of ``ident`` (a user's key, or a client address
        from ``get_ident``), keyed as DRF keys it; None when not counted in Redis."""
        if self.rate is None:
            return None
        cache, client = served.backend()
        if client is None:
            return None
        return self._window(cache, self.cache_format % {"scope": self.scope, "ident": ident})

    def _window(self, cache, key):
        if key is None:
            return None
        self.now = time.time()
        return cache.make_key(f"{key}:{int(self.now // self.duration)}")

    def judge(self, count):
        """Whether a request that brought the window's count to ``count`` may pass."""
        self.wait_time = self.duration - self.now % self.duration
        return count <= self.num_requests

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        window = self.counter_key(request, view)
        if window is None:
            if served.backend()[1] is None:
                return super().allow_request(request, view)
            return True  # nothing identifies the client
        _cache, client = served.backend()
        pipe = client.pipeline(transaction=False)
        pipe.incr(window)
        pipe.expire(window, self.duration + 1)
        count, _ok = pipe.execute()
        return self.judge(count)

    def wait(self):
        if hasattr(self, "wait_time"):
            return self.wait_time
        return super().wait()


class EventsAnonThrottle(_SettingsRateMixin, AnonRateThrottle):
    scope = "events_anon"


class EventsUserThrottle(_SettingsRateMixin, UserRateThrottle):
    scope = "events_user"


class _CountedOnceMixin:
    # The fast paths of the recommendation views count a request in the same Redis round
    # trip as their lookup. When it hands the request on to DRF (a cache
    # miss), DRF's throttle reuses that verdict instead of counting the request again.
    def allow_request(self, request, view):
        counted = getattr(request, "_recommender_counted", None)
        if counted is not None and self.scope == counted.scope:
            user = getattr(request, "user", None)
            authenticated = user is not None and user.is_authenticated
            if (user.pk == counted.pk) if authenticated else counted.pk is None:
                self.wait_time = counted.wait_time
                return counted.allowed
        return super().allow_request(request, view)


class Counted:
    """A request already counted against ``pk``'s window of ``scope`` (``pk`` None: an
    anonymous visitor's, by address), and the verdict."""

    __slots__ = ("scope", "pk", "allowed", "wait_time")

    def __init__(self, scope, pk, allowed, wait_time):
        self.scope, self.pk, self.allowed, self.wait_time = scope, pk, allowed, wait_time


class RecommendationsAnonThrottle(_CountedOnceMixin, _SettingsRateMixin, AnonRateThrottle):
    scope = "recommendations_anon"


class RecommendationsUserThrottle(_CountedOnceMixin, _SettingsRateMixin, UserRateThrottle):
    scope = "recommendations_user"


#: Adds a sync's counts to their windows and returns the totals: one command for all of
#: them (a pipeline of INCRBY and EXPIRE costs redis-py about 10 us per window).
SYNC_SCRIPT = """
local totals = {}
for i, key in ipairs(KEYS) do
  totals[i] = redis.call('INCRBY', key, ARGV[2 * i - 1])
  redis.call('EXPIRE', key, ARGV[2 * i])
end
return totals
"""
_sync_scripts = {}  # id(redis-py client) -> its registered script


class LocalCounts:
    """Throttle counts of the fast paths, kept in the process and added to Redis in batches.

    Counting every request in Redis costs the fast paths a round trip, which is most of
    their time once the near cache answers their reads. Instead each process counts its
    requests per window here, and a background thread adds them, every
    ``RECOMMENDER['THROTTLE_SYNC_INTERVAL']`` seconds, to the same Redis counters with
    one script call (``INCRBY`` per window), learning every process's total. A request
    is judged on that total plus this process's requests since: no request waits for
    Redis.

    The limit is therefore exact within a process and can be exceeded across processes
    only by what the other processes counted since their last sync (at 3,000 requests a
    second, about 150 requests over all clients in 50 ms). A client is never throttled
    early. DRF's own path (cache misses, other endpoints) still counts in Redis at once.
    If Redis is unreachable, the counts wait in the process for the next sync.
    """

    def __init__(self, background=True):
        self._lock = threading.Lock()
        self._background = background
        self._thread = None
        self._interval = 0.05
        self._reset()

    def reset(self):
        with self._lock:
            self._reset()

    def _reset(self):
        self._pid = os.getpid()
        self._pending = {}  # raw counter key -> [requests not yet sent, key ttl]
        self._in_flight = {}  # the same, sent to Redis by a sync that has not answered yet
        self._known = {}  # raw counter key -> (total in Redis at the last sync, forget after)

    def count(self, key, ttl, interval):
        """Count one request in window ``key``; the window's estimated total so far."""
        with self._lock:
            if self._pid != os.getpid():
                self._reset()  # a forked worker: the parent's counts are the parent's
                self._thread = None
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = [0, ttl]
            entry[0] += 1
            known = self._known.get(key)
            sent = self._in_flight.get(key)
            total = (known[0] if known is not None else 0) + (sent[0] if sent is not None else 0) + entry[0]
            self._interval = interval
            if self._background and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recommender-throttle-sync", daemon=True)
                self._thread.start()
        return total

    def _run(self):
        failed, last = False, time.monotonic()
        while True:
            time.sleep(min(self._interval, 0.25))  # a shorter interval set later takes effect soon
            if time.monotonic() - last < self._interval:
                continue
            last = time.monotonic()
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - Redis away: the counts wait for the next sync
                if not failed:
                    logger.warning("throttle counts not synced to Redis (%s); retrying", exc)
                failed = True
            else:
                failed = False

    def sync(self):
        """Add the pending counts to Redis and read back the totals (one round trip)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._in_flight = pending
        if not pending:
            return
        try:
            _cache, client = served.backend()
            script = _sync_scripts.get(id(client))
            if script is None:
                script = _sync_scripts[id(client)] = client.register_script(SYNC_SCRIPT)
            args = []
            for n, ttl in pending.values():
                args += (n, ttl)
            totals = script(keys=list(pending), args=args)
        except Exception:
            with self._lock:
                if self._in_flight is pending:  # not reset meanwhile: keep them for the next sync
                    for key, (n, ttl) in pending.items():
                        entry = self._pending.setdefault(key, [0, ttl])
                        entry[0] += n
                    self._in_flight = {}
            raise
        now = time.monotonic()
        with self._lock:
            if self._in_flight is not pending:
                return  # reset (settings changed) while Redis answered: these totals are stale
            known = {key: value for key, value in self._known.items() if value[1] > now}
            for (key, (_n, ttl)), total in zip(pending.items(), totals, strict=True):
                known[key] = (total, now + ttl)
            self._known = known
            self._in_flight = {}


#: The fast paths' counts in this process.
local_counts = LocalCounts()


def _settings_changed(*, setting, **kwargs):
    if setting in ("CACHES", "RECOMMENDER"):  # other counters, rates or Redis: start afresh
        local_counts.reset()


setting_changed.connect(_settings_changed)

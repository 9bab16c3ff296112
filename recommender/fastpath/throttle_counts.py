"""Throttle counts of the fast paths, kept in the process and added to Redis in batches
(see :class:`LocalCounts`)."""

import logging
import os
import threading
import time

from django.core.signals import setting_changed

from recommender.serving import published

logger = logging.getLogger("recommender.api.throttling")

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
            _cache, client = published.backend()
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

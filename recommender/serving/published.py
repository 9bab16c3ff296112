"""Writing precomputed lists: the database table ``ServedList`` plus the cache.

The refresh task publishes lists here; ``recommender.serving`` reads them on the
request path. A list is ``[[item_pk, score, because_item_pk_or_None], ...]``, best
first, made by a training run (``ServedList.run``). The cache holds the same list and its
run's id as pre-encoded JSON bytes under :func:`cache_key` (:func:`encode`), so a request
can serve it, and name the run that made it, without touching the database. A new run's
lists are new bytes even when their items are the same, so what is stored against a list's
bytes (rendered blocks, API responses) is remade when a new run publishes.

It is also the request path's only door to the cache, and keeps the site up when the
cache is unreachable (connection refused or timed out, :data:`CACHE_ERRORS`): reads
find nothing, so lists come from the table; writes (tokens, stored responses, auth
records, the item cache, throttle counts) are skipped; one warning is logged per
outage. After a failure the cache is left alone for :data:`RETRY_SECONDS`, then tried
again; invalidations skipped meanwhile (:func:`write` with ``replay_key``) are written
first. ``publish`` and ``forget`` (the refresh task) still raise, so the task fails and
is retried.
"""

import hashlib
import json
import logging
import threading
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import transaction

from recommender.conf import rec_settings
from recommender.models import ServedList

logger = logging.getLogger(__name__)

try:
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError
except ImportError:  # redis-py is optional
    #: What an unreachable cache raises (connection refused, reset, timed out).
    CACHE_ERRORS = (OSError,)
else:
    CACHE_ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError)

#: After a cache call failed, the request path skips the cache this long (seconds) before
#: probing it again, so an unreachable Redis costs one probe a second per process, not a
#: failed call per cache access.
RETRY_SECONDS = 1.0
#: Connect and reply timeout (seconds) of the probe that tells whether Redis answers again:
#: a paused or unreachable Redis costs a process this much a second, not ``socket_timeout``.
PROBE_TIMEOUT = 0.25


class _Outage:
    """Whether the cache is unreachable, and the invalidations to write once it answers again."""

    def __init__(self):
        self.down = False
        self.retry_at = 0.0
        self.replays = {}  # cache key -> write that failed (a token, a tombstone), run when it answers
        self.lock = threading.Lock()


_outage = _Outage()


def cache_down():
    """True while the request path skips the cache (a call failed less than RETRY_SECONDS ago)."""
    return _outage.down and time.monotonic() < _outage.retry_at


def _failed(operation, exc):
    if not _outage.down:  # one warning per outage
        logger.warning("cache unreachable (%s: %s); reading from the database and skipping cache writes "
                       "until it answers again", operation, exc)
    _outage.down = True
    _outage.retry_at = time.monotonic() + RETRY_SECONDS


def _recovered():
    """After the retry delay: whether the cache answers again. It first writes the
    invalidations skipped meanwhile, so that no read after the outage sees what they
    replace."""
    with _outage.lock:
        _outage.retry_at = time.monotonic() + RETRY_SECONDS  # other threads skip while this one probes
        replays = dict(_outage.replays)
    try:
        _probe()
        for replay in replays.values():
            replay()
    except CACHE_ERRORS as exc:
        _failed("retry", exc)
        return False
    with _outage.lock:
        for key, replay in replays.items():
            if _outage.replays.get(key) is replay:  # not skipped again meanwhile
                del _outage.replays[key]
        _outage.down = False
    logger.warning("cache reachable again; wrote %d invalidation(s) skipped meanwhile", len(replays))
    return True


def _probe():
    """PING on a connection of its own with short timeouts (a ``get`` for other caches)."""
    cache, client = backend()
    if client is None:
        cache.get("recommender:probe")
        return
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_connect_timeout": PROBE_TIMEOUT, "socket_timeout": PROBE_TIMEOUT}
    conn = pool.connection_class(**kwargs)
    try:
        conn.send_command("PING")  # connects (and authenticates) first
        conn.read_response()
    finally:
        conn.disconnect()


def _guarded(operation, call, fallback):
    """``call()``, or ``fallback`` when the cache is unreachable (now or a moment ago)."""
    if _outage.down and (time.monotonic() < _outage.retry_at or not _recovered()):
        return fallback
    try:
        return call()
    except CACHE_ERRORS as exc:
        _failed(operation, exc)
        return fallback


def write(operation, call, replay_key=None):
    """Run ``call()``, a cache write, unless the cache is unreachable; returns whether it ran.

    ``replay_key``: the write is an invalidation (a token, a tombstone) that must not be
    lost. If skipped, this process runs it (the last one per key) before anything else
    once the cache answers again, so that values cached before the outage are not served
    as current after it.
    """
    def attempt():
        call()
        return True

    done = _guarded(operation, attempt, False)
    if not done and replay_key is not None:
        with _outage.lock:
            _outage.replays[replay_key] = call
    return done


def cache_set(key, value, timeout, replay=False):
    """``cache.set`` skipped when the cache is unreachable (see :func:`write` for ``replay``)."""
    return write("set", lambda: get_cache().set(key, value, timeout), key if replay else None)


def cache_set_many(values, timeout):
    """``cache.set_many`` skipped when the cache is unreachable."""
    if values:
        write("set_many", lambda: get_cache().set_many(values, timeout=timeout))


#: Layout of a cached list (:func:`encode`), part of its key: a deploy that changes the
#: layout writes and reads new keys, so no process reads a layout it does not know.
LIST_LAYOUT = "v2"


def cache_key(kind, algorithm, subject):
    return f"recommender:list:{kind}:{algorithm}:{subject}:{LIST_LAYOUT}"


class ServedItems(list):
    """A published list's items, ``[[item_pk, score, because], ...]``, and ``run``: the id of
    the training run that made it (None for a list published without a run)."""

    __slots__ = ("run",)

    def __init__(self, items=(), run=None):
        super().__init__(items)
        self.run = run


def run_id(run):
    """The id of ``run`` (a ``TrainingRun``, its id, or None)."""
    run = getattr(run, "pk", run)
    return None if run is None else int(run)


def encode(items, run=None):
    """The cached bytes of a list made by ``run``: ``{"items":[...],"run":id or null}``."""
    return json.dumps({"items": list(items), "run": run_id(run)}, separators=(",", ":")).encode()


def decode(raw):
    """:class:`ServedItems` from cached bytes (None for the "no such list" marker)."""
    value = json.loads(raw)
    if value is None:
        return None
    if isinstance(value, dict):
        return ServedItems(value.get("items") or [], value.get("run"))
    return ServedItems(value)  # a bare list: items only


def get_cache():
    return caches[rec_settings.CACHE_ALIAS]


_clients = {}  # alias -> (cache, redis-py client), for Django's RedisCache


def backend():
    """The cache and, for Django's RedisCache, one redis-py client kept for the process.

    Django's RedisCache builds a new client object on every call, which costs about as
    much as the round trip itself; the request path reuses one. The
    pair is kept for the process (``caches[alias]`` alone costs a thread-local lookup).
    """
    alias = rec_settings.CACHE_ALIAS
    found = _clients.get(alias)
    if found is not None:
        return found
    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        return cache, None
    try:  # Django's RedisCacheClient (django/core/cache/backends/redis.py)
        client = cache._cache.get_client(write=True)
    except AttributeError:  # a RedisCache subclass built differently: use the cache API
        return cache, None
    found = _clients[alias] = (cache, client)
    return found


def _forget_clients(*, setting, **kwargs):
    if setting in ("CACHES", "RECOMMENDER"):
        _clients.clear()


setting_changed.connect(_forget_clients)


def near_cache():
    """The process's near cache of the recommender's cache (:mod:`recommender.fastpath.near_cache`), or None."""
    return getattr(backend()[0], "near_cache", None)


def _mget(cache, client, raw_keys):
    near = getattr(cache, "near_cache", None)
    return client.mget(raw_keys) if near is None else near.mget(client, raw_keys)


def get_many(keys):
    """``{key: value}`` of the keys found in the cache, in one round trip (none if all are near).

    An unreachable cache finds nothing.
    """
    return _guarded("get_many", lambda: _get_many(keys), {})


def _get_many(keys):
    cache, client = backend()
    if client is None:
        return cache.get_many(keys)
    loads = cache._cache._serializer.loads
    raw = _mget(cache, client, [cache.make_key(key) for key in keys])
    return {key: loads(value) for key, value in zip(keys, raw, strict=True) if value is not None}


def mget_raw(keys, counter=None, counter_ttl=None):
    """Raw values of several cache keys (bytes with redis-py, objects otherwise), in order.

    With ``counter`` (a raw Redis key), the same round trip also increments it (a
    throttle's window) and the count is returned as a last element. An unreachable
    cache finds nothing (None values, and a None count).
    """
    missing = [None] * (len(keys) + (counter is not None))
    return _guarded("mget", lambda: _mget_raw(keys, counter, counter_ttl), missing)


def incr_window(counter, ttl):
    """Count one request in the raw Redis key ``counter`` (a throttle window, kept ``ttl``
    seconds); the window's new count, or None when Redis is unreachable."""
    def call():
        pipe = backend()[1].pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, ttl)
        return pipe.execute()[0]

    return _guarded("incr", call, None)


def _mget_raw(keys, counter, counter_ttl):
    cache, client = backend()
    if client is not None:
        raw_keys = [cache.make_key(key) for key in keys]
        if counter is None:
            return _mget(cache, client, raw_keys)
        pipe = client.pipeline(transaction=False)
        pipe.mget(raw_keys)
        pipe.incr(counter)
        pipe.expire(counter, counter_ttl)
        values, count, _ok = pipe.execute()
        return [*values, count]
    found = cache.get_many(keys)
    return [found.get(key) for key in keys]


def fingerprint(values):
    """A short digest (bytes) of raw cache values, telling whether any of them changed."""
    digest = hashlib.blake2b(digest_size=10)
    for value in values:
        if value is None:
            digest.update(b"\x00")
            continue
        if not isinstance(value, bytes):
            value = str(value).encode()
        digest.update(len(value).to_bytes(4, "big"))
        digest.update(value)
    return digest.hexdigest().encode()



def set_raw(key, value, timeout):
    """Store ``value`` (bytes) as is, so that :func:`mget_raw` returns the same bytes (skipped
    when the cache is unreachable)."""
    _guarded("set", lambda: _set_raw(key, value, timeout), None)


def _set_raw(key, value, timeout):
    cache, client = backend()
    if client is not None:
        raw_key = cache.make_key(key)
        client.set(raw_key, value, ex=timeout)
        forget_near([raw_key])
    else:
        cache.set(key, value, timeout)


def delete_matching(patterns, batch=500):
    """Delete the cache keys matching glob ``patterns`` (e.g. ``"recommender:api:rec:7:*"``).

    With Django's RedisCache: a SCAN per pattern and DEL in batches (meant for rare events
    such as a user's deletion, not the request path). Other caches cannot list their keys:
    nothing is deleted there, and the entries expire with their timeout (their fingerprints
    no longer match once the lists and tokens they watch changed). Skipped while the cache
    is unreachable. Returns the number of keys deleted.
    """
    def run():
        cache, client = backend()
        if client is None:
            return 0
        deleted = 0
        for pattern in patterns:
            found = []
            for key in client.scan_iter(match=cache.make_key(pattern), count=1000):
                found.append(key)
                if len(found) >= batch:
                    deleted += client.delete(*found)
                    forget_near(found)
                    found = []
            if found:
                deleted += client.delete(*found)
                forget_near(found)
        return deleted

    return _guarded("delete_matching", run, 0)


def forget_near(raw_keys):
    """Drop raw keys this process just wrote with the raw client from its near cache."""
    near = near_cache()
    if near is not None:
        near.forget(raw_keys)


def publish(kind, algorithm, lists, run=None, batch_size=1000):
    """Store ``{subject: items}`` lists of one kind and algorithm, made by ``run`` (a
    ``TrainingRun`` or its id), replacing older ones.

    Idempotent: publishing the same lists twice leaves one row per subject.
    """
    cache = get_cache()
    subjects = list(lists)
    for start in range(0, len(subjects), batch_size):
        chunk = subjects[start:start + batch_size]
        rows = [ServedList(kind=kind, algorithm=algorithm, subject=int(subject),
                           items=lists[subject], run_id=run_id(run)) for subject in chunk]
        with transaction.atomic():
            ServedList.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["kind", "algorithm", "subject"],
                update_fields=["items", "run", "updated"],
            )
        cache.set_many({cache_key(kind, algorithm, s): encode(lists[s], run) for s in chunk},
                       timeout=rec_settings.CACHE_TIMEOUT)


def forget(kind, algorithm, subjects):
    """Remove lists (e.g. of users who no longer have one after a retrain)."""
    subjects = [int(s) for s in subjects]
    ServedList.objects.filter(kind=kind, algorithm=algorithm, subject__in=subjects).delete()
    get_cache().delete_many([cache_key(kind, algorithm, s) for s in subjects])


def read(kind, algorithm, subject):
    """One list (:class:`ServedItems`, with its run): from the cache, else from the table
    (then cached). ``None`` if there is none.

    With the cache unreachable it reads the table.
    """
    key = cache_key(kind, algorithm, subject)
    raw = _guarded("get", lambda: get_cache().get(key), None)
    if raw is None:
        row = ServedList.objects.filter(kind=kind, algorithm=algorithm, subject=int(subject)).values_list(
            "items", "run_id").first()
        if row is None:
            return None
        raw = encode(*row)
        cache_set(key, raw, rec_settings.CACHE_TIMEOUT)
    return decode(raw)

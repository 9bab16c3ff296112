"""Writing precomputed lists: the database table ``ServedList`` plus the cache.

The refresh task publishes lists here; ``recommender.serving`` reads them on the
request path. A list is ``[[item_pk, score, because_item_pk_or_None], ...]``, best
first. The cache holds the same list as pre-encoded JSON bytes under
:func:`cache_key`, so a request can serve it without touching the database.
"""

import hashlib
import json

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import transaction

from recommender.conf import rec_settings
from recommender.models import ServedList


def cache_key(kind, algorithm, subject):
    return f"recommender:list:{kind}:{algorithm}:{subject}"


def encode(items):
    return json.dumps(items, separators=(",", ":")).encode()


def get_cache():
    return caches[rec_settings.CACHE_ALIAS]


_clients = {}  # alias -> (cache, redis-py client), for Django's RedisCache


def backend():
    """The cache and, for Django's RedisCache, one redis-py client kept for the process.

    Django's RedisCache builds a new client object on every call, which costs about as
    much as the round trip itself (MEASUREMENTS.md); the request path reuses one. The
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
    """``{key: value}`` of the keys found in the cache, in one round trip (none if all are near)."""
    cache, client = backend()
    if client is None:
        return cache.get_many(keys)
    loads = cache._cache._serializer.loads
    raw = _mget(cache, client, [cache.make_key(key) for key in keys])
    return {key: loads(value) for key, value in zip(keys, raw, strict=True) if value is not None}


def mget_raw(keys, counter=None, counter_ttl=None):
    """Raw values of several cache keys (bytes with redis-py, objects otherwise), in order.

    With ``counter`` (a raw Redis key), the same round trip also increments it (a
    throttle's window) and the count is returned as a last element.
    """
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
    """Store ``value`` (bytes) as is, so that :func:`mget_raw` returns the same bytes."""
    cache, client = backend()
    if client is not None:
        raw_key = cache.make_key(key)
        client.set(raw_key, value, ex=timeout)
        forget_near([raw_key])
    else:
        cache.set(key, value, timeout)


def forget_near(raw_keys):
    """Drop raw keys this process just wrote with the raw client from its near cache."""
    near = near_cache()
    if near is not None:
        near.forget(raw_keys)


def publish(kind, algorithm, lists, run=None, batch_size=1000):
    """Store ``{subject: items}`` lists of one kind and algorithm, replacing older ones.

    Idempotent: publishing the same lists twice leaves one row per subject.
    """
    cache = get_cache()
    subjects = list(lists)
    for start in range(0, len(subjects), batch_size):
        chunk = subjects[start:start + batch_size]
        rows = [ServedList(kind=kind, algorithm=algorithm, subject=int(subject),
                           items=lists[subject], run=run) for subject in chunk]
        with transaction.atomic():
            ServedList.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["kind", "algorithm", "subject"],
                update_fields=["items", "run", "updated"],
            )
        cache.set_many({cache_key(kind, algorithm, s): encode(lists[s]) for s in chunk},
                       timeout=rec_settings.CACHE_TIMEOUT)


def forget(kind, algorithm, subjects):
    """Remove lists (e.g. of users who no longer have one after a retrain)."""
    subjects = [int(s) for s in subjects]
    ServedList.objects.filter(kind=kind, algorithm=algorithm, subject__in=subjects).delete()
    get_cache().delete_many([cache_key(kind, algorithm, s) for s in subjects])


def read(kind, algorithm, subject):
    """One list: from the cache, else from the table (then cached). ``None`` if there is none."""
    cache = get_cache()
    key = cache_key(kind, algorithm, subject)
    raw = cache.get(key)
    if raw is None:
        row = ServedList.objects.filter(kind=kind, algorithm=algorithm, subject=int(subject)).values_list(
            "items", flat=True).first()
        if row is None:
            return None
        raw = encode(row)
        cache.set(key, raw, timeout=rec_settings.CACHE_TIMEOUT)
    return json.loads(raw)

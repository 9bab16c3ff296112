"""Django's Redis cache backend, keeping one redis-py client per process, with a near cache.

``django.core.cache.backends.redis.RedisCache`` builds a new ``redis.Redis`` object on
every call (``RedisCacheClient.get_client``), and building one registers some 170
response callbacks: on a loopback Redis that costs about as much as the round trip
itself. Sessions kept in the cache (``cache`` and ``cached_db`` engines) pay it on every
request. This backend is the same cache with one client per connection pool, which is
how redis-py clients are meant to be used (they are thread-safe; the pool reconnects
after a fork)::

    CACHES = {"default": {"BACKEND": "recommender.fastpath.redis_cache.RedisCache",
                          "LOCATION": "redis://127.0.0.1:6379/0"}}

It also keeps a *near cache* (:mod:`recommender.fastpath.near_cache`): a per-process copy of the
keys under some prefixes, which Redis itself invalidates, so the request path reads
them without a round trip. By default it keeps the recommender's own keys
(``recommender:``); add the session keys to serve logged-in visitors' sessions from it
too (``cache`` and ``cached_db`` session engines)::

    "OPTIONS": {"NEAR_CACHE": {"PREFIXES": ["recommender:", "django.contrib.sessions."],
                               "MAX_ENTRIES": 20000}}

Unless ``OPTIONS`` say otherwise, connections give up after :data:`DEFAULT_TIMEOUTS`
(redis-py waits forever by default), so an unreachable Redis fails a call in at most a
second instead of hanging the request; the recommender then serves from the database
(docs/serving.md, "When Redis is down")::

    "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}

``"NEAR_CACHE": None`` turns it off. Prefixes are cache keys before Django's
``KEY_PREFIX`` and version are added (with the default ``KEY_FUNCTION``). Everything
else (options, serializer, key functions) is Django's. ``django-redis``'s client reuses
its clients too; the recommender works with either, without the near cache.
"""

import functools
import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

from recommender.fastpath.near_cache import NearCache

__all__ = ["RedisCache", "DEFAULT_NEAR_CACHE", "DEFAULT_TIMEOUTS"]

DEFAULT_NEAR_CACHE = {"PREFIXES": ["recommender:"], "MAX_ENTRIES": 20_000}
#: Seconds to connect and to wait for a reply, unless ``OPTIONS`` set them (redis-py: no limit).
DEFAULT_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}

# One near cache per process and configuration, shared by the per-thread cache objects
# Django makes (``caches[alias]`` is thread-local).
_near_caches = {}
_near_lock = threading.Lock()


def _forgets(keys_of):
    """Wrap a write of Django's client so that this process's near cache drops the raw keys
    it wrote, at once (Redis' invalidation message reaches the other processes)."""

    def wrap(write):
        @functools.wraps(write)
        def method(self, *args, **kwargs):
            try:
                return write(self, *args, **kwargs)
            finally:
                near = self.near_cache()
                if near is not None:
                    near.forget(keys_of(*args))

        return method

    return wrap


def _one_key(key, *rest):
    return [key]


def _all_keys(keys, *rest):
    return list(keys)


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's client wrapper, building each ``redis.Redis`` once per pool; its writes
    drop what they wrote from the near cache."""

    near_cache = staticmethod(lambda: None)  # set by RedisCache

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client

    add = _forgets(_one_key)(RedisCacheClient.add)
    set = _forgets(_one_key)(RedisCacheClient.set)
    touch = _forgets(_one_key)(RedisCacheClient.touch)
    delete = _forgets(_one_key)(RedisCacheClient.delete)
    incr = _forgets(_one_key)(RedisCacheClient.incr)
    set_many = _forgets(_all_keys)(RedisCacheClient.set_many)  # data: {key: value}
    delete_many = _forgets(_all_keys)(RedisCacheClient.delete_many)

    def clear(self):
        try:
            return super().clear()
        finally:
            near = self.near_cache()
            if near is not None:
                near.clear()


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        options = {**DEFAULT_TIMEOUTS, **(params.get("OPTIONS") or {})}
        near = options.pop("NEAR_CACHE", DEFAULT_NEAR_CACHE)
        super().__init__(server, {**params, "OPTIONS": options})
        self._class = ReusingRedisCacheClient
        self._near_options = None if near is None else {**DEFAULT_NEAR_CACHE, **near}
        self._near = None

    @cached_property
    def _cache(self):
        client = self._class(self._servers, **self._options)
        client.near_cache = lambda: self.near_cache
        return client

    @property
    def near_cache(self):
        """This process's :class:`~recommender.fastpath.near_cache.NearCache`, or None when turned off."""
        if self._near is not None or self._near_options is None:
            return self._near
        prefixes = tuple(self.make_key(prefix) for prefix in self._near_options["PREFIXES"])
        ident = (tuple(self._servers), prefixes, self._near_options["MAX_ENTRIES"])
        near = _near_caches.get(ident)
        if near is None:
            with _near_lock:
                near = _near_caches.get(ident)
                if near is None:
                    pool = self._cache._get_connection_pool(write=True)
                    near = _near_caches[ident] = NearCache(pool, prefixes, self._near_options["MAX_ENTRIES"])
        self._near = near
        return near

    def _near_for(self, key):
        near = self.near_cache
        return near if near is not None and near.keeps(key) else None

    # reads: from the near cache when it keeps the key. Its keys are read from the primary
    # (the first server), which its tracking connection watches; a replica may lag. ----------

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        near = self._near_for(key)
        if near is None:
            return self._cache.get(key, default)
        value = near.get(self._cache.get_client(key, write=True), key)
        return default if value is None else self._cache._serializer.loads(value)

    def get_many(self, keys, version=None):
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        near = self.near_cache
        if near is None or not key_map:
            return {key_map[k]: v for k, v in self._cache.get_many(key_map.keys()).items()}
        raw_keys = list(key_map)
        values = near.mget(self._cache.get_client(None, write=True), raw_keys)
        loads = self._cache._serializer.loads
        return {key_map[k]: loads(v) for k, v in zip(raw_keys, values, strict=True) if v is not None}

    def has_key(self, key, version=None):
        raw = self.make_and_validate_key(key, version=version)
        near = self._near_for(raw)
        if near is None:
            return self._cache.has_key(raw)
        return near.get(self._cache.get_client(raw, write=True), raw) is not None

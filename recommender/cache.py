"""Django's Redis cache backend, keeping one redis-py client per process.

``django.core.cache.backends.redis.RedisCache`` builds a new ``redis.Redis`` object on
every call (``RedisCacheClient.get_client``), and building one registers some 170
response callbacks: on a loopback Redis that costs about as much as the round trip
itself. Sessions kept in the cache (``cache`` and ``cached_db`` engines) pay it on every
request. This backend is the same cache with one client per connection pool, which is
how redis-py clients are meant to be used (they are thread-safe; the pool reconnects
after a fork)::

    CACHES = {"default": {"BACKEND": "recommender.cache.RedisCache",
                          "LOCATION": "redis://127.0.0.1:6379/0"}}

Everything else (options, serializer, key functions) is Django's. ``django-redis``'s
client reuses its clients too; either works with the recommender.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

__all__ = ["RedisCache"]


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's client wrapper, building each ``redis.Redis`` once per pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

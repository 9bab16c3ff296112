"""Pre-rendered JSON of the recommendations endpoint, checked with one cache round trip.

A logged-in user's response changes only when a new list is published for them,
when an item changes (availability, title, price) or when they buy something. The
response bytes are stored behind a fingerprint of the user's list as cached, the
items token and the user's token (:mod:`recommender.serving`); one MGET of those
three keys and the response tells whether the stored bytes are still right. With
Django's RedisCache the MGET goes through one module-level redis-py client, which
costs about half of a ``cache.get`` (docs/serving.md, MEASUREMENTS.md).
"""

import hashlib
import json

from django.utils.translation import get_language

from recommender import served, serving

#: A response whose page holds fallback items (history, trending) is kept this long only.
SHORT_TIMEOUT = 60

def mget(keys, counter=None, counter_ttl=None):
    """Raw values of several cache keys (bytes with redis-py, objects otherwise), in order.

    With ``counter`` (a raw Redis key), the same round trip also increments it (a
    throttle's window) and the count is returned as a last element.
    """
    cache, client = served.backend()
    if client is not None:
        raw_keys = [cache.make_key(key) for key in keys]
        if counter is None:
            return client.mget(raw_keys)
        pipe = client.pipeline(transaction=False)
        pipe.mget(raw_keys)
        pipe.incr(counter)
        pipe.expire(counter, counter_ttl)
        values, count, _ok = pipe.execute()
        return [*values, count]
    found = cache.get_many(keys)
    return [found.get(key) for key in keys]


def _fingerprint(values):
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


def response_key(request, user_pk):
    query = sorted((key, tuple(values)) for key, values in request.GET.lists())
    raw = f"{get_language()}|{request.scheme}://{request.get_host()}{request.path}|{query}"
    return f"recommender:api:rec:{user_pk}:{hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()}"


class Lookup:
    """The result of :func:`lookup`: the stored body if still valid, and what to store it under."""

    __slots__ = ("key", "fingerprint", "body", "count")

    def __init__(self, key, fingerprint, body, count=None):
        self.key, self.fingerprint, self.body, self.count = key, fingerprint, body, count


def lookup(request, user_pk, algorithm, counter=None, counter_ttl=None):
    """The stored response, checked (and a throttle ``counter`` counted) in one round trip."""
    key = response_key(request, user_pk)
    values = mget([served.cache_key("for_user", algorithm, int(user_pk)), serving.ITEMS_TOKEN_KEY,
                   serving.user_token_key(user_pk), key], counter=counter, counter_ttl=counter_ttl)
    fingerprint = _fingerprint(values[:3])
    stored = values[3]
    body = None
    if isinstance(stored, bytes) and stored[:len(fingerprint)] == fingerprint:
        body = stored[len(fingerprint):]
    return Lookup(key, fingerprint, body, values[4] if counter is not None else None)


def store(found, body, timeout):
    """Keep ``body`` (bytes) for the lookup's request, valid while its fingerprint holds."""
    cache, client = served.backend()
    value = found.fingerprint + body
    if client is not None:
        client.set(cache.make_key(found.key), value, ex=timeout)
    else:
        cache.set(found.key, value, timeout)


def encode(data):
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

"""Pre-rendered JSON of the recommendations endpoint, checked with one cache round trip.

A logged-in user's response changes only when a new list is published for them,
when an item changes (availability, title, price) or when they buy something. The
response bytes are stored behind a fingerprint of the user's list as cached, the
items token and the user's token (:mod:`recommender.serving`); one MGET of those
three keys and the response tells whether the stored bytes are still right. With
Django's RedisCache the MGET goes through one module-level redis-py client, which
costs about half of a ``cache.get`` (docs/serving.md).
"""

import hashlib
import json

from django.utils.translation import get_language

from recommender import serving
from recommender.serving import published

#: A response whose page holds fallback items (history, trending) is kept this long only.
SHORT_TIMEOUT = 60

def shared_subject(variant=None):
    """The subject of an anonymous visitors' shared response: "anon", or "anon:<algorithm>"
    for the visitors an experiment gives that variant."""
    return "anon" if variant is None else f"anon:{variant}"


def response_key(request, user_pk):
    query = sorted((key, tuple(values)) for key, values in request.GET.lists())
    raw = f"{get_language()}|{request.scheme}://{request.get_host()}{request.path}|{query}"
    return f"recommender:api:rec:{user_pk}:{hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()}"


class Lookup:
    """The result of :func:`lookup`: the stored body if still valid, and what to store it under.

    ``count`` is the throttle counter's new value and ``extra`` the raw values of the
    extra keys, when asked for.
    """

    __slots__ = ("key", "fingerprint", "body", "count", "extra")

    def __init__(self, key, fingerprint, body, count=None, extra=()):
        self.key, self.fingerprint, self.body, self.count, self.extra = key, fingerprint, body, count, extra


def lookup(request, user_pk, algorithm):
    """A user's stored response for this request, checked in one round trip."""
    return lookup_watched(request, user_pk, user_watched(user_pk, algorithm))


def user_watched(user_pk, algorithm):
    """The cache keys whose values decide whether a user's stored response is still right."""
    return [published.cache_key("for_user", algorithm, user_pk), serving.ITEMS_TOKEN_KEY,
            serving.user_token_key(user_pk)]


def lookup_watched(request, subject, watched, counter=None, counter_ttl=None, extra=()):
    """The stored response of ``subject`` (a user key, or "anon"), valid while the raw values
    of the ``watched`` cache keys are unchanged; one round trip.

    With ``counter`` (a raw Redis key) the same round trip counts a throttle window;
    ``extra`` cache keys are read along (the user's auth record).
    """
    key = response_key(request, subject)
    keys = [*watched, key, *extra]
    values = published.mget_raw(keys, counter=counter, counter_ttl=counter_ttl)
    n = len(watched)
    fingerprint = published.fingerprint(values[:n])
    stored = values[n]
    body = None
    if isinstance(stored, bytes) and stored[:len(fingerprint)] == fingerprint:
        body = stored[len(fingerprint):]
    return Lookup(key, fingerprint, body, values[len(keys)] if counter is not None else None,
                  values[n + 1:len(keys)])


def store(found, body, timeout):
    """Keep ``body`` (bytes) for the lookup's request, valid while its fingerprint holds."""
    published.set_raw(found.key, found.fingerprint + body, timeout)


def encode(data):
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

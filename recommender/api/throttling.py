"""Throttles of the recommender API, with rates from RECOMMENDER['THROTTLE_RATES'].

A scope without a rate is not throttled.
"""

import time

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from recommender.conf import rec_settings
from recommender.serving import published


class _SettingsRateMixin:
    """Rates from the settings; with Redis, a fixed-window counter: one round trip per request.

    DRF's own throttle keeps a list of request times and costs a cache get and a set;
    on the recommendations hot path that doubled the cost of the response itself.
    """

    def get_rate(self):
        return (rec_settings.THROTTLE_RATES or {}).get(self.scope)

    def get_ident(self, request):
        """The client's address: REMOTE_ADDR, or behind ``TRUSTED_PROXY_COUNT`` proxies the
        X-Forwarded-For entry that many places from the right (what the nearest trusted proxy
        saw). DRF's own ``get_ident`` takes the whole header when ``NUM_PROXIES`` is unset, so
        a client that writes a new X-Forwarded-For each time escapes the anonymous throttle."""
        count = rec_settings.TRUSTED_PROXY_COUNT
        if count is None:
            count = api_settings.NUM_PROXIES or 0
        remote_addr = request.META.get("REMOTE_ADDR")
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
        if not count or not forwarded:
            return remote_addr
        addresses = forwarded.split(",")
        return addresses[-min(count, len(addresses))].strip()

    def counter_key(self, request, view):
        """The Redis key counting this request's window; None when not counted in Redis."""
        if self.rate is None:
            return None
        cache, client = published.backend()
        key = self.get_cache_key(request, view) if client is not None else None
        return self._window(cache, key)

    def counter_key_for(self, ident):
        """The Redis key counting the window of ``ident`` (a user's key, or a client address
        from ``get_ident``), keyed as DRF keys it; None when not counted in Redis."""
        if self.rate is None:
            return None
        cache, client = published.backend()
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
            if published.backend()[1] is None:
                return super().allow_request(request, view)
            return True  # nothing identifies the client
        count = published.incr_window(window, self.duration + 1)
        if count is None:  # Redis unreachable: fail open (published logs it once per outage)
            return True
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
        context = getattr(view, "kwargs", {}).get("fastpath") if view is not None else None
        counted = context.counted if context is not None else None
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

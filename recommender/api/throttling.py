"""Throttles of the recommender API, with rates from RECOMMENDER['THROTTLE_RATES'].

A scope without a rate is not throttled.
"""

import time

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from recommender import served
from recommender.conf import rec_settings


class _SettingsRateMixin:
    """Rates from the settings; with Redis, a fixed-window counter: one round trip per request.

    DRF's own throttle keeps a list of request times and costs a cache get and a set;
    on the recommendations hot path that doubled the cost of the response itself.
    """

    def get_rate(self):
        return (rec_settings.THROTTLE_RATES or {}).get(self.scope)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        cache, client = served.backend()
        if client is None:
            return super().allow_request(request, view)
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = time.time()
        window = cache.make_key(f"{key}:{int(now // self.duration)}")
        pipe = client.pipeline(transaction=False)
        pipe.incr(window)
        pipe.expire(window, self.duration + 1)
        count, _ok = pipe.execute()
        self.wait_time = self.duration - now % self.duration
        return count <= self.num_requests

    def wait(self):
        if hasattr(self, "wait_time"):
            return self.wait_time
        return super().wait()


class EventsAnonThrottle(_SettingsRateMixin, AnonRateThrottle):
    scope = "events_anon"


class EventsUserThrottle(_SettingsRateMixin, UserRateThrottle):
    scope = "events_user"


class _CountedOnceMixin:
    # The fast path of the recommendations view checks the user's rate before it
    # hands a cache miss to DRF: the request is then not counted twice.
    def allow_request(self, request, view):
        if getattr(request, "_recommender_throttled", False):
            return True
        return super().allow_request(request, view)


class RecommendationsAnonThrottle(_CountedOnceMixin, _SettingsRateMixin, AnonRateThrottle):
    scope = "recommendations_anon"


class RecommendationsUserThrottle(_CountedOnceMixin, _SettingsRateMixin, UserRateThrottle):
    scope = "recommendations_user"

"""Throttles of the recommender API, with rates from RECOMMENDER['THROTTLE_RATES'].

A scope without a rate is not throttled.
"""

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from recommender.conf import rec_settings


class _SettingsRateMixin:
    def get_rate(self):
        return (rec_settings.THROTTLE_RATES or {}).get(self.scope)


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

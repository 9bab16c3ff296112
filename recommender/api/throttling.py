"""Throttles for the events endpoint, with rates from RECOMMENDER['THROTTLE_RATES']."""

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from recommender.conf import rec_settings


class _SettingsRateMixin:
    def get_rate(self):
        return (rec_settings.THROTTLE_RATES or {}).get(self.scope)


class EventsAnonThrottle(_SettingsRateMixin, AnonRateThrottle):
    scope = "events_anon"


class EventsUserThrottle(_SettingsRateMixin, UserRateThrottle):
    scope = "events_user"

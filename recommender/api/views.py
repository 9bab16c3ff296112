"""API views: record events and read one's own history; the defaults every API view shares."""

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from recommender import serving
from recommender.api.exceptions import exception_handler
from recommender.api.parsers import PARSER_CLASSES
from recommender.api.schema import OpenApiParameter, PolymorphicProxySerializer, errors, extend_schema
from recommender.api.serializers import (
    EventBatchSerializer,
    EventsCreatedSerializer,
    EventSerializer,
    InteractionSerializer,
)
from recommender.api.throttling import EventsAnonThrottle, EventsUserThrottle
from recommender.conf import rec_settings
from recommender.models import Interaction
from recommender.tracking.events import visitor_of
from recommender.training import follow


class APIDefaultsMixin:
    """What every recommender API view shares, whatever the site's ``REST_FRAMEWORK`` says:
    bounded parsers (:mod:`recommender.api.parsers`) and JSON answers for oversized bodies
    and database outages (:mod:`recommender.api.exceptions`)."""

    parser_classes = PARSER_CLASSES

    def get_exception_handler(self):
        return exception_handler


class NoSession(PermissionDenied):
    default_detail = gettext_lazy("Anonymous events are recorded in the visitor's session and this request has "
                                  "none: load a page that includes the recommender script first.")
    default_code = "no_session"


class CanTrack(BasePermission):
    """Logged-in users always; anonymous visitors when TRACK_ANONYMOUS is on."""

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated) or rec_settings.TRACK_ANONYMOUS


class HistoryPagination(CursorPagination):
    ordering = ("-timestamp", "-id")
    page_size = 50


#: Session cookie, or anonymous (allowed while TRACK_ANONYMOUS is on, the default: else 403).
_EVENTS_AUTH = [{"cookieAuth": []}, {}]
_ANONYMOUS_403 = gettext_lazy(
    "Anonymous while TRACK_ANONYMOUS is off; a POST without the CSRF token, or anonymous without a "
    "session (a page that includes the recommender script starts it).")
_HISTORY_PARAMETERS = [
    OpenApiParameter("event", str, description=gettext_lazy("Only the events of this type.")),
    OpenApiParameter("include", str, enum=["impressions"],
                     description=gettext_lazy("impressions: with the impressions (left out by default).")),
]
_EVENTS_REQUEST = {
    "application/json": PolymorphicProxySerializer(
        component_name="EventOrBatch", resource_type_field_name=None, many=False,
        serializers=[EventSerializer, EventSerializer(many=True), EventBatchSerializer]),
    "application/x-www-form-urlencoded": EventSerializer,
    "multipart/form-data": EventSerializer,
}


class EventsView(APIDefaultsMixin, GenericAPIView):
    """POST one event (an object) or a batch (a list, or `{"events": [...]}`); GET your history.

    A batch is all or nothing: one invalid event rejects the request with a
    HTTP 400 listing the errors by position, and nothing is stored.

    An anonymous POST needs the CSRF token, as a logged-in one does, and a session that a
    page started (``{% recommender_script %}`` starts it): the endpoint never creates
    sessions, so clients without cookies cannot add a session row per request.
    """

    permission_classes = [CanTrack]
    throttle_classes = [EventsAnonThrottle, EventsUserThrottle]
    serializer_class = InteractionSerializer
    pagination_class = HistoryPagination

    def get_queryset(self):
        """The caller's history; ``?event=<type>`` keeps one event type, and impressions (one per
        item a block showed) are left out unless ``?event=impression`` or ``?include=impressions``."""
        request = self.request
        session_key = getattr(getattr(request, "session", None), "session_key", None)
        queryset = Interaction.objects.for_visitor(request.user, session_key).select_related("item")
        event = request.query_params.get("event")
        if event:
            return queryset.filter(event=event)
        if "impressions" not in request.query_params.getlist("include"):
            queryset = queryset.exclude(event="impression")
        return queryset

    def perform_authentication(self, request):
        super().perform_authentication(request)
        # DRF's SessionAuthentication checks CSRF only for the users it authenticates; an
        # anonymous visitor's events go into their session, so a foreign page must not add
        # them either.
        if request.method not in SAFE_METHODS and not request.user.is_authenticated:
            SessionAuthentication().enforce_csrf(request)

    @extend_schema(parameters=_HISTORY_PARAMETERS,
                   responses={200: InteractionSerializer(many=True),
                              **errors(403, 404, 429, 503, e403=_ANONYMOUS_403, e404=gettext_lazy("Invalid cursor."))},
                   auth=_EVENTS_AUTH)
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=_EVENTS_REQUEST,
                   responses={201: EventsCreatedSerializer, **errors(400, 403, 413, 429, 503, e403=_ANONYMOUS_403)},
                   auth=_EVENTS_AUTH)
    def post(self, request):
        data = request.data
        many = isinstance(data, list) or (isinstance(data, dict) and "events" in data)
        events = data if isinstance(data, list) else data.get("events") if many else [data]
        if not isinstance(events, list) or not events:
            raise ValidationError({"events": [_("Send one event object or a non-empty list of events.")]})
        limit = rec_settings.API_MAX_BATCH
        if len(events) > limit:
            raise ValidationError({"events": [_("At most %(limit)d events per request.") % {"limit": limit}]})
        serializer = EventSerializer(data=events, many=True)
        valid = serializer.is_valid()
        errors = [{} for _e in events]
        if not valid:
            # DRF gives a list, or (3.16+) a dict keyed by position: report a list either way.
            found = serializer.errors
            pairs = found.items() if isinstance(found, dict) else enumerate(found)
            for position, error in pairs:
                errors[int(position)] = error
        else:
            errors = self._check_items(serializer.validated_data, errors)
        if any(errors):
            raise ValidationError({"events": errors} if many else errors[0])
        if not request.user.is_authenticated and getattr(request, "session", None) is not None \
                and request.session.session_key is None:
            raise NoSession()
        user, session_key = visitor_of(request)
        now = timezone.now()
        rows = [
            Interaction(user=user, session_key=session_key or "", item_id=e["item"], event=e["event"],
                        value=e.get("value"), context=e.get("context", ""), timestamp=now)
            for e in serializer.validated_data
        ]
        with transaction.atomic():
            Interaction.objects.bulk_create(rows)
        if user is not None and set(serving.fact_events()) & {row.event for row in rows}:
            serving.touch_user(user.pk)  # bulk_create sends no post_save: refresh "already bought"
        if user is not None:
            follow.events_recorded(user.pk, {row.event for row in rows})  # re-score their list
        return Response({"created": len(rows)}, status=status.HTTP_201_CREATED)

    @staticmethod
    def _check_items(events, errors):
        """One query for the whole batch: every item must exist."""
        model = rec_settings.item_model()
        wanted = {e["item"] for e in events}
        found = set(model._default_manager.filter(pk__in=wanted).values_list("pk", flat=True))
        errors = [dict(err) for err in errors]
        for position, event in enumerate(events):
            if event["item"] not in found:
                errors[position]["item"] = [_("No item with key “%(key)s”.") % {"key": event["item"]}]
        return errors

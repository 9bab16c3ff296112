"""Serializers of the recommender API."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from recommender.conf import rec_settings
from recommender.models import Interaction, TrainingRun
from recommender.tracking.csvformat import clean_context, clean_value


class EventSerializer(serializers.Serializer):
    """One event posted by the storefront: item key, event type, optional value and context."""

    item = serializers.CharField(max_length=64, help_text=_("Primary key of the item."))
    event = serializers.CharField(max_length=32)
    value = serializers.FloatField(required=False, allow_null=True)
    context = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")

    def validate_event(self, value):
        if value not in rec_settings.event_weights:
            raise serializers.ValidationError(
                _("Unknown event type “%(event)s”. Known types: %(known)s.")
                % {"event": value, "known": ", ".join(sorted(rec_settings.event_weights))}
            )
        return value

    def validate_item(self, value):
        pk_field = rec_settings.item_model()._meta.pk
        try:
            return pk_field.to_python(value)
        except DjangoValidationError:
            raise serializers.ValidationError(_("“%(value)s” is not a valid item key.") % {"value": value}) from None

    def to_internal_value(self, data):
        attrs = super().to_internal_value(data)
        # The value as posted (FloatField has turned ``true`` into 1.0), checked by the rule
        # track() and the CSV import use.
        raw = data.get("value") if hasattr(data, "get") else None
        try:
            attrs["value"] = clean_value(attrs["event"], raw)
        except ValueError as exc:
            raise serializers.ValidationError({"value": [str(exc)[:1].upper() + str(exc)[1:] + "."]}) from None
        try:
            attrs["context"] = clean_context(attrs["event"], attrs.get("context", ""))
        except ValueError as exc:  # an impression's or click's run: "<block>:<algorithm>@<run>"
            raise serializers.ValidationError({"context": [str(exc)[:1].upper() + str(exc)[1:] + "."]}) from None
        return attrs


class EventBatchSerializer(serializers.Serializer):
    """A batch of events posted as ``{"events": [...]}`` (documentation only: EventsView reads it)."""

    events = EventSerializer(many=True, help_text=_("At most RECOMMENDER['API_MAX_BATCH'] events (500)."))


class EventsCreatedSerializer(serializers.Serializer):
    """The answer to a POST of events (documentation only)."""

    created = serializers.IntegerField(help_text=_("How many events were stored."))


class ErrorSerializer(serializers.Serializer):
    """An error answer ``{"detail": "..."}`` (documentation only)."""

    detail = serializers.CharField()


class ItemKeyField(serializers.Field):
    """An item's primary key, as the item model stores it: documented with that key's type
    (:mod:`recommender.api.schema`)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return value


class InteractionSerializer(serializers.ModelSerializer):
    """A row of the visitor's own history."""

    item_title = serializers.SerializerMethodField()

    class Meta:
        model = Interaction
        fields = ["id", "item", "item_title", "event", "value", "context", "timestamp"]

    def get_item_title(self, obj) -> str:
        field = rec_settings.item_field("title")
        return getattr(obj.item, field, None) if field else str(obj.item)


# Recommendations ---------------------------------------------------------------------


def _item_pk(value):
    pk_field = rec_settings.item_model()._meta.pk
    try:
        return pk_field.to_python(value.strip() if isinstance(value, str) else value)
    except DjangoValidationError:
        raise serializers.ValidationError(_("“%(value)s” is not a valid item key.") % {"value": value}) from None


class RecommendationQuerySerializer(serializers.Serializer):
    """Query parameters of the recommendation endpoints (HTTP 400 names the bad ones)."""

    # The upper bounds are RECOMMENDER["SERVED_LIST_LENGTH"] (the length of every list), read
    # per request in validate_limit / validate_offset so that a site's setting reaches the API.
    limit = serializers.IntegerField(min_value=1, required=False,
                                     help_text=_("How many results (1 to SERVED_LIST_LENGTH, 50 by default); "
                                                 "``n`` is an alias."))
    n = serializers.IntegerField(min_value=1, required=False, help_text=_("Alias of limit."))
    offset = serializers.IntegerField(min_value=0, required=False, default=0,
                                      help_text=_("Results to skip (below SERVED_LIST_LENGTH)."))
    algorithm = serializers.CharField(max_length=50, required=False,
                                      help_text=_("One of RECOMMENDER['ALGORITHMS']."))
    category = serializers.CharField(max_length=100, required=False,
                                     help_text=_("Key of a category: only its items."))
    exclude = serializers.CharField(max_length=2000, required=False, allow_blank=True,
                                    help_text=_("Comma-separated item keys never to return (e.g. the cart)."))

    default_limit = 10

    def _at_most(self, value, highest):
        if value > highest:
            raise serializers.ValidationError(
                _("Ensure this value is less than or equal to %(limit_value)s.") % {"limit_value": highest})
        return value

    def validate_limit(self, value):
        return self._at_most(value, rec_settings.SERVED_LIST_LENGTH)

    def validate_n(self, value):
        return self._at_most(value, rec_settings.SERVED_LIST_LENGTH)

    def validate_offset(self, value):
        return self._at_most(value, rec_settings.SERVED_LIST_LENGTH - 1)

    def validate_algorithm(self, value):
        if value not in (rec_settings.ALGORITHMS or {}):
            raise serializers.ValidationError(
                _("Unknown algorithm “%(name)s”. Configured: %(known)s.")
                % {"name": value, "known": ", ".join(sorted(rec_settings.ALGORITHMS or {}))})
        return value

    def validate_category(self, value):
        field_name = rec_settings.item_field("category")
        if not field_name:
            raise serializers.ValidationError(_("The items have no category."))
        field = rec_settings.item_model()._meta.get_field(field_name)
        if not field.is_relation:
            return value
        model = field.related_model
        try:
            category = model._default_manager.get(pk=model._meta.pk.to_python(value))
        except (DjangoValidationError, model.DoesNotExist):
            raise serializers.ValidationError(_("No category with key “%(key)s”.") % {"key": value}) from None
        return category

    def validate_exclude(self, value):
        keys = [part for part in value.split(",") if part.strip()]
        if len(keys) > 200:
            raise serializers.ValidationError(_("At most 200 items can be excluded."))
        return [_item_pk(part) for part in keys]

    def validate(self, attrs):
        limit = attrs.pop("n", None)
        attrs["limit"] = attrs.get("limit") or limit or self.default_limit
        length = rec_settings.SERVED_LIST_LENGTH
        if attrs["offset"] + attrs["limit"] > length:
            raise serializers.ValidationError(
                {"offset": [_("offset + limit must not exceed %(length)s.") % {"length": length}]})
        return attrs


class UserRecommendationQuerySerializer(RecommendationQuerySerializer):
    user = serializers.IntegerField(min_value=1, required=False,
                                    help_text=_("Staff only: another user's recommendations."))


class RecommendationSerializer(serializers.Serializer):
    """One recommended item (the shape of each ``results`` entry; documentation only)."""

    item = ItemKeyField(help_text=_("Primary key of the item."))
    title = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    url = serializers.CharField()
    image = serializers.CharField(help_text=_("URL of the item's picture; empty without one."))
    score = serializers.FloatField()
    reason = serializers.CharField(help_text=_("Why it is shown, in the request's language."))
    algorithm = serializers.CharField()
    because = ItemKeyField(allow_null=True, help_text=_("Key of the item behind the reason."))


class RecommendationPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = RecommendationSerializer(many=True)


def recommendation_data(rec):
    """The JSON-ready dict of one :class:`recommender.serving.Recommendation`."""
    price = rec.price
    because = rec.because.pk if rec.because is not None else None
    return {
        "item": rec.item.pk,
        "title": rec.title,
        "price": None if price is None else str(price),
        "url": rec.url,
        "image": rec.image_url,
        "score": round(float(rec.score), 6),
        "reason": str(rec.reason),
        "algorithm": rec.algorithm,
        "because": because,
    }


# Training runs -------------------------------------------------------------------------


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "algorithm", "params", "status", "progress", "progress_message", "is_active",
                  "n_users", "n_items", "n_interactions", "data_cutoff", "created", "started", "finished",
                  "heartbeat", "metrics", "gate", "artifact_size", "error", "task_id", "requested_by"]
        read_only_fields = fields


class StartTrainingSerializer(serializers.Serializer):
    algorithms = serializers.ListField(child=serializers.CharField(max_length=50), min_length=1,
                                       max_length=20, help_text=_("Names from RECOMMENDER['ALGORITHMS']."))

    def validate_algorithms(self, value):
        known = rec_settings.ALGORITHMS or {}
        unknown = [name for name in value if name not in known]
        if unknown:
            raise serializers.ValidationError(
                _("Unknown algorithm(s): %(names)s. Configured: %(known)s.")
                % {"names": ", ".join(unknown), "known": ", ".join(sorted(known))})
        return list(dict.fromkeys(value))

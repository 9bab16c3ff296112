"""Serializers of the recommender API."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from recommender.conf import rec_settings
from recommender.models import Interaction


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
            raise serializers.ValidationError(_("“%(value)s” is not a valid item key.") % {"value": value})

    def validate_value(self, value):
        if value is not None and value != value:
            raise serializers.ValidationError(_("A number is required."))
        return value


class InteractionSerializer(serializers.ModelSerializer):
    """A row of the visitor's own history."""

    item_title = serializers.SerializerMethodField()

    class Meta:
        model = Interaction
        fields = ["id", "item", "item_title", "event", "value", "context", "timestamp"]

    def get_item_title(self, obj):
        field = rec_settings.item_field("title")
        return getattr(obj.item, field, None) if field else str(obj.item)

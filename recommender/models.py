"""Interaction: one thing a visitor did with an item."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from recommender.conf import event_choices, item_model_label


class InteractionQuerySet(models.QuerySet):
    def for_visitor(self, user=None, session_key=None):
        """A logged-in user's rows, or an anonymous session's rows."""
        if user is not None and user.is_authenticated:
            return self.filter(user=user)
        if session_key:
            return self.filter(user__isnull=True, session_key=session_key)
        return self.none()


class Interaction(models.Model):
    """A view, click, cart change, purchase or rating of one item.

    Sized for tens of millions of rows: a big-integer key, one composite index
    for a visitor's recent history and one for exporting in time order.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,  # deleting a user deletes their history
        related_name="recommender_interactions",
        db_index=False,  # covered by the (user, timestamp) index
    )
    session_key = models.CharField(
        _("session key"), max_length=40, blank=True, default="",
        help_text=_("Anonymous visitor's session; kept after the history is merged at login."),
    )
    item = models.ForeignKey(
        item_model_label(),
        verbose_name=_("item"),
        on_delete=models.CASCADE,
        related_name="recommender_interactions",
    )
    event = models.CharField(_("event"), max_length=32, choices=event_choices)
    value = models.FloatField(
        _("value"), null=True, blank=True,
        help_text=_("Rating, quantity or amount, depending on the event."),
    )
    timestamp = models.DateTimeField(_("time"), default=timezone.now)
    context = models.CharField(
        _("context"), max_length=100, blank=True, default="",
        help_text=_("The page or recommendation block that led to the event."),
    )
    dedup_key = models.CharField(
        _("import key"), max_length=32, null=True, blank=True, unique=True, editable=False,
        help_text=_("Set by CSV import so that importing a file twice adds nothing."),
    )

    objects = InteractionQuerySet.as_manager()

    class Meta:
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        indexes = [
            models.Index(fields=["user", "-timestamp"], name="rec_inter_user_time"),
            models.Index(fields=["session_key", "-timestamp"], name="rec_inter_session_time"),
            models.Index(fields=["timestamp", "id"], name="rec_inter_time_id"),
        ]

    def __str__(self):
        who = self.user_id or f"session {self.session_key[:8]}"
        return f"{who} {self.event} {self.item_id}"

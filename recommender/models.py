"""Interaction: one thing a visitor did with an item."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

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
    ref = models.CharField(
        _("reference"), max_length=100, blank=True, default="",
        help_text=_("Set by CSV import: an order or line id that tells otherwise identical rows apart."),
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
        who = self.user_id or _("session %(key)s") % {"key": self.session_key[:8]}
        return f"{who} {self.event} {self.item_id}"


class TrainingRun(models.Model):
    """One training of one algorithm: its data snapshot, progress, metrics and artifact.

    Exactly one succeeded run per algorithm is active (serving); any earlier
    succeeded run can be re-activated (rollback).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    algorithm = models.CharField(_("algorithm"), max_length=50, db_index=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(_("progress"), default=0.0, help_text=_("From 0 to 1."))
    progress_message = models.CharField(_("progress message"), max_length=200, blank=True, default="")
    is_active = models.BooleanField(pgettext_lazy("training run", "active"), default=False)
    # data snapshot
    n_users = models.PositiveIntegerField(_("users"), null=True, blank=True)
    n_items = models.PositiveIntegerField(_("items"), null=True, blank=True)
    n_interactions = models.PositiveBigIntegerField(_("interactions"), null=True, blank=True)
    data_cutoff = models.DateTimeField(_("data up to"), null=True, blank=True)
    # timing
    created = models.DateTimeField(_("queued at"), default=timezone.now)
    started = models.DateTimeField(_("started at"), null=True, blank=True)
    finished = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # results
    metrics = models.JSONField(_("held-out metrics"), default=dict, blank=True)
    gate = models.CharField(_("gate decision"), max_length=300, blank=True, default="")
    artifact_path = models.CharField(_("artifact"), max_length=500, blank=True, default="")
    artifact_size = models.PositiveBigIntegerField(_("artifact size (bytes)"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    traceback = models.TextField(_("traceback"), blank=True, default="")
    task_id = models.CharField(_("task id"), max_length=64, blank=True, default="")
    # Celery node name of the worker that claimed the run (its runs fail when it restarts).
    worker = models.CharField(_("worker"), max_length=200, blank=True, default="")
    requested_by = models.CharField(_("requested by"), max_length=150, blank=True, default="")

    class Meta:
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["algorithm"], condition=models.Q(is_active=True),
                                    name="rec_one_active_run_per_algorithm"),
            # The training lock: a second run of the same algorithm cannot enter "running".
            models.UniqueConstraint(fields=["algorithm"], condition=models.Q(status="running"),
                                    name="rec_one_running_run_per_algorithm"),
        ]

    def __str__(self):
        return f"{self.algorithm} #{self.pk} ({self.get_status_display()})"

    @property
    def duration(self):
        if self.started and self.finished:
            return self.finished - self.started
        return None


class ServedList(models.Model):
    """A precomputed list served on the request path (written by the refresh task).

    ``kind`` says what the list is for; ``subject`` is the user's key for
    "for_user", the item's key for "similar" and "bought_together", 0 for "trending".
    ``items`` is a list of ``[item_pk, score, because_item_pk_or_null]``.
    """

    class Kind(models.TextChoices):
        FOR_USER = "for_user", _("recommended for you")
        SIMILAR = "similar", _("similar items")
        BOUGHT_TOGETHER = "bought_together", _("customers also bought")
        TRENDING = "trending", _("trending")
        POPULAR = "popular", _("popular")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    algorithm = models.CharField(_("algorithm"), max_length=50)
    subject = models.BigIntegerField(_("user or item key"))
    items = models.JSONField(_("items"), default=list)
    run = models.ForeignKey(TrainingRun, verbose_name=_("training run"), null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="+")
    updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("served list")
        verbose_name_plural = _("served lists")
        constraints = [
            models.UniqueConstraint(fields=["kind", "algorithm", "subject"], name="rec_served_list_key"),
        ]

    def __str__(self):
        return f"{self.kind}/{self.algorithm}/{self.subject}"

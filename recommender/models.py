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

    #: How the gate's line (``training.services.gate``) starts when it refused the run.
    GATE_REFUSED = "refused:"

    def __str__(self):
        return f"{self.algorithm} #{self.pk} ({self.get_status_display()})"

    @property
    def refused_by_gate(self):
        """A succeeded run that the gate did not activate."""
        return self.status == self.Status.SUCCEEDED and self.gate.startswith(self.GATE_REFUSED)

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


# Online results (recommender.analytics) ------------------------------------------------


class DailyBlockStats(models.Model):
    """One day of one recommendation block, algorithm and training run: what it showed and earned.

    Written by ``recommender.analytics.aggregates.aggregate_daily`` (the
    ``recommender.aggregate_daily`` task) from the interactions, which stay the source of
    truth: a day's rows are recomputed whole, so re-running gives the same rows.
    ``block``, ``algorithm`` and ``run`` come from the ``context`` of impressions and
    clicks (``"<block>:<algorithm>[@<run>]"``, docs/online-metrics.md). Conversions
    (add-to-carts, purchases, revenue) count on the day of the conversion, under the block
    of the click they are attributed to.
    """

    day = models.DateField(_("day"))
    block = models.CharField(_("block"), max_length=100)
    algorithm = models.CharField(_("algorithm"), max_length=100, blank=True, default="")
    run = models.PositiveBigIntegerField(
        _("training run"), default=0,
        help_text=_("The training run's id when the impressions carried it; 0: not recorded."))
    impressions = models.PositiveBigIntegerField(_("impressions"), default=0)
    clicks = models.PositiveBigIntegerField(_("clicks"), default=0)
    visitors = models.PositiveBigIntegerField(
        _("visitors"), default=0, help_text=_("Distinct visitors (user or session) with an impression or a click."))
    add_to_carts = models.PositiveBigIntegerField(_("attributed add-to-carts"), default=0)
    purchases = models.PositiveBigIntegerField(_("attributed purchases"), default=0)
    revenue = models.DecimalField(_("attributed revenue"), max_digits=18, decimal_places=2, default=0)

    class Meta:
        verbose_name = _("daily block statistics")
        verbose_name_plural = _("daily block statistics")
        ordering = ["-day", "block", "algorithm", "run"]
        constraints = [
            models.UniqueConstraint(fields=["day", "block", "algorithm", "run"], name="rec_daily_block_key"),
        ]

    def __str__(self):
        return f"{self.day} {self.block}:{self.algorithm}"

    @property
    def ctr(self):
        """Clicks per impression, or None without impressions."""
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion_rate(self):
        """Attributed purchases per click, or None without clicks."""
        return self.purchases / self.clicks if self.clicks else None

    @property
    def rpm(self):
        """Attributed revenue per thousand impressions, or None without impressions."""
        return float(self.revenue) * 1000 / self.impressions if self.impressions else None


class AggregationState(models.Model):
    """How far an incremental aggregation has read the interactions (one row per aggregation)."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    last_id = models.PositiveBigIntegerField(_("last interaction id read"), default=0)
    updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("aggregation state")
        verbose_name_plural = _("aggregation states")

    def __str__(self):
        return f"{self.name} @ {self.last_id}"


class Experiment(models.Model):
    """An A/B test of the algorithms behind some recommendation blocks.

    Visitors are split between the variants by a hash of ``salt`` and their assignment key
    (``recommender.analytics.experiments.variant_for``): deterministic, sticky, and
    independent of other experiments, whose salts differ. A block is governed by at most
    one running experiment.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        RUNNING = "running", _("running")
        STOPPED = "stopped", _("stopped")

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True, default="")
    blocks = models.JSONField(
        _("blocks"), default=list,
        help_text=_('The blocks it governs, as named in impressions: ["recommended_for_you", "similar_items"].'))
    salt = models.CharField(_("salt"), max_length=64, blank=True, default="",
                            help_text=_("Hashed with the visitor's key; set from the name when left blank."))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    start = models.DateTimeField(_("start"), null=True, blank=True)
    stop = models.DateTimeField(_("stop"), null=True, blank=True)
    created = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("experiment")
        verbose_name_plural = _("experiments")
        ordering = ["-created", "-id"]

    def __str__(self):
        return self.name

    def clean(self):
        """Full validation (``validate_experiment``) of a running experiment with its saved variants."""
        if self.status == self.Status.RUNNING:
            from recommender.analytics.experiments import validate_experiment

            validate_experiment(self)

    def save(self, *args, **kwargs):
        if not self.salt:
            self.salt = self.name
        super().save(*args, **kwargs)
        _experiments_changed()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        _experiments_changed()
        return result


def _experiments_changed():
    """Every process reloads its copy of the running experiments (``algorithm_for``)."""
    from recommender.analytics.experiments import bump_token

    bump_token()


class Variant(models.Model):
    """One arm of an experiment: an algorithm (or "" for a control that shows no block) and its share."""

    experiment = models.ForeignKey(Experiment, verbose_name=_("experiment"), on_delete=models.CASCADE,
                                   related_name="variants")
    name = models.CharField(_("name"), max_length=50)
    algorithm = models.CharField(_("algorithm"), max_length=50, blank=True, default="",
                                 help_text=_("A name in RECOMMENDER['ALGORITHMS']; empty: the block is not shown."))
    share = models.FloatField(_("traffic share"), help_text=_("From 0 to 1; the variants' shares add up to 1."))

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["experiment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="rec_variant_name"),
        ]

    def __str__(self):
        return f"{self.experiment_id}/{self.name}"

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        _experiments_changed()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        _experiments_changed()
        return result


class Exposure(models.Model):
    """A visitor's first exposure to an experiment and the variant they were given.

    One row per experiment and assignment key, written once
    (``recommender.analytics.experiments.record_exposure``). It counts the visitors of each
    variant, the control's too (which shows nothing, so it has no impressions), and links
    their later interactions to the variant: ``user`` is set at exposure or at login.
    """

    experiment = models.ForeignKey(Experiment, verbose_name=_("experiment"), on_delete=models.CASCADE,
                                   related_name="exposures")
    variant = models.CharField(_("variant"), max_length=50)
    key = models.CharField(_("assignment key"), max_length=64,
                           help_text=_('"u:<user pk>" or "s:<session key>": what the variant was hashed from.'))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), null=True, blank=True,
                             on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(_("session key"), max_length=40, blank=True, default="")
    first_seen = models.DateTimeField(_("first exposed"), default=timezone.now)

    class Meta:
        verbose_name = _("exposure")
        verbose_name_plural = _("exposures")
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="rec_exposure_key"),
        ]
        indexes = [
            models.Index(fields=["experiment", "variant"], name="rec_exposure_variant"),
            models.Index(fields=["session_key"], name="rec_exposure_session"),
        ]

    def __str__(self):
        return f"{self.experiment_id}/{self.variant} {self.key}"


class DailyVariantStats(models.Model):
    """One day of one experiment variant: its new visitors and what all its visitors did.

    Written with :class:`DailyBlockStats` by the same task. ``exposed`` counts the visitors
    first exposed that day; the other counts are those visitors' events after their first
    exposure: impressions and clicks in the experiment's blocks, and all their
    add-to-carts, purchases and revenue (a control that shows no block has no attributed
    sales to compare with, so variants are compared on everything their visitors bought).
    """

    day = models.DateField(_("day"))
    experiment = models.ForeignKey(Experiment, verbose_name=_("experiment"), on_delete=models.CASCADE,
                                   related_name="daily_stats")
    variant = models.CharField(_("variant"), max_length=50)
    exposed = models.PositiveBigIntegerField(_("visitors first exposed"), default=0)
    impressions = models.PositiveBigIntegerField(_("impressions"), default=0)
    clicks = models.PositiveBigIntegerField(_("clicks"), default=0)
    add_to_carts = models.PositiveBigIntegerField(_("add-to-carts"), default=0)
    purchases = models.PositiveBigIntegerField(_("purchases"), default=0)
    revenue = models.DecimalField(_("revenue"), max_digits=18, decimal_places=2, default=0)

    class Meta:
        verbose_name = _("daily variant statistics")
        verbose_name_plural = _("daily variant statistics")
        ordering = ["-day", "experiment", "variant"]
        constraints = [
            models.UniqueConstraint(fields=["day", "experiment", "variant"], name="rec_daily_variant_key"),
        ]

    def __str__(self):
        return f"{self.day} {self.experiment_id}/{self.variant}"

"""The ``RECOMMENDER`` settings dict: documented defaults, read lazily.

Access values through ``recommender.conf.rec_settings``; it reads
``settings.RECOMMENDER`` on first use and forgets it whenever Django reports a
change (``override_settings`` in tests), the way DRF's ``api_settings`` does.
"""

import os
from importlib.util import find_spec
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _

from recommender.tracking import csvformat

#: Built-in event types and their default weights (defined with the CSV format, which the
#: engine reads without Django).
BUILTIN_EVENTS = csvformat.BUILTIN_EVENTS

DEFAULTS = {
    # "app_label.ModelName" of the product model. Required.
    "ITEM_MODEL": None,
    # Which fields of the item model hold what. Missing keys use these defaults;
    # set a key to None when the model has no such field.
    "ITEM_FIELDS": {
        "title": "title",
        "text": ["description"],
        "category": "category",
        "price": "price",
        "available": "is_active",
        # The product picture shown on recommendation cards and in the API: an
        # ImageField/FileField (its ``.url``) or a field holding a URL. None: a placeholder.
        "image": None,
        # A unique field used by CSV import/export instead of the primary key.
        "external_id": None,
    },
    # Event type -> weight. Built-in types are always known; add site-defined
    # types here (e.g. "wishlist": 3.0) or change the built-in weights.
    "EVENT_WEIGHTS": {},
    # User field matched against the ``user_id`` column of CSV imports.
    "USER_ID_FIELD": "pk",
    # Record anonymous visitors (by session) and merge them into the user at login.
    "TRACK_ANONYMOUS": True,
    # Most events accepted by one POST to the events endpoint.
    "API_MAX_BATCH": 500,
    # Deepest nesting of a JSON body the API parses (an event batch is 3 levels); deeper
    # bodies get HTTP 400 (recommender.api.parsers). None: only Python's recursion limit.
    "API_MAX_JSON_DEPTH": 32,
    # Reverse proxies in front of the site that append the client's address to
    # X-Forwarded-For. The anonymous throttles count a client by the address that many
    # entries from the right of that header; 0 counts REMOTE_ADDR and ignores the header
    # (a client can write any X-Forwarded-For). None: DRF's REST_FRAMEWORK["NUM_PROXIES"]
    # when the site sets it, else 0.
    "TRUSTED_PROXY_COUNT": None,
    # DRF throttle rates for the events endpoint ("<n>/<sec|min|hour|day>").
    "THROTTLE_RATES": {
        "events_anon": "120/min", "events_user": "600/min",
        "recommendations_anon": "600/min", "recommendations_user": "1200/min",
    },
    # Rows per INSERT when importing CSV files.
    "IMPORT_BATCH_SIZE": 5000,
    # Where trained models are written (a directory shared by all workers).
    # None: "<MEDIA_ROOT>/recommender".
    "ARTIFACT_DIR": None,
    # Anonymous interactions older than this many days are purged by
    # ``recommender.training.tasks.purge_anonymous`` (None keeps them forever).
    "ANONYMOUS_RETENTION_DAYS": 90,
    # Algorithms the site can train: name -> {"class": dotted path or engine name, "params": {...}}.
    # Missing params take the engine's defaults (docs/engine.md).
    "ALGORITHMS": {
        "popular": {"class": "recommender.engine.popular.Popular"},
        "trending": {"class": "recommender.engine.popular.Trending", "params": {"half_life_days": 7}},
        "itemknn": {"class": "recommender.engine.neighbors.ItemKNN"},
        "cooccurrence": {"class": "recommender.engine.neighbors.Cooccurrence"},
        "similar": {"class": "recommender.engine.similar.SimilarItems"},
        "complements": {"class": "recommender.engine.complements.Complements"},
        "ease": {"class": "recommender.engine.ease.EASE"},
        "als": {"class": "recommender.engine.als.ALS"},
        "content": {"class": "recommender.engine.content.ContentBased"},
        "two_tower": {"class": "recommender.engine.deep.TwoTower"},
        "sequence": {"class": "recommender.engine.sequence.SequenceModel"},
        "hybrid": {"class": "recommender.engine.hybrid.Hybrid"},
    },
    # What "train all" trains, and which algorithm feeds each served list.
    # Collaborative filtering (ease), content-based (content) and the deep model (sequence,
    # when TensorFlow, the "deep" extra, is installed) train beside the hybrid, which blends
    # them as validation weighs them (docs/engine.md).
    "TRAIN_ALGORITHMS": ["popular", "trending", "similar", "complements", "ease", "content",
                         *(["sequence"] if find_spec("tensorflow") is not None else []), "hybrid"],
    "DEFAULT_ALGORITHM": "hybrid",  # "recommended for you"
    "SIMILAR_ALGORITHM": "similar",  # "similar items": content + co-views (docs/benchmarks.md, "The shelf")
    "BOUGHT_TOGETHER_ALGORITHM": "complements",  # "customers also bought": same-basket LLR
    "TRENDING_ALGORITHM": "trending",
    "POPULAR_ALGORITHM": "popular",
    # Training data: recency half-life in days (None: no decay) and log-damped repeats.
    "HALF_LIFE_DAYS": None,
    "LOG_DAMPING": True,
    # Event types whose items are never recommended again to the same user (e.g. bought once).
    "EXCLUDE_EVENTS": ["purchase"],
    # A new version must reach (1 - GATE_MARGIN) x the active version's held-out NDCG@10.
    "GATE_MARGIN": 0.05,
    # Held-out share of each user's latest interactions for the metrics and the gate.
    "EVALUATION_FRACTION": 0.2,
    # Length of each precomputed list, and users per refresh task (chunks share the work).
    "SERVED_LIST_LENGTH": 50,
    "REFRESH_CHUNK_SIZE": 2000,
    # Celery queues: training never delays a refresh.
    "TRAINING_QUEUE": "recommender_training",
    "REFRESH_QUEUE": "recommender_refresh",
    # Following logged-in shoppers (recommender.training.follow, docs/training.md): after an
    # event that changes a user's history (any event with a non-zero weight: not an
    # impression), the task recommender.refresh_user re-scores their "recommended for you"
    # list with the active model and publishes it. False: lists change at the next refresh.
    "FOLLOW_USERS": True,
    # Seconds the task waits after the first event of a burst; the events until it starts
    # join it (one task per burst). 0: sent to run at once (events while it waits still join).
    "FOLLOW_DEBOUNCE_SECONDS": 0.5,
    # Algorithms whose "for you" lists are re-scored; None: DEFAULT_ALGORITHM (the list the
    # serving reads when no algorithm is asked for).
    "FOLLOW_ALGORITHMS": None,
    # A running training whose heartbeat is older than this is marked failed, which also
    # releases its training lock (the heartbeat is written every STALE_RUN_SECONDS / 4 s,
    # at most every 10 s; the fail_stale_runs beat entry checks every minute).
    "STALE_RUN_SECONDS": 120,
    # A queued run whose task has not started this many seconds after it was sent (a lost
    # message, a broker that was down, a web process without the site's Celery app) is sent
    # again by fail_stale_runs; a duplicate message finds the run claimed and does nothing.
    "QUEUED_RUN_SECONDS": 300,
    # Retrain when this many new interactions arrived since the last successful run (None: off).
    "RETRAIN_AFTER_INTERACTIONS": 10_000,
    # Succeeded versions kept per algorithm besides the active one; older artifacts are deleted.
    "KEEP_VERSIONS": 5,
    # Cache alias and lifetime of served lists.
    "CACHE_ALIAS": "default",
    "CACHE_TIMEOUT": 24 * 3600,
    # The request-path speed-ups of recommender.fastpath: stored API responses, the cached
    # auth record, throttle counts kept in the process, stored blocks. False: every request
    # takes the plain path (same answers, more work per request).
    "FAST_PATH": True,
    # Seconds a logged-in user's auth record is cached, so the recommendations endpoint can
    # check the session without querying the user (recommender.fastpath.identity); None: off.
    "AUTH_CACHE_TIMEOUT": 300,
    # Seconds a rendered recommendation block is reused while its lists and items are
    # unchanged (recommender.fastpath.blocks); None: off.
    "BLOCK_CACHE_TIMEOUT": 3600,
    # URL name of the site's add-to-cart view, reversed with the item's key (e.g.
    # "shop:cart_add"): the cards of recommender/block.html then show an "Add to cart" button
    # that POSTs quantity=1, source=<block> and next=<page> with the CSRF token. None: no button.
    "ADD_TO_CART_URL": None,
    # Seconds the items shown by blocks and the API are cached as model instances, until
    # any item is saved or deleted (recommender.serving); None: one query per block.
    "ITEM_CACHE_TIMEOUT": 600,
    # At most this many designs of one product line (one category, titles starting with the
    # same two words once colours and numbers are removed) in a "recommended for you",
    # trending or popular list while other items remain; the others follow. 0: no limit.
    "SAME_LINE_CAP": 2,
    # Seconds between a process's background thread adding its fast-path throttle counts
    # to Redis (one round trip; recommender.fastpath.throttle_counts); 0 or None: count
    # every request in Redis at once.
    "THROTTLE_SYNC_INTERVAL": 0.05,
    # Celery beat entries (crontab "minute hour day-of-month month day-of-week"; None: off),
    # installed by ``recommender.training.schedules.beat_schedule()`` in the site's Celery app.
    "SCHEDULE": {
        "train_all": "0 3 * * *",
        "refresh_all": "30 * * * *",
        "retrain_if_new_data": "*/10 * * * *",
        "fail_stale_runs": "* * * * *",
        "cleanup_artifacts": "30 4 * * *",
        "purge_anonymous": "0 5 * * *",
        # recommender.aggregate_daily: the days touched since the last run (docs/online-metrics.md)
        "aggregate_daily": "*/15 * * * *",
    },
    # Online metrics (recommender.analytics, docs/online-metrics.md). An add-to-cart or
    # purchase of an item is attributed to the visitor's latest click on that item in a
    # recommendation block at most this many hours before it (same user, or same anonymous
    # session).
    "ATTRIBUTION_WINDOW_HOURS": 24,
    # Event types counted as add-to-carts and as purchases by the attribution; a purchase's
    # value is its quantity (None counts 1) and its revenue is quantity x the item's
    # ITEM_FIELDS["price"] (0 when the role is None).
    "ATTRIBUTION_CART_EVENTS": ["add_to_cart"],
    "ATTRIBUTION_PURCHASE_EVENTS": ["purchase"],
    # Seconds a process keeps its copy of the running experiments before asking the cache
    # whether they changed (recommender.analytics.experiments.algorithm_for); saving an
    # experiment or a variant changes the cache token at once for every process.
    "EXPERIMENT_CACHE_SECONDS": 30,
}


#: The setting that names the algorithm of each kind of served list.
LIST_ALGORITHM_SETTINGS = {
    "for_user": "DEFAULT_ALGORITHM", "similar": "SIMILAR_ALGORITHM", "bought_together": "BOUGHT_TOGETHER_ALGORITHM",
    "trending": "TRENDING_ALGORITHM", "popular": "POPULAR_ALGORITHM",
}


class RecommenderSettings:
    """Attribute access to the merged settings dict, cached until settings change."""

    # The keys of DEFAULTS with their types, for type checkers and editors; the values come
    # from __getattr__ (annotations alone define no class attribute).
    ITEM_MODEL: str | None
    ITEM_FIELDS: dict[str, Any]
    EVENT_WEIGHTS: dict[str, float]
    USER_ID_FIELD: str
    TRACK_ANONYMOUS: bool
    API_MAX_BATCH: int
    API_MAX_JSON_DEPTH: int | None
    TRUSTED_PROXY_COUNT: int | None
    THROTTLE_RATES: dict[str, str | None]
    IMPORT_BATCH_SIZE: int
    ARTIFACT_DIR: str | os.PathLike | None
    ANONYMOUS_RETENTION_DAYS: int | None
    ALGORITHMS: dict[str, dict[str, Any]]
    TRAIN_ALGORITHMS: list[str]
    DEFAULT_ALGORITHM: str
    SIMILAR_ALGORITHM: str
    BOUGHT_TOGETHER_ALGORITHM: str
    TRENDING_ALGORITHM: str
    POPULAR_ALGORITHM: str
    HALF_LIFE_DAYS: float | None
    LOG_DAMPING: bool
    EXCLUDE_EVENTS: list[str]
    GATE_MARGIN: float
    EVALUATION_FRACTION: float
    SERVED_LIST_LENGTH: int
    REFRESH_CHUNK_SIZE: int
    TRAINING_QUEUE: str
    REFRESH_QUEUE: str
    FOLLOW_USERS: bool
    FOLLOW_DEBOUNCE_SECONDS: float
    FOLLOW_ALGORITHMS: list[str] | None
    STALE_RUN_SECONDS: int
    QUEUED_RUN_SECONDS: int
    QUEUED_RUN_SECONDS: int
    RETRAIN_AFTER_INTERACTIONS: int | None
    KEEP_VERSIONS: int
    CACHE_ALIAS: str
    CACHE_TIMEOUT: int | None
    FAST_PATH: bool
    AUTH_CACHE_TIMEOUT: int | None
    BLOCK_CACHE_TIMEOUT: int | None
    ADD_TO_CART_URL: str | None
    ITEM_CACHE_TIMEOUT: int | None
    SAME_LINE_CAP: int
    THROTTLE_SYNC_INTERVAL: float | None
    SCHEDULE: dict[str, str | None]
    ATTRIBUTION_WINDOW_HOURS: float
    ATTRIBUTION_CART_EVENTS: list[str]
    ATTRIBUTION_PURCHASE_EVENTS: list[str]
    EXPERIMENT_CACHE_SECONDS: float

    def __init__(self, defaults=None):
        self.defaults = defaults or DEFAULTS
        self._cached = None

    @property
    def user_settings(self):
        return getattr(settings, "RECOMMENDER", {}) or {}

    def _merged(self):
        if self._cached is None:
            merged = dict(self.defaults)
            user = self.user_settings
            for key, value in user.items():
                if isinstance(self.defaults.get(key), dict) and isinstance(value, dict):
                    merged[key] = {**self.defaults[key], **value}
                else:
                    merged[key] = value
            self._cached = merged
        return self._cached

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"Invalid RECOMMENDER setting: {name!r}")
        return self._merged()[name]

    def reload(self):
        self._cached = None

    # Derived values -----------------------------------------------------------

    @property
    def event_weights(self):
        """All known event types with their weights (built-ins plus the site's)."""
        return {**BUILTIN_EVENTS, **(self.EVENT_WEIGHTS or {})}

    def item_model(self):
        """The configured item model class (raises LookupError / ValueError)."""
        label = self.ITEM_MODEL
        if not label:
            raise ValueError("RECOMMENDER['ITEM_MODEL'] is not set.")
        return apps.get_model(label, require_ready=False)

    def item_field(self, role):
        """Field name for a role of ITEM_FIELDS ("title", "price", ...) or None."""
        return self.ITEM_FIELDS.get(role)

    def list_algorithm(self, kind, algorithm=None):
        """The algorithm that feeds served lists of ``kind`` ("for_user", "similar",
        "bought_together", "trending", "popular"): ``algorithm`` when given, else its setting
        (``DEFAULT_ALGORITHM``, ``SIMILAR_ALGORITHM``, ...). The one place they are resolved."""
        return algorithm or getattr(self, LIST_ALGORITHM_SETTINGS[kind])


rec_settings = RecommenderSettings()


def item_model_label():
    """The item model label for the Interaction foreign key and its migration.

    Like ``AUTH_USER_MODEL`` this must be set before the first migration and not
    changed afterwards.
    """
    label = (getattr(settings, "RECOMMENDER", {}) or {}).get("ITEM_MODEL")
    if label:
        return label
    _placeholder_item()
    return "recommender.PlaceholderItem"


def _placeholder_item():
    """While ITEM_MODEL is unset, an unmanaged stand-in for the foreign key to point at (no
    table, no migration), so that ``check`` reports recommender.E001 alone rather than also
    Django's fields.E300/E307 about a model that does not exist. E001 stops ``migrate``."""
    try:
        return apps.get_registered_model("recommender", "PlaceholderItem")
    except LookupError:
        pass
    from django.db import models

    class PlaceholderItem(models.Model):
        class Meta:
            app_label = "recommender"
            managed = False

    return PlaceholderItem


#: Labels of the built-in event types (the admin's filter and forms); others show their name.
EVENT_LABELS = {
    "view": _("view"),
    "click": _("click"),
    "add_to_cart": _("add to cart"),
    "remove_from_cart": _("remove from cart"),
    "purchase": _("purchase"),
    "rating": _("rating"),
    "impression": _("impression"),
}


def event_choices():
    """Choices for ``Interaction.event`` (a callable so migrations stay stable)."""
    return [(name, EVENT_LABELS.get(name) or name.replace("_", " ")) for name in rec_settings.event_weights]


def _reload(*, setting, **kwargs):
    if setting == "RECOMMENDER":
        rec_settings.reload()


setting_changed.connect(_reload)

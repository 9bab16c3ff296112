"""The ``RECOMMENDER`` settings dict: documented defaults, read lazily.

Access values through ``recommender.conf.rec_settings``; it reads
``settings.RECOMMENDER`` on first use and forgets it whenever Django reports a
change (``override_settings`` in tests), the way DRF's ``api_settings`` does.
"""

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed

#: Built-in event types and their default weights in the user-item matrix.
BUILTIN_EVENTS = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": -2.0,
    "purchase": 8.0,
    "rating": 1.0,
}

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
    # DRF throttle rates for the events endpoint ("<n>/<sec|min|hour|day>").
    "THROTTLE_RATES": {"events_anon": "120/min", "events_user": "600/min"},
    # Rows per INSERT when importing CSV files.
    "IMPORT_BATCH_SIZE": 5000,
    # Where trained models are written (a directory shared by all workers).
    # None: "<MEDIA_ROOT>/recommender".
    "ARTIFACT_DIR": None,
    # Anonymous interactions older than this many days are purged by
    # ``recommender.tasks.purge_anonymous`` (None keeps them forever).
    "ANONYMOUS_RETENTION_DAYS": 90,
}


class RecommenderSettings:
    """Attribute access to the merged settings dict, cached until settings change."""

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

    def __getattr__(self, name):
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


rec_settings = RecommenderSettings()


def item_model_label():
    """The item model label for the Interaction foreign key and its migration.

    Like ``AUTH_USER_MODEL`` this must be set before the first migration and not
    changed afterwards.
    """
    label = (getattr(settings, "RECOMMENDER", {}) or {}).get("ITEM_MODEL")
    return label or "recommender.PlaceholderItem"


def event_choices():
    """Choices for ``Interaction.event`` (a callable so migrations stay stable)."""
    return [(name, name.replace("_", " ")) for name in rec_settings.event_weights]


def _reload(*, setting, **kwargs):
    if setting == "RECOMMENDER":
        rec_settings.reload()


setting_changed.connect(_reload)

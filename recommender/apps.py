"""App configuration: wires checks and signal receivers."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RecommenderConfig(AppConfig):
    name = "recommender"
    verbose_name = _("Recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from recommender import checks, signals  # noqa: F401  (registers them)

        signals.connect()

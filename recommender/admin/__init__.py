"""Django admin of the recommender: interactions (``interactions``), training runs and
served lists (``runs``), and the interaction history panel that a site's user and item
admins can mix in."""

import recommender.admin.analytics  # noqa: F401  (registers Experiment, DailyBlockStats and the dashboard)
from recommender.admin import runs  # noqa: F401  (registers TrainingRun and ServedList)
from recommender.admin.interactions import InteractionAdmin, InteractionHistoryMixin

__all__ = ["InteractionAdmin", "InteractionHistoryMixin"]

"""Celery's autodiscovery looks for ``<app>.tasks``: the tasks live in
:mod:`recommender.training.tasks` and :mod:`recommender.analytics.tasks`."""

from recommender.analytics.tasks import *  # noqa: F401,F403
from recommender.analytics.tasks import __all__ as _analytics_all
from recommender.training.tasks import *  # noqa: F401,F403
from recommender.training.tasks import __all__ as _training_all

__all__ = [*_training_all, *_analytics_all]

"""Celery's autodiscovery looks for ``<app>.tasks``: the tasks live in
:mod:`recommender.training.tasks`."""

from recommender.training.tasks import *  # noqa: F401,F403
from recommender.training.tasks import __all__  # noqa: F401

"""recommender: recommendations for any Django shop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing this package must not import Django (recommender.engine runs without it)
    from datetime import datetime

    from django.contrib.auth.base_user import AbstractBaseUser
    from django.db.models import Model
    from django.http import HttpRequest

    from recommender.models import Interaction

__version__ = "0.1.0"
__all__ = ["__version__", "track"]


def track(who: HttpRequest | AbstractBaseUser | str, item: Model | Any, event: str, value: float | None = None,
          context: str = "", timestamp: datetime | None = None) -> Interaction | None:
    """Record one interaction; see :func:`recommender.tracking.events.track`."""
    from recommender.tracking.events import track as _track

    return _track(who, item, event, value=value, context=context, timestamp=timestamp)

"""recommender: recommendations for any Django shop."""

__version__ = "0.1.0"
__all__ = ["__version__", "track"]


def track(who, item, event, value=None, context="", timestamp=None):
    """Record one interaction; see :func:`recommender.tracking.events.track`."""
    from recommender.tracking.events import track as _track

    return _track(who, item, event, value=value, context=context, timestamp=timestamp)

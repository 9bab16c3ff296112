"""The demo shop that shows the recommender app on real data."""

from shopdemo.celery import app as celery_app

__all__ = ["celery_app"]

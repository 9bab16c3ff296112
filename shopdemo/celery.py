"""The demo project's Celery app, configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopdemo.settings")

app = Celery("shopdemo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

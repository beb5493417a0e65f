"""The Celery app. With CELERY_BROKER_URL unset, tasks run in-process (eager) for the quickstart."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")

app = Celery("nexabilling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

"""Periodic work of the audit app (beat: settings.CELERY_BEAT_SCHEDULE)."""
from __future__ import annotations

from celery import shared_task

from .services import api_logs_prune


@shared_task(acks_late=True)
def api_logs_prune_task() -> None:
    api_logs_prune()

"""Thin Celery tasks of the migration: ids in, one service call."""
from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def lago_import_task(service_id: int, actor: str = "", dry_run: bool = False) -> None:
    """Import (or resume importing) a service's Lago organisation with the URL and key on its phase row."""
    from apps.customers.models import Service
    from apps.migration.importer import lago_import
    from apps.migration.models import ServicePhase

    phase = ServicePhase.objects.select_related("service").get(service_id=service_id)
    lago_import(service=Service.objects.get(pk=service_id), api_url=phase.lago_api_url,
                api_key=phase.lago_api_key, dry_run=dry_run, actor=actor)


@shared_task(acks_late=True, ignore_result=True)
def relay_due_task() -> None:
    """Deliver every open relay stream that is due (does nothing, with one small read, when no dual run is on)."""
    from apps.migration.services import relay_due

    relay_due()


@shared_task(acks_late=True, ignore_result=True)
def reconcile_dual_runs_task() -> None:
    """Reconcile this month and the last for every service in a dual run (after the day's shadow closes)."""
    from apps.migration.reconcile import reconcile_dual_runs

    reconcile_dual_runs()

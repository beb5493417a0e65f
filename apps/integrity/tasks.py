"""The daily billing check (beat entry `integrity-billing-check` in settings)."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(acks_late=True)
def billing_check_run_task() -> int:
    """Run and record the invariants (with the Odoo comparison when the ledger is on); return the run id."""
    from .services import billing_check_run

    return billing_check_run(odoo=settings.LEDGER_ENABLED).run.pk

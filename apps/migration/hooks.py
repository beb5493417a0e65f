"""What other apps ask the migration while it runs: which services Lago still bills or tells, which invoices are a
dual run's shadow copies.

Invoicing and webhooks call these (tests/unit/test_layers.py allows those imports while the migration lasts), so
this module imports only the migration's models and, for one read, invoicing's: never the importer or services.
"""
from __future__ import annotations

import logging

from .models import ServicePhase, ShadowInvoice

logger = logging.getLogger(__name__)

Phase = ServicePhase.Phase


def phase_service_ids(*phases: str) -> list[int]:
    """Ids of the services in any of `phases` (a tiny table: one indexed read, no cache to go stale)."""
    return list(ServicePhase.objects.filter(phase__in=phases).values_list("service_id", flat=True))


def close_excluded_service_ids() -> list[int]:
    """Services the period close must not bill at all: Lago bills them (`lago` phase)."""
    return phase_service_ids(Phase.LAGO)


def webhook_withheld_service_ids(service_ids: list[int]) -> set[int]:
    """Among `service_ids`, those whose apps must not hear from the hub: Lago is still authoritative for them
    (`lago`, `dual_run`) and tells the apps itself."""
    if not service_ids:
        return set()
    return set(ServicePhase.objects.filter(service_id__in=service_ids, phase__in=(Phase.LAGO, Phase.DUAL_RUN))
               .values_list("service_id", flat=True))


def shadow_invoices_record(invoices: list) -> set[int]:
    """Mark the just-finalized invoices that bill a service in `dual_run` as shadow; return their ids.

    Call in the finalizing transaction, after the fees are written: the caller then writes no ledger posting
    and no payment for them. An invoice mixing a dual-run service with an authoritative one (the phase switch
    refuses customers shared that way, but a subscription created during the dual run can still do it) is
    treated as shadow, so no money moves twice, and logged: its authoritative part needs billing by hand.
    """
    if not invoices:
        return set()
    dual = phase_service_ids(Phase.DUAL_RUN)
    if not dual:
        return set()
    from apps.invoicing.models import Fee

    ids = [invoice.pk for invoice in invoices]
    billed: dict[int, set[int]] = {}
    # No ordering: Fee's default one joins the invoices, and the close's new invoices are not inserted yet.
    for invoice_id, service_id in (Fee.objects.filter(invoice_id__in=ids).order_by()
                                   .values_list("invoice_id", "service_id").distinct()):
        billed.setdefault(invoice_id, set()).add(service_id)
    shadow = {invoice_id: services for invoice_id, services in billed.items() if services & set(dual)}
    for invoice_id, services in shadow.items():
        if services - set(dual):
            logger.error("invoice %s mixes dual-run services %s with authoritative ones %s: kept in shadow",
                         invoice_id, sorted(services & set(dual)), sorted(services - set(dual)))
    ShadowInvoice.objects.bulk_create(
        [ShadowInvoice(invoice_id=invoice_id, service_id=min(services & set(dual)))
         for invoice_id, services in shadow.items()],
        ignore_conflicts=True,
    )
    return set(shadow)

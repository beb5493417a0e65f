"""Reconciliation of a dual run: the hub's invoices of a service issued in a month against Lago's, per
customer-period (`compare.py` decides; this module reads both sides and keeps the result as rows)."""
from __future__ import annotations

import calendar
import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date

from apps.core.exceptions import ValidationFailed
from apps.customers.models import AccountLink, Service

from . import compare
from .importer import _decimal
from .lago_client import LagoClient
from .models import LagoObject, ReconciliationDifference, ReconciliationLine, ReconciliationRun, ServicePhase


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of a YYYY-MM period."""
    try:
        year, month = (int(part) for part in period.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise ValidationFailed("period must be YYYY-MM", details={"period": ["invalid_format"]}) from None
    return first, date(year, month, calendar.monthrange(year, month)[1])


def _hub_sides(service: Service, first: date, last: date) -> dict[tuple, list[tuple[compare.InvoiceSide, int]]]:
    """The hub's subscription invoices billing `service`, issued in [first, last], finalized, not Lago history."""
    from apps.invoicing.models import Fee, Invoice

    history = LagoObject.objects.filter(service=service, kind="invoice").values("hub_id")
    invoices = (Invoice.objects.filter(fees__service=service, issuing_date__range=(first, last),
                                       status=Invoice.Status.FINALIZED, invoice_type=Invoice.InvoiceType.SUBSCRIPTION)
                .exclude(pk__in=history).distinct().prefetch_related("applied_taxes").order_by("issuing_date", "pk"))
    links = {}
    for link in AccountLink.objects.filter(service=service).order_by("deleted_at", "-id"):
        links.setdefault(link.customer_id, link.external_id)  # the live link, else the newest
    out: dict[tuple, list] = defaultdict(list)
    for invoice in invoices:
        fees = tuple(
            compare.FeeLine(
                subscription=fee.subscription.external_id if fee.subscription_id else "",
                fee_type=("adjustment" if fee.is_adjustment else fee.fee_type),
                code=(fee.charge.billable_metric.code if fee.charge_id else
                      fee.subscription.plan.code if fee.subscription_id else fee.add_on_code),
                units=fee.units, amount_cents=fee.amount_cents)
            for fee in Fee.objects.filter(invoice=invoice, service=service)
            .select_related("subscription__plan", "charge__billable_metric").order_by("pk")
        )
        taxes: dict[Decimal, int] = defaultdict(int)
        for tax in invoice.applied_taxes.all():
            taxes[tax.tax_rate.normalize()] += tax.amount_cents
        side = compare.InvoiceSide(invoice.number, invoice.currency, fees, dict(taxes), invoice.fees_amount_cents,
                                   invoice.taxes_amount_cents, invoice.total_amount_cents)
        out[(links.get(invoice.customer_id, invoice.customer.external_id), invoice.issuing_date, invoice.currency)
            ].append((side, invoice.pk))
    return out


def _lago_side(invoice: dict) -> compare.InvoiceSide:
    fees = tuple(
        compare.FeeLine(subscription=fee.get("external_subscription_id") or "",
                        fee_type=(fee.get("item") or {}).get("type") or "", code=(fee.get("item") or {}).get("code") or "",
                        units=_decimal(fee.get("units")), amount_cents=int(fee.get("amount_cents") or 0))
        for fee in invoice.get("fees") or []
    )
    taxes: dict[Decimal, int] = defaultdict(int)
    for tax in invoice.get("applied_taxes") or []:
        taxes[_decimal(tax.get("tax_rate")).normalize()] += int(tax.get("amount_cents") or 0)
    return compare.InvoiceSide(invoice.get("number") or "", invoice.get("currency") or "", fees, dict(taxes),
                               int(invoice.get("fees_amount_cents") or 0), int(invoice.get("taxes_amount_cents") or 0),
                               int(invoice.get("total_amount_cents") or 0))


def _lago_sides(client: LagoClient, first: date, last: date, *,
                imported: set[str]) -> dict[tuple, list[tuple[compare.InvoiceSide, dict]]]:
    """Lago's finalized subscription invoices issued in [first, last], but those imported as history before the
    dual run (the hub holds them as they are: there is nothing of the hub's to compare them with)."""
    out: dict[tuple, list] = defaultdict(list)
    page = 1
    while True:
        listing = client.list_page("invoices", page=page, params=[
            ("statuses[]", "finalized"), ("invoice_type", "subscription"),
            ("issuing_date_from", first.isoformat()), ("issuing_date_to", last.isoformat())])
        for listed in listing.items:
            # The filters again: an older Lago (or a Lago-shaped source) may ignore some of them.
            issued = parse_date(str(listed.get("issuing_date")))
            if (str(listed.get("lago_id")) in imported or listed.get("status") != "finalized"
                    or listed.get("invoice_type") != "subscription" or issued is None or not first <= issued <= last):
                continue
            invoice = client.get("invoices", str(listed["lago_id"]), root="invoice")  # lists omit fees
            customer = (invoice.get("customer") or {}).get("external_id") or invoice.get("external_customer_id") or ""
            out[(customer, parse_date(invoice["issuing_date"]), invoice.get("currency") or "")].append(
                (_lago_side(invoice), invoice))
        if listing.next_page is None:
            return out
        page = int(listing.next_page)


def _side_json(side: compare.InvoiceSide | None) -> dict:
    if side is None:
        return {}
    return {
        "number": side.number, "currency": side.currency,
        "fees": [{"key": fee.key, "units": str(fee.units), "amount_cents": fee.amount_cents} for fee in side.fees],
        "taxes": {f"{rate:f}": cents for rate, cents in side.taxes.items()},
        **{name: getattr(side, name) for name in compare.TOTALS},
    }


def reconcile(*, service: Service, period: str, client: LagoClient | None = None, actor: str = "") -> ReconciliationRun:
    """Compare `service`'s invoices issued in `period` (YYYY-MM) with Lago's and keep the result; return the run.

    Rerunning makes a new run (the admin shows the newest per period). Lago is read before anything is
    written; the rows are written in one transaction.
    """
    first, last = period_bounds(period)
    if client is None:
        phase = ServicePhase.objects.get(service=service)
        client = LagoClient(api_url=phase.lago_api_url, api_key=phase.lago_api_key)
    run = ReconciliationRun.objects.create(service=service, period=period, actor=actor)
    try:
        imported = set(LagoObject.objects.filter(service=service, kind="invoice").values_list("lago_id", flat=True))
        lago = _lago_sides(client, first, last, imported=imported)
        hub = _hub_sides(service, first, last)
        with transaction.atomic():
            differing_customers: set[str] = set()
            customers: set[str] = set()
            differences = 0
            for (customer, issued, currency), mine, theirs in compare.pair(hub, lago):
                hub_side, hub_invoice_id = mine if mine else (None, None)
                lago_side, lago_raw = theirs if theirs else (None, {})
                found = compare.compare(hub_side, lago_side)
                customers.add(customer)
                if found:
                    differing_customers.add(customer)
                line = ReconciliationLine.objects.create(
                    run=run, external_customer_id=customer, issuing_date=issued, currency=currency,
                    hub_invoice_id=hub_invoice_id, hub_number=hub_side.number if hub_side else "",
                    lago_invoice_id=str(lago_raw.get("lago_id") or ""), lago_number=lago_side.number if lago_side else "",
                    hub_total_amount_cents=hub_side.total_amount_cents if hub_side else None,
                    lago_total_amount_cents=lago_side.total_amount_cents if lago_side else None,
                    matches=not found, hub_side=_side_json(hub_side), lago_side=_side_json(lago_side),
                )
                ReconciliationDifference.objects.bulk_create(
                    ReconciliationDifference(line=line, kind=d.kind, item=d.item[:255], hub_value=d.hub[:255],
                                             lago_value=d.lago[:255], delta_cents=d.delta_cents)
                    for d in found)
                differences += len(found)
            run.customers_count, run.differing_count = len(customers), len(differing_customers)
            run.matching_count, run.differences_count = len(customers) - len(differing_customers), differences
            run.status, run.finished_at = ReconciliationRun.Status.DONE, timezone.now()
            run.save()
    except Exception as exc:
        ReconciliationRun.objects.filter(pk=run.pk).update(status=ReconciliationRun.Status.FAILED,
                                                           error=f"{type(exc).__name__}: {exc}",
                                                           finished_at=timezone.now())
        raise
    return run


CSV_HEADER = ("service", "period", "customer", "issuing_date", "currency", "hub_invoice", "lago_invoice", "kind",
              "item", "hub", "lago", "delta_cents")


def reconciliation_csv(runs) -> str:
    """Every difference of `runs` as CSV, one row per difference (a matching customer-period has none)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for run in runs:
        for difference in (ReconciliationDifference.objects.filter(line__run=run).select_related("line")
                           .order_by("line__external_customer_id", "line__issuing_date", "id")):
            line = difference.line
            writer.writerow((run.service.code, run.period, line.external_customer_id, line.issuing_date.isoformat(),
                             line.currency, line.hub_number, line.lago_number, difference.kind, difference.item,
                             difference.hub_value, difference.lago_value, difference.delta_cents))
    return out.getvalue()


def reconcile_dual_runs(*, today: date | None = None) -> list[int]:
    """Reconcile this month and the last for every service in `dual_run` (the beat's daily pass); return run ids."""
    today = today or timezone.localdate()
    previous = today.replace(day=1) - timedelta(days=1)
    runs = []
    for phase in ServicePhase.objects.filter(phase=ServicePhase.Phase.DUAL_RUN).select_related("service"):
        for month in (previous, today):
            runs.append(reconcile(service=phase.service, period=f"{month:%Y-%m}", actor="beat").pk)
    return runs

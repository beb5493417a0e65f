"""Accountants' exports: invoices and fees issued in a period as CSV, and the period's summary per service and tax
rate. Amounts in currency units (decimal strings, exact), one currency per row. Finalized and voided invoices are
listed (a void is part of the period's story); the summary counts finalized ones only."""
from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from apps.core.money import from_minor_units
from apps.invoicing.models import Fee, Invoice

ISSUED = (Invoice.Status.FINALIZED, Invoice.Status.VOIDED)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv(rows: Iterator[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(row)


def _units(cents: int, currency: str) -> str:
    return str(from_minor_units(int(cents), currency))


def invoices_csv(*, start: date, end: date) -> Iterator[str]:
    """Invoices issued from `start` to `end` (inclusive), by issuing date and number."""
    def rows():
        yield ["number", "issuing_date", "status", "payment_status", "customer", "customer_name", "currency",
               "fees", "taxes", "credit_notes", "prepaid_credit", "total", "paid"]
        query = (Invoice.objects.filter(status__in=ISSUED, issuing_date__gte=start, issuing_date__lte=end)
                 .select_related("customer").order_by("issuing_date", "number"))
        for invoice in query.iterator(chunk_size=2000):
            c = invoice.currency
            yield [invoice.number, invoice.issuing_date.isoformat(), invoice.status, invoice.payment_status,
                   invoice.customer.external_id, invoice.customer.legal_name or invoice.customer.name, c,
                   _units(invoice.fees_amount_cents, c), _units(invoice.taxes_amount_cents, c),
                   _units(invoice.credit_notes_amount_cents, c), _units(invoice.prepaid_credit_amount_cents, c),
                   _units(invoice.total_amount_cents, c), _units(invoice.total_paid_amount_cents, c)]
    return _csv(rows())


def fees_csv(*, start: date, end: date) -> Iterator[str]:
    def rows():
        yield ["invoice", "issuing_date", "invoice_status", "service", "fee_type", "name", "units", "currency",
               "amount", "taxes", "tax_codes", "from", "to"]
        query = (Fee.objects.filter(invoice__status__in=ISSUED, invoice__issuing_date__gte=start,
                                    invoice__issuing_date__lte=end)
                 .select_related("invoice", "service").order_by("invoice__issuing_date", "invoice__number", "pk"))
        for fee in query.iterator(chunk_size=2000):
            c = fee.currency
            yield [fee.invoice.number, fee.invoice.issuing_date.isoformat(), fee.invoice.status,
                   fee.service.code if fee.service else "", fee.fee_type, fee.name, str(fee.units.normalize()), c,
                   _units(fee.amount_cents, c), _units(fee.taxes_amount_cents, c),
                   " ".join(tax.get("code", "") for tax in fee.applied_taxes or ()),
                   fee.from_datetime.isoformat() if fee.from_datetime else "",
                   fee.to_datetime.isoformat() if fee.to_datetime else ""]
    return _csv(rows())


def period_summary(*, start: date, end: date) -> list[dict]:
    """Per service, tax (code and rate) and currency: the taxed base and the tax, over finalized invoices' fees.

    A fee with several taxes (GST and PST) counts its base once per tax; untaxed fees appear under tax "none".
    """
    base: dict[tuple, int] = defaultdict(int)
    tax: dict[tuple, int] = defaultdict(int)
    query = (Fee.objects.filter(invoice__status=Invoice.Status.FINALIZED, invoice__issuing_date__gte=start,
                                invoice__issuing_date__lte=end)
             .values_list("service__code", "currency", "amount_cents", "applied_taxes"))
    for service, currency, amount, applied in query.iterator(chunk_size=5000):
        for item in applied or [{"code": "none", "rate": "0", "amount_cents": 0}]:
            key = (service or "other", item.get("code", ""), Decimal(str(item.get("rate", "0"))), currency)
            base[key] += amount
            tax[key] += int(item.get("amount_cents", 0))
    return [{"service": service, "tax": code, "rate": rate, "currency": currency,
             "base": _units(base[key], currency), "tax_amount": _units(tax[key], currency)}
            for key in sorted(base) for service, code, rate, currency in [key]]


def period_summary_csv(*, start: date, end: date) -> Iterator[str]:
    rows = period_summary(start=start, end=end)
    return _csv(iter([["service", "tax", "rate", "currency", "base", "tax_amount"]]
                     + [[r["service"], r["tax"], str(r["rate"]), r["currency"], r["base"], r["tax_amount"]]
                        for r in rows]))

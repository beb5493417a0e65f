"""Build finalized invoices, credit notes and the Odoo mapping directly in the DB (no invoicing services)."""
from __future__ import annotations

import itertools
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from apps.customers.models import Customer, Service
from apps.invoicing.models import CreditNote, CreditNoteItem, Fee, Invoice, InvoiceAppliedTax
from apps.invoicing.fees import customer_tax_rates
from apps.ledger.models import (
    OdooAccountMapping,
    OdooAnalyticMapping,
    OdooJournalMapping,
    OdooProductMapping,
    OdooTaxMapping,
)

_seq = itertools.count(1)


def customer_make(*, province: str = "ON", external_id: str | None = None) -> Customer:
    n = next(_seq)
    return Customer.objects.create(external_id=external_id or f"cust-{n:05d}", name=f"Customer {n}",
                                   email=f"c{n}@example.com", country="CA", state=province, currency="CAD")


def _tax_cents(amount_cents: int, rate: Decimal) -> int:
    """Tax of one line in cents, rounded once half-up (Odoo round_per_line)."""
    return int((Decimal(amount_cents) * rate / Decimal(100)).quantize(Decimal(1), ROUND_HALF_UP))


def invoice_make(*, service: Service, customer: Customer, fees_cents: list[int], number: str | None = None,
                 issuing_date: date = date(2026, 10, 31), skew_tax_cents: int = 0) -> Invoice:
    """A finalized invoice with one fee per amount, taxed for the customer's province (round per line)."""
    n = next(_seq)
    rates = customer_tax_rates(customer, on=issuing_date)
    invoice = Invoice.objects.create(customer=customer, status=Invoice.Status.FINALIZED, currency="CAD",
                                     series="NEXA-2026", number=number or f"NEXA-2026-{n:06d}", sequential_id=n,
                                     issuing_date=issuing_date)
    untaxed = tax_total = 0
    per_tax: dict[str, list[int]] = {}
    for i, cents in enumerate(fees_cents):
        applied = []
        for rate in rates:
            tax = _tax_cents(cents, rate.rate)
            applied.append({"code": rate.code, "name": rate.name, "rate": str(rate.rate), "amount_cents": tax})
            per_tax.setdefault(rate.code, [0, 0])
            per_tax[rate.code][0] += cents
            per_tax[rate.code][1] += tax
        line_tax = sum(a["amount_cents"] for a in applied)
        Fee.objects.create(invoice=invoice, fee_key=f"fee-{invoice.pk}-{i}", fee_type=Fee.FeeType.ADD_ON,
                           service=service, name=f"Line {i}", currency="CAD", units=Decimal(1),
                           precise_amount=Decimal(cents) / 100, amount_cents=cents, taxes_amount_cents=line_tax,
                           applied_taxes=applied)
        untaxed += cents
        tax_total += line_tax
    for rate in rates:
        base, tax = per_tax.get(rate.code, [0, 0])
        InvoiceAppliedTax.objects.create(invoice=invoice, tax_code=rate.code, tax_name=rate.name, tax_rate=rate.rate,
                                         base_amount_cents=base, amount_cents=tax)
    tax_total += skew_tax_cents
    Invoice.objects.filter(pk=invoice.pk).update(
        fees_amount_cents=untaxed, sub_total_excluding_taxes_amount_cents=untaxed, taxes_amount_cents=tax_total,
        sub_total_including_taxes_amount_cents=untaxed + tax_total, total_amount_cents=untaxed + tax_total)
    invoice.refresh_from_db()
    return invoice


def credit_note_make(*, invoice: Invoice, fee_amounts_cents: dict[int, int] | None = None) -> CreditNote:
    """Credit some fees of `invoice` (fee index -> cents, default: the first fee in full)."""
    fees = list(invoice.fees.order_by("id"))
    fee_amounts_cents = fee_amounts_cents or {0: fees[0].amount_cents}
    seq = invoice.credit_notes.count() + 1
    note = CreditNote.objects.create(invoice=invoice, customer=invoice.customer, number=f"{invoice.number}-CN{seq}",
                                     sequential_id=seq, issuing_date=invoice.issuing_date,
                                     reason=CreditNote.Reason.OTHER, currency=invoice.currency)
    rates = customer_tax_rates(invoice.customer, on=invoice.issuing_date)
    untaxed = taxes = 0
    for index, cents in fee_amounts_cents.items():
        tax = sum(_tax_cents(cents, rate.rate) for rate in rates)
        CreditNoteItem.objects.create(credit_note=note, fee=fees[index], amount_cents=cents, taxes_amount_cents=tax)
        untaxed, taxes = untaxed + cents, taxes + tax
    # As credit_note_create: the note first settles what the invoice still owes, the rest is credit.
    invoice.refresh_from_db()
    offset = min(invoice.total_due_amount_cents, untaxed + taxes)
    credit = untaxed + taxes - offset
    CreditNote.objects.filter(pk=note.pk).update(
        sub_total_excluding_taxes_amount_cents=untaxed, taxes_amount_cents=taxes, total_amount_cents=untaxed + taxes,
        offset_amount_cents=offset, credit_amount_cents=credit, balance_amount_cents=credit,
        credit_status=CreditNote.CreditStatus.AVAILABLE if credit else "")
    Invoice.objects.filter(pk=invoice.pk).update(offset_amount_cents=invoice.offset_amount_cents + offset)
    invoice.refresh_from_db()
    note.refresh_from_db()
    return note


def mapping_make(*, service: Service, product: str = "PLATFORM", account: str = "400000",
                 analytic: str | None = "SAAS", taxes: dict[str, str] | None = None) -> None:
    """Map `service` and the Canadian taxes to the stand-in's seeded records."""
    OdooProductMapping.objects.create(service=service, odoo_product=product, odoo_income_account=account)
    if analytic:
        OdooAnalyticMapping.objects.create(service=service, odoo_analytic_account=analytic)
    OdooJournalMapping.objects.get_or_create(purpose=OdooJournalMapping.Purpose.SALES,
                                             defaults={"odoo_journal": "account.1_sale"})
    OdooJournalMapping.objects.get_or_create(purpose=OdooJournalMapping.Purpose.STRIPE_RECEIPTS,
                                             defaults={"odoo_journal": "STRIP"})
    # Granted wallet credit has no default account (a company's choice of expense): the stand-in's.
    OdooAccountMapping.objects.get_or_create(purpose=OdooAccountMapping.Purpose.PREPAID_DISCOUNT,
                                             defaults={"odoo_account": "519000"})
    OdooAccountMapping.objects.get_or_create(purpose=OdooAccountMapping.Purpose.PREPAID_BREAKAGE,
                                             defaults={"odoo_account": "499000"})
    taxes = taxes if taxes is not None else {
        code: f"account.1_{code}" for code in ("gst_sale_tax_5", "hst_sale_tax_13", "hst_sale_tax_15",
                                               "qst_sale_tax_9975", "pst_sale_tax_7_bc")}
    for code, ref in taxes.items():
        OdooTaxMapping.objects.get_or_create(tax_code=code, defaults={"odoo_tax": ref})

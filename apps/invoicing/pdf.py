"""Invoice and credit-note PDFs from templates/invoicing/, rendered by xhtml2pdf (pure PyPI, reportlab)."""
from __future__ import annotations

import io
from collections import defaultdict

from django.core import signing
from django.template.loader import render_to_string

from apps.core.money import from_minor_units
from apps.customers.selectors import organization_get

from .models import CreditNote, Invoice
from .selectors import invoice_payment_link

SALT = "invoicing.pdf"
CREDIT_NOTE_SALT = "invoicing.credit_note.pdf"


def _money(cents: int, currency: str) -> str:
    return f"{from_minor_units(cents, currency):,.2f} {currency}" if currency != "JPY" else f"{cents:,} {currency}"


def _seller() -> dict:
    """What the invoice says about Nexa: the organization's row (PUT /organizations, the admin), audited."""
    organization = organization_get()
    return {"name": organization.legal_name or organization.name, "address": organization.address,
            "hst": organization.tax_identification_number, "footer": organization.invoice_footer}


def invoice_pdf_context(invoice: Invoice) -> dict:
    fees = list(invoice.fees.select_related("service").order_by("id"))
    by_service: dict[str, list] = defaultdict(list)
    for fee in fees:
        by_service[fee.service.name if fee.service else "Nexa"].append(
            {"name": fee.name, "units": fee.units.normalize(), "amount": _money(fee.amount_cents, fee.currency),
             "period": f"{fee.from_datetime:%Y-%m-%d} – {fee.to_datetime:%Y-%m-%d}" if fee.from_datetime else ""}
        )
    periods = list(invoice.billing_periods.order_by("from_datetime"))
    return {
        "invoice": invoice,
        "seller": _seller(),
        "customer": invoice.customer,
        "period_from": periods[0].from_datetime if periods else None,
        "period_to": periods[-1].to_datetime if periods else None,
        "services": sorted(by_service.items()),
        "taxes": [
            {"name": tax.tax_name, "base": _money(tax.base_amount_cents, invoice.currency),
             "amount": _money(tax.amount_cents, invoice.currency)}
            for tax in invoice.applied_taxes.order_by("tax_code")
        ],
        "subtotal": _money(invoice.sub_total_excluding_taxes_amount_cents, invoice.currency),
        "tax_total": _money(invoice.taxes_amount_cents, invoice.currency),
        "total": _money(invoice.total_amount_cents, invoice.currency),
        "payment_url": invoice_payment_link(invoice),
        "paid": invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED,
    }


def invoice_pdf(invoice: Invoice) -> bytes:
    """Return the invoice as PDF bytes."""
    return _render("invoicing/invoice.html", invoice_pdf_context(invoice))


def credit_note_pdf_context(note: CreditNote) -> dict:
    items = list(note.items.select_related("fee__service").order_by("id"))
    taxes: dict[str, list] = {}
    for item in items:
        for tax in item.applied_taxes or ():
            entry = taxes.setdefault(tax["code"], [tax["name"], 0, 0])
            entry[1] += item.amount_cents
            entry[2] += int(tax["amount_cents"])
    return {
        "note": note,
        "invoice": note.invoice,
        "seller": _seller(),
        "customer": note.customer,
        "lines": [{"name": item.fee.name, "service": item.fee.service.name if item.fee.service else "Nexa",
                   "amount": _money(item.amount_cents, note.currency)} for item in items],
        "taxes": [{"name": name, "base": _money(base, note.currency), "amount": _money(tax, note.currency)}
                  for _, (name, base, tax) in sorted(taxes.items())],
        "subtotal": _money(note.sub_total_excluding_taxes_amount_cents, note.currency),
        "tax_total": _money(note.taxes_amount_cents, note.currency),
        "total": _money(note.total_amount_cents, note.currency),
        "offset": _money(note.offset_amount_cents, note.currency) if note.offset_amount_cents else None,
        "credit": _money(note.credit_amount_cents, note.currency) if note.credit_amount_cents else None,
        "refund": _money(note.refund_amount_cents, note.currency) if note.refund_amount_cents else None,
    }


def credit_note_pdf(note: CreditNote) -> bytes:
    """Return the credit note as PDF bytes."""
    return _render("invoicing/credit_note.html", credit_note_pdf_context(note))


def _render(template: str, context: dict) -> bytes:
    from xhtml2pdf import pisa

    html = render_to_string(template, context)
    out = io.BytesIO()
    result = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"PDF rendering failed with {result.err} errors")
    return out.getvalue()


def invoice_pdf_token(invoice: Invoice | CreditNote) -> str:
    """Return a signed token for the PDF URL (the URL is handed to browsers without the API key); a credit note's
    is signed under its own salt, so an invoice's token never opens a credit note or the reverse."""
    return signing.dumps(str(invoice.lago_id), salt=SALT if isinstance(invoice, Invoice) else CREDIT_NOTE_SALT)


def invoice_from_pdf_token(token: str, *, max_age: int = 7 * 86400) -> str:
    return signing.loads(token, salt=SALT, max_age=max_age)


def credit_note_from_pdf_token(token: str, *, max_age: int = 7 * 86400) -> str:
    return signing.loads(token, salt=CREDIT_NOTE_SALT, max_age=max_age)

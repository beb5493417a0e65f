"""Invoice PDFs from templates/invoicing/invoice.html, rendered by xhtml2pdf (pure PyPI, reportlab)."""
from __future__ import annotations

import io
from collections import defaultdict

from django.core import signing
from django.template.loader import render_to_string

from apps.core.money import from_minor_units
from apps.customers.selectors import organization_get

from .models import Invoice
from .selectors import invoice_payment_link

SALT = "invoicing.pdf"


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
    from xhtml2pdf import pisa

    html = render_to_string("invoicing/invoice.html", invoice_pdf_context(invoice))
    out = io.BytesIO()
    result = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"PDF rendering failed with {result.err} errors")
    return out.getvalue()


def invoice_pdf_token(invoice: Invoice) -> str:
    """Return a signed token for the PDF URL (the URL is handed to browsers without the API key)."""
    return signing.dumps(str(invoice.lago_id), salt=SALT)


def invoice_from_pdf_token(token: str, *, max_age: int = 7 * 86400) -> str:
    return signing.loads(token, salt=SALT, max_age=max_age)

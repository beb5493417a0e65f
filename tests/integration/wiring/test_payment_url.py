"""Issue 6: a finalized invoice with an amount due, for a customer without a saved card, gets a Checkout link
that shows in the invoice API body, in an outbound webhook and on the PDF, and disappears once paid."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.invoicing.pdf import invoice_pdf, invoice_pdf_context
from apps.payments import services as payments
from tests.integration.invoicing.conftest import at
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401

from .conftest import events, listen

pytestmark = pytest.mark.django_db


def test_checkout_link_reaches_api_webhook_and_pdf_and_goes_once_paid(
        stripe_env, billing, settings, api_client_for):  # noqa: F811
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    listen(billing.service)
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    [created] = events(billing.service, "invoice.created")
    assert created["invoice"]["payment_url"] is None  # collection starts after the finalizing commit

    attempt = payments.payment_collect_for_invoice(invoice_id=invoice.pk)  # no saved card: Checkout link
    invoice.refresh_from_db()
    assert attempt.kind == "checkout" and invoice.payment_url == attempt.checkout_url != ""

    [update] = events(billing.service, "invoice.payment_status_updated")
    assert update["invoice"]["payment_url"] == invoice.payment_url
    assert update["invoice"]["payment_status"] == "pending"

    body = api_client_for(billing.raw_key).get(f"/api/v1/invoices/{invoice.lago_id}").json()
    assert body["invoice"]["payment_url"] == invoice.payment_url
    context = invoice_pdf_context(invoice)
    assert context["payment_url"] == invoice.payment_url and not context["paid"]
    assert invoice_pdf(invoice).startswith(b"%PDF")

    from apps.invoicing.representations import invoice_out
    assert invoice_out(invoice, service=billing.service)["payment_url"] == invoice.payment_url

    Invoice.objects.filter(pk=invoice.pk).update(payment_status="succeeded",
                                                 total_paid_amount_cents=invoice.total_amount_cents)
    invoice.refresh_from_db()
    assert invoice_out(invoice, service=billing.service)["payment_url"] is None
    assert invoice_pdf_context(invoice)["payment_url"] is None and invoice_pdf_context(invoice)["paid"]

"""Admin: "create credit note" on a finalized invoice through an intermediate form, payment attempts and the
payment link on the invoice page, the invoice history on the customer page."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import CreditNote, Invoice
from apps.payments.models import PaymentAttempt
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def finalized(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("acme")
    plan = billing.plan(amount_cents=10000)
    billing.subscribe("s1", plan, customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice.status == "finalized" and invoice.total_amount_cents == 11300
    return invoice


def _action(admin_client, invoice, **fields):
    data = {"action": "create_credit_note", "_selected_action": [invoice.pk], **fields}
    return admin_client.post("/admin/invoicing/invoice/", data, follow=True)


def test_create_credit_note_action_asks_then_creates_exactly_one(admin_client, finalized):
    form = _action(admin_client, finalized)
    assert form.status_code == 200 and b"Create a credit note for" in form.content
    assert CreditNote.objects.count() == 0  # the first step only shows the form

    done = _action(admin_client, finalized, apply="1", reason="order_change", scope="remaining",
                   settlement="credit", description="plan changed")
    assert done.status_code == 200
    [note] = CreditNote.objects.all()
    assert (note.invoice_id, note.reason, note.description) == (finalized.pk, "order_change", "plan changed")
    # The invoice is unpaid: the note settles it rather than handing out credit.
    assert (note.total_amount_cents, note.offset_amount_cents, note.credit_amount_cents, note.refund_amount_cents) \
        == (11300, 11300, 0, 0)

    again = _action(admin_client, finalized, apply="1", reason="other", scope="remaining", settlement="credit",
                    description="again")
    assert b"value_is_mandatory" in again.content  # nothing left to credit: refused, nothing written
    assert CreditNote.objects.count() == 1


def test_per_fee_refund_without_a_payment_is_refused_with_the_reason(admin_client, finalized):
    fee = finalized.fees.get()
    page = _action(admin_client, finalized, apply="1", reason="other", scope="per_fee", settlement="refund",
                   description="partial refund", **{f"fee_{fee.pk}": "2500"})
    assert b"higher_than_remaining_invoice_amount" in page.content  # nothing was paid, so nothing to refund
    assert CreditNote.objects.count() == 0
    _action(admin_client, finalized, apply="1", reason="other", scope="per_fee", settlement="credit",
            description="partial credit", **{f"fee_{fee.pk}": "2500"})
    [note] = CreditNote.objects.all()
    assert (note.sub_total_excluding_taxes_amount_cents, note.total_amount_cents) == (2500, 2825)


def test_draft_invoices_are_not_credited(admin_client, billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(), customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    page = _action(admin_client, Invoice.objects.get(), apply="1", reason="other", scope="remaining",
                   settlement="credit")
    assert b"finalized invoices only" in page.content
    assert CreditNote.objects.count() == 0


def test_invoice_page_shows_attempts_and_payment_link_and_customer_page_shows_history(admin_client, finalized):
    url = "https://checkout.stripe.com/c/pay/cs_test_nexa"
    Invoice.objects.filter(pk=finalized.pk).update(payment_url=url)
    PaymentAttempt.objects.create(invoice=finalized, attempt_number=1, kind="checkout", status="requires_action",
                                  amount_cents=11300, currency="CAD", stripe_customer_id="cus_nexa",
                                  stripe_checkout_session_id="cs_test_nexa", checkout_url=url)
    page = admin_client.get(f"/admin/invoicing/invoice/{finalized.pk}/change/")
    assert page.status_code == 200
    assert f'href="{url}"'.encode() in page.content and b"cs_test_nexa" in page.content
    assert b"requires_action" in page.content

    customer_page = admin_client.get(f"/admin/customers/customer/{finalized.customer_id}/change/")
    assert customer_page.status_code == 200
    assert finalized.number.encode() in customer_page.content
    assert f"/admin/invoicing/invoice/{finalized.pk}/change/".encode() in customer_page.content
    assert f"?customer__id__exact={finalized.customer_id}".encode() in customer_page.content

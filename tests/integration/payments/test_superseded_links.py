"""Whatever Stripe reports as paid is recorded (issue 15, defect 2).

A superseded Checkout link is expired at Stripe; a voided invoice's open link too. Money that still arrives on a
link the hub gave up on (paid before the expiry reached Stripe, or on an invoice already paid or voided) is never
dropped: it is applied to the invoice while it owes it, and what is left becomes customer credit (or a refund, per
PAYMENTS_OVERPAYMENT_HANDLING) with a row staff see in the admin. The credit is consumed by the customer's next
invoices like credit-note credit. Events redelivered or out of order change nothing more.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from apps.invoicing.models import CreditApplication, CustomerCredit, Invoice
from apps.invoicing.services import AddOnFee, invoice_create_one_off, invoice_void
from apps.payments import services
from apps.payments import stripe_gateway as gateway
from apps.payments.models import Payment, PaymentAttempt, ProcessedStripeEvent, Refund
from tests.integration.balance import balance
from tests.integration.payments.stripe_fixtures import (
    ls_client,
    ls_post,
    make_customer,
    make_invoice,
    post_signed,
    stripe_event,
)

pytestmark = pytest.mark.django_db


def _session_id(attempt: PaymentAttempt) -> str:
    return attempt.stripe_checkout_session_id


def _pay(url: str, attempt: PaymentAttempt) -> dict:
    """The customer pays the attempt's Checkout link (the fake's helper), as Stripe would let them."""
    return ls_post(url, f"/_config/checkout_sessions/{_session_id(attempt)}/complete", {"payment_method": "pm_card_visa"})


def _completed(client, endpoint, session: dict, *, event_id: str | None = None):
    event = stripe_event("checkout.session.completed", session, event_id=event_id)
    assert post_signed(client, endpoint, event).status_code == 200
    return event


def _link(invoice: Invoice) -> PaymentAttempt:
    services.invoice_payment_url(invoice=invoice)
    return invoice.payment_attempts.order_by("-attempt_number").first()


def test_retry_payment_expires_the_superseded_link_at_stripe(stripe_env):
    invoice = make_invoice(make_customer(), total_amount_cents=11300)
    old = _link(invoice)
    assert old.status == PaymentAttempt.Status.REQUIRES_ACTION

    new = services.payment_retry(invoice=invoice)

    old.refresh_from_db()
    assert new.pk != old.pk and new.status == PaymentAttempt.Status.REQUIRES_ACTION
    assert old.status == PaymentAttempt.Status.CANCELED and old.checkout_closed_at is not None
    remote = ls_client(stripe_env).v1.checkout.sessions.retrieve(_session_id(old))
    assert remote.status == "expired"
    with pytest.raises(Exception):  # the customer can no longer pay it
        _pay(stripe_env, old)
    assert ls_client(stripe_env).v1.checkout.sessions.retrieve(_session_id(new)).status == "open"


def test_a_link_paid_just_before_the_retry_pays_the_invoice(stripe_env):
    invoice = make_invoice(make_customer(), total_amount_cents=11300)
    old = _link(invoice)
    _pay(stripe_env, old)  # paid, but the webhook has not arrived yet

    assert services.payment_retry(invoice=invoice) is None  # nothing left to collect: no new link

    invoice.refresh_from_db()
    assert (invoice.payment_status, invoice.total_paid_amount_cents) == ("succeeded", 11300)
    assert Payment.objects.get(invoice=invoice).attempt_id == old.pk
    assert invoice.payment_attempts.count() == 1 and not CustomerCredit.objects.exists()


@pytest.mark.parametrize("order", ["old-link-first", "new-link-first"])
def test_both_links_paid_records_both_payments_and_the_second_becomes_credit(
    client, webhook_endpoint, stripe_env, monkeypatch, order
):
    invoice = make_invoice(make_customer(), total_amount_cents=11300)
    old = _link(invoice)

    def stripe_down(**kwargs):
        raise gateway.StripeUnavailable("connection reset")

    monkeypatch.setattr(gateway, "checkout_session_expire", stripe_down)  # the expiry does not reach Stripe
    new = services.payment_retry(invoice=invoice)
    monkeypatch.undo()
    old.refresh_from_db()
    assert (old.status, old.checkout_closed_at) == (PaymentAttempt.Status.CANCELED, None)  # the sweep retries

    first, second = (old, new) if order == "old-link-first" else (new, old)
    paid_first = _pay(stripe_env, first)
    paid_second = _pay(stripe_env, second)  # before the hub heard of the first
    event = _completed(client, webhook_endpoint, paid_first)
    _completed(client, webhook_endpoint, paid_second)

    invoice.refresh_from_db()
    assert (invoice.payment_status, invoice.total_paid_amount_cents, invoice.total_due_amount_cents) == \
        ("succeeded", 11300, 0)
    assert sorted(Payment.objects.filter(invoice=invoice).values_list("amount_cents", flat=True)) == [11300, 11300]
    [credit] = CustomerCredit.objects.all()
    second_payment = Payment.objects.get(attempt=second)
    assert (credit.payment_id, credit.invoice_id, credit.customer_id) == (second_payment.pk, invoice.pk,
                                                                          invoice.customer_id)
    assert (credit.reason, credit.amount_cents, credit.balance_amount_cents, credit.status) == \
        ("invoice_paid", 11300, 11300, "available")
    assert credit.acknowledged_at is None  # an alert for staff until someone looks at it
    assert set(PaymentAttempt.objects.filter(invoice=invoice).values_list("status", flat=True)) == {"succeeded"}

    # Stripe redelivers, and sends the PaymentIntent's own event too: nothing more is recorded.
    _completed(client, webhook_endpoint, paid_first, event_id=event["id"])
    _completed(client, webhook_endpoint, paid_second)
    pi = ls_client(stripe_env).v1.payment_intents.retrieve(paid_second["payment_intent"]).to_dict()
    assert post_signed(client, webhook_endpoint, stripe_event("payment_intent.succeeded", pi)).status_code == 200
    assert Payment.objects.count() == 2 and CustomerCredit.objects.count() == 1
    assert ProcessedStripeEvent.objects.filter(stripe_event_id=event["id"]).count() == 1
    invoice.refresh_from_db()
    assert invoice.total_paid_amount_cents == 11300
    assert balance(invoice.customer_id) == (-11300, -11300)  # I1: the customer is owed the second payment


def test_voiding_expires_the_open_link_and_a_late_payment_becomes_credit(client, webhook_endpoint, stripe_env,
                                                                        django_capture_on_commit_callbacks):
    invoice = make_invoice(make_customer(), total_amount_cents=5000)
    attempt = _link(invoice)
    paid = _pay(stripe_env, attempt)  # the customer pays while staff void the invoice

    with django_capture_on_commit_callbacks(execute=True):
        invoice_void(invoice_id=invoice.pk)

    attempt.refresh_from_db()
    assert attempt.checkout_closed_at is not None  # the hub asked Stripe to expire it, and learnt it was paid
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total_paid_amount_cents) == ("voided", 0)
    [credit] = CustomerCredit.objects.filter(customer=invoice.customer)
    assert (credit.reason, credit.amount_cents, credit.status) == ("invoice_voided", 5000, "available")
    _completed(client, webhook_endpoint, paid)  # the webhook arrives afterwards: already recorded
    assert Payment.objects.count() == 1 and CustomerCredit.objects.count() == 1
    assert balance(invoice.customer_id) == (-5000, -5000)


def test_voiding_expires_an_unpaid_open_link(stripe_env, django_capture_on_commit_callbacks):
    invoice = make_invoice(make_customer(), total_amount_cents=5000)
    attempt = _link(invoice)
    with django_capture_on_commit_callbacks(execute=True):
        invoice_void(invoice_id=invoice.pk)
    attempt.refresh_from_db()
    assert (attempt.status, attempt.checkout_closed_at is not None) == ("canceled", True)
    assert ls_client(stripe_env).v1.checkout.sessions.retrieve(_session_id(attempt)).status == "expired"


def test_credit_from_a_payment_is_consumed_by_the_next_invoice_like_credit_note_credit(
    client, webhook_endpoint, stripe_env, service_factory
):
    service = service_factory("cloud").service
    customer = make_customer()
    invoice = make_invoice(customer, total_amount_cents=3000)
    attempt = _link(invoice)
    Invoice.objects.filter(pk=invoice.pk).update(payment_status="succeeded", total_paid_amount_cents=3000)
    _completed(client, webhook_endpoint, _pay(stripe_env, attempt))  # paid elsewhere meanwhile: all credit
    credit = CustomerCredit.objects.get()
    assert (credit.reason, credit.balance_amount_cents) == ("invoice_paid", 3000)

    nxt = invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                 fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=2000)])

    assert (nxt.sub_total_including_taxes_amount_cents, nxt.prepaid_credit_amount_cents) == (2260, 2260)
    assert (nxt.credit_notes_amount_cents, nxt.total_amount_cents, nxt.payment_status) == (0, 0, "succeeded")
    credit.refresh_from_db()
    assert (credit.balance_amount_cents, credit.status) == (740, "available")
    [row] = CreditApplication.objects.filter(invoice=nxt)
    assert (row.customer_credit_id, row.credit_note_id, row.amount_cents) == (credit.pk, None, 2260)


def test_refund_setting_pays_the_excess_back_through_stripe(client, webhook_endpoint, stripe_env, settings,
                                                             django_capture_on_commit_callbacks):
    settings.PAYMENTS_OVERPAYMENT_HANDLING = "refund"
    invoice = make_invoice(make_customer(), total_amount_cents=4000)
    attempt = _link(invoice)
    Invoice.objects.filter(pk=invoice.pk).update(status="voided")
    with django_capture_on_commit_callbacks(execute=True):
        _completed(client, webhook_endpoint, _pay(stripe_env, attempt))

    credit = CustomerCredit.objects.get()
    assert (credit.status, credit.balance_amount_cents) == ("refunded", 0)
    refund = Refund.objects.get(customer_credit=credit)
    assert (refund.status, refund.amount_cents, refund.credit_note_id) == ("succeeded", 4000, None)
    remote = ls_client(stripe_env).v1.refunds.retrieve(refund.stripe_refund_id)
    assert (remote.amount, remote.payment_intent) == (4000, Payment.objects.get().stripe_payment_intent_id)
    assert services.customer_credit_refund(credit_id=credit.pk).pk == refund.pk  # again: nothing new
    assert balance(invoice.customer_id) == (0, 0)


def test_the_sweep_expires_what_a_failed_expiry_left_open_and_records_a_payment_it_finds(stripe_env, monkeypatch):
    invoice = make_invoice(make_customer(), total_amount_cents=11300)
    old = _link(invoice)
    monkeypatch.setattr(gateway, "checkout_session_expire",
                        lambda **kwargs: (_ for _ in ()).throw(gateway.StripeUnavailable("timeout")))
    new = services.payment_retry(invoice=invoice)
    monkeypatch.undo()
    _pay(stripe_env, new)  # the new link is paid; its webhook is lost

    services.payment_pending_sweep()

    old.refresh_from_db()
    assert old.checkout_closed_at is not None
    assert ls_client(stripe_env).v1.checkout.sessions.retrieve(_session_id(old)).status == "expired"
    invoice.refresh_from_db()
    assert (invoice.payment_status, invoice.total_paid_amount_cents) == ("succeeded", 11300)
    assert not CustomerCredit.objects.exists()

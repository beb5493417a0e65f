"""Collection against localstripe on 127.0.0.1: saving a card, off-session charges, dunning, refunds."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from apps.invoicing.models import CreditNote, Invoice
from apps.payments import services
from apps.payments.models import Payment, PaymentAttempt, Refund, StripeCustomer
from tests.integration.payments.stripe_fixtures import (
    ls_client,
    ls_post,
    make_customer,
    make_invoice,
    post_signed,
    save_card,
    stripe_event,
)

pytestmark = pytest.mark.django_db


def test_customer_saves_card_through_checkout_then_invoice_is_charged_off_session(client, webhook_endpoint, stripe_env):
    customer = make_customer()
    url = services.checkout_url_generate(customer=customer)
    account = StripeCustomer.objects.get(customer=customer)
    session_id = url.rsplit("/", 1)[1]
    assert session_id.startswith("cs_test_")

    # The customer completes the setup page (the launcher's helper), Stripe sends checkout.session.completed.
    session = ls_post(stripe_env, f"/_config/checkout_sessions/{session_id}/complete", {"payment_method": "pm_card_visa"})
    assert session["status"] == "complete"
    assert post_signed(client, webhook_endpoint, stripe_event("checkout.session.completed", session)).status_code == 200
    account.refresh_from_db()
    assert account.default_payment_method_id.startswith("pm_")
    remote = ls_client(stripe_env).v1.customers.retrieve(account.stripe_customer_id)
    assert remote.invoice_settings.default_payment_method == account.default_payment_method_id

    invoice = make_invoice(customer, total_amount_cents=11300)
    attempt = services.payment_collect_for_invoice(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (attempt.kind, attempt.status) == ("off_session", "succeeded")
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert invoice.total_paid_amount_cents == 11300
    pi = ls_client(stripe_env).v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert (pi.amount, pi.currency, pi.status) == (11300, "cad", "succeeded")
    assert pi.metadata["attempt_id"] == str(attempt.pk)
    assert Payment.objects.get(invoice=invoice).stripe_payment_intent_id == pi.id

    # Collecting again does nothing: the invoice is paid.
    assert services.payment_collect_for_invoice(invoice_id=invoice.pk) is None
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_declining_card_is_retried_per_schedule_then_marks_invoice_failed(stripe_env, settings):
    settings.PAYMENT_RETRY_DAYS = [1, 3]
    customer = make_customer()
    save_card(stripe_env, customer, "pm_card_chargeCustomerFail")
    invoice = make_invoice(customer, total_amount_cents=4999)
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        first = services.payment_collect_for_invoice(invoice_id=invoice.pk)
    assert (first.status, first.failure_code) == ("failed", "card_declined")
    assert first.next_retry_at == start + dt.timedelta(days=1)
    # Not due yet: nothing is retried.
    with time_machine.travel(start + dt.timedelta(hours=23), tick=False):
        assert services.payment_retry_due() == []
    with time_machine.travel(start + dt.timedelta(days=1), tick=False):
        assert services.payment_retry_due() == [invoice.pk]
        assert services.payment_retry_due() == []  # claimed once
    second = PaymentAttempt.objects.get(invoice=invoice, attempt_number=2)
    assert second.status == "failed"
    assert second.next_retry_at == start + dt.timedelta(days=1 + 3)
    assert second.stripe_payment_intent_id != first.stripe_payment_intent_id
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.PENDING

    with time_machine.travel(start + dt.timedelta(days=4), tick=False):
        assert services.payment_retry_due() == [invoice.pk]
    third = PaymentAttempt.objects.get(invoice=invoice, attempt_number=3)
    invoice.refresh_from_db()
    assert (third.status, third.next_retry_at) == ("failed", None)
    assert invoice.payment_status == Invoice.PaymentStatus.FAILED

    # The customer fixes the card; a manual retry collects at once.
    save_card(stripe_env, customer, "pm_card_visa")
    fourth = services.payment_retry(invoice=invoice)
    invoice.refresh_from_db()
    assert (fourth.attempt_number, fourth.status) == (4, "succeeded")
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED


def test_customer_without_card_gets_checkout_payment_link(client, webhook_endpoint, stripe_env):
    customer = make_customer()
    invoice = make_invoice(customer, total_amount_cents=2599)
    attempt = services.payment_collect_for_invoice(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (attempt.kind, attempt.status) == ("checkout", "requires_action")
    assert invoice.payment_url == attempt.checkout_url != ""
    # Idempotent while the link is open.
    assert services.payment_collect_for_invoice(invoice_id=invoice.pk).pk == attempt.pk
    assert services.invoice_payment_url(invoice=invoice) == invoice.payment_url

    session = ls_post(stripe_env, f"/_config/checkout_sessions/{attempt.stripe_checkout_session_id}/complete")
    assert session["amount_total"] == 2599
    assert post_signed(client, webhook_endpoint, stripe_event("checkout.session.completed", session)).status_code == 200
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded"
    assert attempt.stripe_payment_intent_id == session["payment_intent"]
    assert (invoice.payment_status, invoice.total_paid_amount_cents) == ("succeeded", 2599)


def test_sweep_recovers_a_missed_webhook(stripe_env):
    customer = make_customer()
    account = save_card(stripe_env, customer, "pm_card_visa")
    invoice = make_invoice(customer, total_amount_cents=700)
    attempt = PaymentAttempt.objects.create(
        invoice=invoice, attempt_number=1, kind="off_session", status="processing", amount_cents=700, currency="CAD",
        stripe_customer_id=account.stripe_customer_id, stripe_payment_method_id=account.default_payment_method_id,
    )
    pi = ls_client(stripe_env).v1.payment_intents.create(params={
        "amount": 700, "currency": "cad", "customer": account.stripe_customer_id,
        "payment_method": account.default_payment_method_id, "off_session": True, "confirm": True,
    })
    PaymentAttempt.objects.filter(pk=attempt.pk).update(stripe_payment_intent_id=pi.id)

    assert services.payment_pending_sweep() >= 1
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert Payment.objects.get(invoice=invoice).amount_cents == 700


def _paid_invoice(url, total=10000):
    customer = make_customer()
    save_card(url, customer, "pm_card_visa")
    invoice = make_invoice(customer, total_amount_cents=total)
    services.payment_collect_for_invoice(invoice_id=invoice.pk)
    return invoice


def _credit_note(invoice, refund_cents, n=1):
    return CreditNote.objects.create(
        invoice=invoice, customer=invoice.customer, number=f"{invoice.number}-CN{n}", sequential_id=n,
        issuing_date=dt.date(2026, 3, 5), reason="other", currency="CAD", total_amount_cents=refund_cents,
        refund_amount_cents=refund_cents,
    )


def test_credit_note_is_refunded_through_stripe_and_over_refund_is_refused(stripe_env):
    invoice = _paid_invoice(stripe_env, total=10000)
    note = _credit_note(invoice, 3000)
    refund = services.credit_note_refund(credit_note_id=note.pk)
    note.refresh_from_db()
    assert (refund.status, refund.amount_cents, note.refund_status) == ("succeeded", 3000, "succeeded")
    pi = ls_client(stripe_env).v1.payment_intents.retrieve(Payment.objects.get(invoice=invoice).stripe_payment_intent_id)
    remote = ls_client(stripe_env).v1.refunds.retrieve(refund.stripe_refund_id)
    assert (remote.amount, remote.payment_intent) == (3000, pi.id)
    # Again: no second Stripe refund.
    assert services.credit_note_refund(credit_note_id=note.pk).pk == refund.pk
    assert Refund.objects.filter(payment__invoice=invoice).count() == 1

    # 3000 + 7001 > 10000: refused by the hub (localstripe would accept it).
    too_much = _credit_note(invoice, 7001, n=2)
    with pytest.raises(services.RefundNotAllowed):
        services.credit_note_refund(credit_note_id=too_much.pk)
    assert not Refund.objects.filter(credit_note=too_much).exists()
    too_much.refresh_from_db()
    assert too_much.refund_status == ""


def test_refund_without_payment_is_refused(db):
    invoice = make_invoice(make_customer())
    with pytest.raises(services.RefundNotAllowed):
        services.credit_note_refund(credit_note_id=_credit_note(invoice, 100).pk)


def test_finalized_hook_enqueues_collection_on_commit(stripe_env, django_capture_on_commit_callbacks):
    customer = make_customer()
    save_card(stripe_env, customer, "pm_card_visa")
    invoice = make_invoice(customer, total_amount_cents=1234)
    zero = make_invoice(customer, total_amount_cents=0)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.payment_invoice_finalized(invoice=invoice)
        services.payment_invoice_finalized(invoice=zero)
    assert len(callbacks) == 1
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert not PaymentAttempt.objects.filter(invoice=zero).exists()


def test_placeholder_key_collects_nothing(db, settings, django_capture_on_commit_callbacks):
    """With settings' placeholder key (dev, other apps' tests) finalization never calls Stripe."""
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "0" * 24
    invoice = make_invoice(make_customer(), total_amount_cents=1234)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.payment_invoice_finalized(invoice=invoice)
    assert callbacks == []
    assert services.payment_retry_due() == [] and services.payment_pending_sweep() == 0

"""Signed Stripe webhooks through dj-stripe's real view move invoices' payment_status.

PaymentIntents are real objects in localstripe (dj-stripe re-fetches every event's object);
the events are built and signed here so that order and duplicates are under the test's control.
"""
from __future__ import annotations

import json

import pytest
import stripe

from apps.invoicing.models import Invoice
from apps.payments.models import Payment, PaymentAttempt, ProcessedStripeEvent
from tests.integration.payments.stripe_fixtures import (
    ls_client,
    make_customer,
    make_invoice,
    post_signed,
    save_card,
    stripe_event,
)

pytestmark = pytest.mark.django_db


def _pending_attempt(url, invoice, magic_pm, number=1):
    """A PaymentIntent charged in localstripe whose outcome the hub has not heard about yet."""
    account = save_card(url, invoice.customer, magic_pm)
    attempt = PaymentAttempt.objects.create(
        invoice=invoice,
        attempt_number=number,
        kind=PaymentAttempt.Kind.OFF_SESSION,
        status=PaymentAttempt.Status.PROCESSING,
        amount_cents=invoice.total_amount_cents,
        currency="CAD",
        stripe_customer_id=account.stripe_customer_id,
        stripe_payment_method_id=account.default_payment_method_id,
    )
    client = ls_client(url)
    params = {
        "amount": invoice.total_amount_cents,
        "currency": "cad",
        "customer": account.stripe_customer_id,
        "payment_method": account.default_payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": {"attempt_id": str(attempt.pk)},
    }
    try:
        pi = client.v1.payment_intents.create(params=params)
    except stripe.CardError as exc:
        pi = client.v1.payment_intents.retrieve(client.v1.charges.retrieve(exc.error.charge).payment_intent)
    attempt.stripe_payment_intent_id = pi.id
    attempt.save()
    return attempt, pi.to_dict()


def test_succeeded_webhook_marks_invoice_paid_once(client, webhook_endpoint, stripe_env):
    invoice = make_invoice(make_customer(), total_amount_cents=11300)
    attempt, pi = _pending_attempt(stripe_env, invoice, "pm_card_visa")
    assert pi["status"] == "succeeded"
    event = stripe_event("payment_intent.succeeded", pi)

    assert post_signed(client, webhook_endpoint, event).status_code == 200
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert invoice.total_paid_amount_cents == 11300
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.amount_cents, payment.stripe_payment_intent_id) == (11300, pi["id"])

    # The same event again (Stripe redelivers): nothing more is written.
    assert post_signed(client, webhook_endpoint, event).status_code == 200
    invoice.refresh_from_db()
    assert invoice.total_paid_amount_cents == 11300
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert ProcessedStripeEvent.objects.filter(stripe_event_id=event["id"]).count() == 1


def test_bad_signature_changes_nothing(client, webhook_endpoint, stripe_env):
    invoice = make_invoice(make_customer())
    _, pi = _pending_attempt(stripe_env, invoice, "pm_card_visa")
    response = post_signed(client, webhook_endpoint, stripe_event("payment_intent.succeeded", pi), secret="whsec_wrong")
    assert response.status_code == 400
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.PENDING
    assert not Payment.objects.filter(invoice=invoice).exists()


def test_final_failed_webhook_marks_invoice_failed_and_tells_the_app(
    client, webhook_endpoint, stripe_env, settings, service_factory
):
    from apps.customers.models import AccountLink
    from apps.webhooks.models import WebhookEvent

    settings.PAYMENT_RETRY_DAYS = []  # the first failure is the last
    service = service_factory("nexacloud").service
    customer = make_customer()
    AccountLink.objects.create(service=service, customer=customer, external_id="acme-cloud")
    invoice = make_invoice(customer)
    attempt, pi = _pending_attempt(stripe_env, invoice, "pm_card_chargeCustomerFail")
    assert pi["status"] == "requires_payment_method"

    assert post_signed(client, webhook_endpoint, stripe_event("payment_intent.payment_failed", pi)).status_code == 200
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.FAILED
    assert (attempt.status, attempt.failure_code, attempt.next_retry_at) == ("failed", "card_declined", None)
    failure = WebhookEvent.objects.get(service=service, event_type="invoice.payment_failure")
    body = json.loads(bytes(failure.body))
    error = body["payment_provider_invoice_payment_error"]
    assert (error["lago_invoice_id"], error["external_customer_id"]) == (str(invoice.lago_id), "acme-cloud")
    assert error["provider_error"]["error_code"] == "card_declined"
    assert WebhookEvent.objects.filter(service=service, event_type="invoice.payment_status_updated").count() == 1


def test_non_final_failure_keeps_invoice_pending_and_schedules_retry(client, webhook_endpoint, stripe_env, settings):
    settings.PAYMENT_RETRY_DAYS = [1, 3, 7]
    invoice = make_invoice(make_customer())
    attempt, pi = _pending_attempt(stripe_env, invoice, "pm_card_chargeCustomerFail")

    assert post_signed(client, webhook_endpoint, stripe_event("payment_intent.payment_failed", pi)).status_code == 200
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.PENDING
    assert attempt.status == "failed"
    assert attempt.next_retry_at is not None
    delay = attempt.next_retry_at - attempt.completed_at
    assert delay.days == 1


def test_stale_failure_after_success_changes_nothing(client, webhook_endpoint, stripe_env, settings):
    """Attempt 1 failed (final per settings) but its event arrives after attempt 2 succeeded."""
    settings.PAYMENT_RETRY_DAYS = [1]
    invoice = make_invoice(make_customer(), total_amount_cents=5000)
    first, failed_pi = _pending_attempt(stripe_env, invoice, "pm_card_chargeCustomerFail", number=1)
    PaymentAttempt.objects.filter(pk=first.pk).update(status="failed", failure_code="card_declined")
    second, ok_pi = _pending_attempt(stripe_env, invoice, "pm_card_visa", number=2)
    failed_event = stripe_event("payment_intent.payment_failed", failed_pi, created=1_700_000_000)
    ok_event = stripe_event("payment_intent.succeeded", ok_pi, created=1_700_000_100)

    assert post_signed(client, webhook_endpoint, ok_event).status_code == 200
    assert post_signed(client, webhook_endpoint, failed_event).status_code == 200
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert invoice.total_paid_amount_cents == 5000
    second.refresh_from_db()
    assert second.status == "succeeded"


def test_older_requires_action_after_success_changes_nothing(client, webhook_endpoint, stripe_env):
    """Same PaymentIntent: `requires_action` (older) delivered after `succeeded`."""
    invoice = make_invoice(make_customer(), total_amount_cents=2500)
    attempt, pi = _pending_attempt(stripe_env, invoice, "pm_card_visa")
    succeeded = stripe_event("payment_intent.succeeded", pi, created=1_700_000_200)
    stale = stripe_event("payment_intent.requires_action", {**pi, "status": "requires_action"}, created=1_700_000_100)

    assert post_signed(client, webhook_endpoint, succeeded).status_code == 200
    assert post_signed(client, webhook_endpoint, stale).status_code == 200
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == "succeeded"
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert Payment.objects.filter(invoice=invoice).count() == 1


def test_stale_event_for_one_intent_is_ignored_before_success(client, webhook_endpoint, stripe_env, settings):
    """A `requires_action` older than the applied failure does not reopen the attempt."""
    settings.PAYMENT_RETRY_DAYS = [1, 3]
    invoice = make_invoice(make_customer())
    attempt, pi = _pending_attempt(stripe_env, invoice, "pm_card_chargeCustomerFail")
    failed = stripe_event("payment_intent.payment_failed", pi, created=1_700_000_300)
    older = stripe_event("payment_intent.requires_action", {**pi, "status": "requires_action"}, created=1_700_000_200)
    assert post_signed(client, webhook_endpoint, failed).status_code == 200
    assert post_signed(client, webhook_endpoint, older).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status == "failed"
    assert attempt.last_event_created == 1_700_000_300

"""Paid wallet top-ups through Stripe (issue 20): the credit invoice is collected by the usual payment flow and the
wallet is credited only once it is paid, exactly once whatever Stripe's events do (duplicates, reordering, the
collection and the webhook both reporting the same PaymentIntent); an unpaid top-up credits nothing."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.customers.services import customer_upsert
from apps.customers.models import Service
from apps.integrity.invariants import check_all
from apps.invoicing.models import Invoice, Wallet, WalletTransaction
from apps.invoicing.services import invoice_void
from apps.invoicing.wallets import wallet_create, wallet_transaction_create
from apps.payments import services as payments
from apps.payments.models import Payment
from apps.webhooks.models import WebhookEvent
from tests.integration.payments.stripe_fixtures import ls_client, post_signed, save_card, stripe_event

from .test_stripe_webhooks import _pending_attempt

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    service = Service.objects.create(code="nexacloud", name="NexaCloud")
    return customer_upsert(service=service, external_id="acme",
                           attributes={"state": "ON", "country": "CA", "email": "billing@acme.test"})


def _wallet(link, **values) -> Wallet:
    wallet, _ = wallet_create(service=link.service, link=link,
                              values={"currency": "CAD", "rate_amount": Decimal("0.5"), **values})
    return wallet


def test_a_paid_top_up_credits_the_wallet_once(client, webhook_endpoint, stripe_env, acme,
                                               django_capture_on_commit_callbacks):
    save_card(stripe_env, acme.customer)
    wallet = _wallet(acme)
    with django_capture_on_commit_callbacks(execute=True):
        [row] = wallet_transaction_create(wallet=wallet, values={"paid_credits": Decimal("40")})  # 20.00 CAD
    invoice = Invoice.objects.get(pk=row.invoice_id)
    assert (invoice.invoice_type, invoice.total_amount_cents, invoice.taxes_amount_cents) == ("credit", 2000, 0)
    assert invoice.payment_status == "succeeded"  # the collection run on commit charged the card
    payment = Payment.objects.get(invoice=invoice)
    intent = ls_client(stripe_env).v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert intent.amount == 2000
    row.refresh_from_db()
    wallet.refresh_from_db()
    assert (row.status, wallet.balance_amount_cents) == ("settled", 2000)

    # Stripe's webhook for the same PaymentIntent, twice, and an older stale event after it: nothing more.
    event = stripe_event("payment_intent.succeeded", intent.to_dict(), created=1_700_000_200)
    stale = stripe_event("payment_intent.requires_action", {**intent.to_dict(), "status": "requires_action"},
                         created=1_700_000_100)
    for posted in (event, event, stale):
        assert post_signed(client, webhook_endpoint, posted).status_code == 200
    wallet.refresh_from_db()
    assert wallet.balance_amount_cents == 2000
    assert WalletTransaction.objects.filter(status="settled").count() == 1
    assert Payment.objects.filter(invoice=invoice).count() == 1
    updated = WebhookEvent.objects.filter(event_type="wallet_transaction.updated")
    assert [e.payload["wallet_transaction"]["status"] for e in updated] == ["settled"]
    assert check_all() == []
    # The audit (pghistory triggers) has the wallet's balance before and after the settlement, and the row's.
    from apps.audit.models import WalletEvent, WalletTransactionEvent

    assert list(WalletEvent.objects.filter(pgh_obj_id=wallet.pk, pgh_label="changed")
                .values_list("balance_amount_cents", flat=True)) == [2000]
    assert set(WalletTransactionEvent.objects.filter(pgh_obj_id=row.pk).values_list("pgh_label", "status")) == {
        ("created", "pending"), ("before", "pending"), ("changed", "settled")}


def test_reordered_events_settle_the_top_up_once(client, webhook_endpoint, stripe_env, acme):
    """A first attempt's failure arrives after a second attempt's success, and the success twice."""
    wallet = _wallet(acme, paid_credits=Decimal("100"))  # 50.00 CAD; no collection ran (no commit in this test)
    row = WalletTransaction.objects.get(transaction_status="purchased")
    invoice = Invoice.objects.get(pk=row.invoice_id)
    first, failed_pi = _pending_attempt(stripe_env, invoice, "pm_card_chargeCustomerFail", number=1)
    second, ok_pi = _pending_attempt(stripe_env, invoice, "pm_card_visa", number=2)
    ok = stripe_event("payment_intent.succeeded", ok_pi, created=1_700_000_100)
    failed = stripe_event("payment_intent.payment_failed", failed_pi, created=1_700_000_000)
    for posted in (ok, failed, ok):
        assert post_signed(client, webhook_endpoint, posted).status_code == 200
    wallet.refresh_from_db()
    row.refresh_from_db()
    assert (wallet.balance_amount_cents, row.status) == (5000, "settled")
    assert payments.payment_collect_for_invoice(invoice_id=invoice.pk) is None  # paid: nothing to collect


def test_an_unpaid_top_up_credits_nothing_and_a_void_fails_it(client, webhook_endpoint, stripe_env, acme, settings,
                                                             django_capture_on_commit_callbacks):
    settings.PAYMENT_RETRY_DAYS = [1]
    save_card(stripe_env, acme.customer, "pm_card_chargeCustomerFail")
    wallet = _wallet(acme, granted_credits=Decimal("2"))
    with django_capture_on_commit_callbacks(execute=True):
        [row] = wallet_transaction_create(wallet=wallet, values={"paid_credits": Decimal("40")})
    invoice = Invoice.objects.get(pk=row.invoice_id)
    assert invoice.payment_status != "succeeded"
    wallet.refresh_from_db()
    row.refresh_from_db()
    assert (wallet.balance_amount_cents, row.status) == (100, "pending")  # the granted 1.00 only

    invoice_void(invoice_id=invoice.pk)
    invoice_void(invoice_id=invoice.pk)
    row.refresh_from_db()
    wallet.refresh_from_db()
    assert (row.status, row.failed_at is not None, wallet.balance_amount_cents) == ("failed", True, 100)
    assert [e.payload["wallet_transaction"]["status"]
            for e in WebhookEvent.objects.filter(event_type="wallet_transaction.updated")] == ["failed"]

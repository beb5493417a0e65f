"""Wallets at the close (issue 20): prepaid credit comes off last, in Lago's order (fees -> coupons -> taxes ->
credit notes -> prepaid credits), once per invoice whether the close runs twice or two finalizations race; a void
gives it back; Stripe is asked only for what is left."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.db import connection

from apps.customers.models import AccountLink
from apps.integrity.invariants import check_all
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice, Wallet, WalletTransaction
from apps.invoicing.representations import wallet_out
from apps.invoicing.services import invoice_finalize, invoice_void
from apps.invoicing.wallets import wallet_create, wallet_terminate, wallets_expire
from apps.payments import services as payments
from apps.payments.models import PaymentAttempt
from apps.webhooks.models import WebhookEvent
from tests.integration.payments.stripe_fixtures import localstripe, ls_client, save_card, stripe_env  # noqa: F401

from .conftest import at
from .test_coupons_close import apply, coupon
from .test_credit_applied import credit, one_off

pytestmark = pytest.mark.django_db


def wallet(billing, link, granted: str, *, rate: str = "1", **values) -> Wallet:
    created, _ = wallet_create(service=billing.service, link=link,
                               values={"currency": "CAD", "rate_amount": Decimal(rate),
                                       "granted_credits": Decimal(granted), **values})
    return created


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_lago_s_order_coupon_then_tax_then_credit_note_then_wallet(billing, settings, stripe_env, batched):  # noqa: F811
    """Lago's documented order on one invoice: a 100.00 CAD plan in Ontario (HST 13 %), a 10.00 coupon, a credit
    note worth 20.00 of credit and a wallet of 50 credits at 1.00 each:
    fees 100.00 -> coupon 10.00 (before tax) -> 90.00 taxed 11.70 -> 101.70 -> credit note 20.00 -> 81.70
    -> wallet 50.00 -> 31.70 due, which is all Stripe is asked for."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = 1 if batched else 1000
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    note = credit(one_off(billing, link.customer, 2000), 1770)  # 1770 + 13 % = 2000 of credit
    coupon(billing, "ten", amount_cents=1000)
    apply(billing, link, "ten")
    tokens = wallet(billing, link, "50")

    periods_close(as_of=at(2026, 4, 1, 2, 0))
    periods_close(as_of=at(2026, 4, 1, 3, 0))  # a re-run takes nothing more
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert (invoice.fees_amount_cents, invoice.coupons_amount_cents, invoice.sub_total_excluding_taxes_amount_cents,
            invoice.taxes_amount_cents, invoice.sub_total_including_taxes_amount_cents,
            invoice.credit_notes_amount_cents, invoice.prepaid_credit_amount_cents, invoice.total_amount_cents) == (
        10000, 1000, 9000, 1170, 10170, 2000, 5000, 3170)
    assert invoice.total_due_amount_cents == 3170 and invoice.payment_status == "pending"
    tokens.refresh_from_db()
    assert (tokens.balance_amount_cents, tokens.consumed_amount_cents) == (0, 5000)
    [out] = WalletTransaction.objects.filter(transaction_type="outbound")
    assert (out.invoice_id, out.amount_cents, out.credit_amount, out.status, out.transaction_status) == (
        invoice.pk, 5000, Decimal("50"), "settled", "invoiced")
    note.refresh_from_db()
    assert note.balance_amount_cents == 0

    save_card(stripe_env, link.customer)
    attempt = payments.payment_collect_for_invoice(invoice_id=invoice.pk, force_new=True)
    intent = ls_client(stripe_env).v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert (attempt.amount_cents, intent.amount, attempt.status) == (3170, 3170, PaymentAttempt.Status.SUCCEEDED)
    assert check_all() == []  # I1 (money flows), I4 (totals with the prepaid credit) and the others


def test_a_wallet_larger_than_the_invoice_pays_it_and_keeps_the_rest(billing, settings,
                                                                      django_capture_on_commit_callbacks):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "100", rate="2")  # 200.00
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert (invoice.prepaid_credit_amount_cents, invoice.total_amount_cents, invoice.payment_status) == (
        11300, 0, "succeeded")
    assert not [c for c in callbacks if "payment" in getattr(c, "__qualname__", "")]
    assert not PaymentAttempt.objects.filter(invoice=invoice).exists()
    tokens.refresh_from_db()
    body = wallet_out(tokens, usage_cents=0)
    assert (body["balance_cents"], body["credits_balance"], body["consumed_credits"]) == (8700, "43.5", "56.5")
    events = WebhookEvent.objects.filter(event_type="wallet_transaction.created").order_by("id")
    assert [(e.payload["wallet_transaction"]["transaction_type"], e.payload["wallet_transaction"]["amount"])
            for e in events] == [("inbound", "200"), ("outbound", "113")]  # the grant, then the consumption
    assert {e.service_id for e in events} == {billing.service.pk}
    assert one_off(billing, link.customer, 500).prepaid_credit_amount_cents == 0  # one-off purchases: money only
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 8700


def test_another_service_s_wallet_never_pays_its_lines(billing, service_factory, settings):
    from tests.integration.invoicing.conftest import Billing

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    desk = Billing(service_factory("nexadesk", "NexaDesk").service)
    desk.customer("acme-desk", email="")
    AccountLink.objects.filter(service=desk.service).update(customer=link.customer)
    billing.subscribe("s1", billing.plan(amount_cents=1000), when=at(2026, 3, 1, 0, 0))
    desk.subscribe("d1", desk.plan(code="desk", amount_cents=4000), customer="acme-desk", when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "500")
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert invoice.sub_total_including_taxes_amount_cents == 5650
    assert (invoice.prepaid_credit_amount_cents, invoice.total_amount_cents) == (1130, 4520)  # NexaCloud's 11.30
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 50000 - 1130


def test_voiding_gives_the_credits_back_once(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "30")
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert invoice.prepaid_credit_amount_cents == 3000
    invoice_void(invoice_id=invoice.pk)
    invoice_void(invoice_id=invoice.pk)
    tokens.refresh_from_db()
    assert (tokens.balance_amount_cents, tokens.consumed_amount_cents) == (3000, 0)
    assert sorted(WalletTransaction.objects.filter(invoice=invoice).values_list("reason", "amount_cents")) == [
        ("consumption", 3000), ("return", 3000)]

    periods_close(as_of=at(2026, 5, 1, 2, 0))  # the next invoice takes them
    assert Invoice.objects.get(issuing_date=datetime(2026, 5, 1).date()).prepaid_credit_amount_cents == 3000
    assert check_all() == []


def test_terminated_and_expired_wallets_are_not_consumed(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    ended = wallet(billing, link, "10")
    wallet_terminate(wallet=ended)
    expiring = wallet(billing, link, "10", expiration_at=datetime(2099, 1, 1, tzinfo=timezone.utc))
    Wallet.objects.filter(pk=expiring.pk).update(expiration_at=at(2026, 3, 31, 12, 0))  # passed by the close's as_of
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert Invoice.objects.get(invoice_type="subscription").prepaid_credit_amount_cents == 0
    assert wallets_expire(now=at(2026, 4, 1, 3, 0)) == 1
    assert wallets_expire(now=at(2026, 4, 1, 3, 0)) == 0
    expiring.refresh_from_db()
    assert (expiring.status, expiring.terminated_at, expiring.balance_amount_cents) == (
        "terminated", at(2026, 3, 31, 12, 0), 0)
    # What was left is voided by one forfeit row each (granted credit: nothing for the ledger to release).
    assert sorted(WalletTransaction.objects.filter(reason="forfeit").values_list(
        "wallet_id", "transaction_status", "amount_cents", "paid_amount_cents")) == [
        (ended.pk, "voided", 1000, 0), (expiring.pk, "voided", 1000, 0)]


@pytest.mark.django_db(transaction=True)
def test_two_invoices_finalizing_at_once_never_consume_the_same_credits_twice(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 1  # both invoices stay drafts until finalized below, at the same instant
    link = billing.customer()
    plan = billing.plan(amount_cents=5000)
    billing.subscribe("s1", plan, billing_time="anniversary", when=at(2026, 3, 3, 12, 0))
    billing.subscribe("s2", plan, billing_time="anniversary", when=at(2026, 3, 5, 12, 0))
    tokens = wallet(billing, link, "60")
    periods_close(as_of=datetime(2026, 4, 6, 12, 0, tzinfo=timezone.utc))
    drafts = list(Invoice.objects.filter(status="draft").values_list("pk", flat=True))
    assert len(drafts) == 2

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def finalize(invoice_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            invoice_finalize(invoice_id=invoice_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finalize, args=(pk,)) for pk in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    taken = sorted(Invoice.objects.filter(pk__in=drafts).values_list("prepaid_credit_amount_cents", flat=True))
    assert taken == [350, 5650]  # one took 56.50 (50.00 + HST), the other the 3.50 left
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 0
    assert sum(WalletTransaction.objects.filter(transaction_type="outbound").values_list("amount_cents", flat=True)) \
        == 6000


def test_the_beat_task_expires_and_the_admin_shows_wallets_with_their_transactions(billing, admin_client):
    from django.urls import reverse

    from apps.invoicing.tasks import wallets_expire_task

    link = billing.customer()
    tokens = wallet(billing, link, "12", name="Tokens", expiration_at=datetime(2099, 1, 1, tzinfo=timezone.utc))
    Wallet.objects.filter(pk=tokens.pk).update(expiration_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert wallets_expire_task() == 1
    page = admin_client.get(reverse("admin:invoicing_wallet_change", args=[tokens.pk]))
    assert page.status_code == 200
    text = page.content.decode().lower()
    assert "tokens" in text and "terminated" in text and "granted" in text
    assert admin_client.get(reverse("admin:invoicing_wallet_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:invoicing_wallet_add")).status_code == 403
    active = wallet(billing, link, "3", name="Desk pack")
    overview = admin_client.get(reverse("admin:customers_customer_overview", args=[link.customer_id])).content.decode()
    assert "Desk pack" in overview and "$3.00" in overview and "Tokens" not in overview  # active wallets only
    assert "after current usage $3.00" in overview  # no usage: the ongoing balance is the balance
    assert reverse("admin:invoicing_wallet_change", args=[active.pk]) in overview


@pytest.mark.django_db(transaction=True)
def test_a_top_up_during_a_close_of_its_customer_waits_instead_of_deadlocking(billing):
    """The close holds the customer and then locks its wallets; a top-up takes the customer before the wallet, the
    same order, so it waits for the close (with the wallet first, PostgreSQL would abort one of the two)."""
    import time

    from django.db import transaction

    from apps.customers.models import Customer
    from apps.invoicing.wallets import wallet_transaction_create

    link = billing.customer()
    tokens = wallet(billing, link, "1")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def close_like() -> None:
        try:
            with transaction.atomic():
                Customer.objects.select_for_update().get(pk=link.customer_id)
                barrier.wait(timeout=10)
                time.sleep(0.5)  # the top-up starts meanwhile
                list(Wallet.objects.select_for_update().filter(customer_id=link.customer_id))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def top_up() -> None:
        try:
            barrier.wait(timeout=10)
            time.sleep(0.1)
            wallet_transaction_create(wallet=tokens, values={"granted_credits": Decimal("2")})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=close_like), threading.Thread(target=top_up)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 300

"""Wallets in the ledger (issue 20), against the Odoo stand-in: a paid top-up is the customer's prepayment (a
liability, never revenue), the credit an invoice consumes settles that invoice's receivable out of the prepayment
(paid credit) or as a discount (granted credit), a void gives it back; coupons come off the posted lines before tax.
After every step each customer owes in Odoo what it owes in the hub (I1 with the Odoo comparison), and sending
every posting again changes nothing."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.integrity.invariants import check_all, odoo_receivables_compare
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice, Wallet, WalletTransaction
from apps.invoicing.services import invoice_void
from apps.invoicing.wallets import wallet_create
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch
from apps.payments import services as payments
from tests.integration.ledger.builders import mapping_make
from tests.integration.payments.stripe_fixtures import localstripe, save_card, stripe_env  # noqa: F401
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401

from .conftest import at
from .test_coupons_close import apply, coupon

pytestmark = pytest.mark.django_db

PREPAYMENT, DISCOUNT, INCOME, BREAKAGE = "298000", "519000", "400000", "499000"


def _send(client, rounds: int = 6) -> None:
    """Send the outbox as the sweeper does, documents waiting for others included (bounded rounds)."""
    for _ in range(rounds):
        ledger_post_pending_batch(client=client)
        LedgerPosting.objects.filter(status="pending").update(next_attempt_at=None)


def _send_everything_again(client) -> None:
    """Every posting due again, as after lost answers: each is looked up in Odoo before anything is done."""
    LedgerPosting.objects.update(status="pending", next_attempt_at=None, claimed_until=None)
    _send(client)


def _account_balance(standin, code: str) -> int:
    """Σ balance (debit − credit, cents) of the posted lines on one account."""
    lines = standin.search_read("account.move.line", [["account_id.code", "=", code], ["move_id.state", "=", "posted"]],
                                ["balance"])
    return round(sum(Decimal(str(line["balance"])) for line in lines) * 100)


def _odoo_state(standin) -> tuple:
    moves = standin.search_read("account.move", [], ["ref", "state", "amount_total", "amount_residual"])
    partials = standin.search_read("account.partial.reconcile", [], ["debit_move_id", "credit_move_id", "amount"])
    return (sorted((m["ref"] or "", m["state"], m["amount_total"], m["amount_residual"]) for m in moves),
            sorted((p["debit_move_id"][0], p["credit_move_id"][0], p["amount"]) for p in partials))


def _residual(standin, posting: LedgerPosting) -> int:
    [move] = standin.search_read("account.move", [["ref", "=", posting.ref]], ["amount_residual"])
    return round(Decimal(str(move["amount_residual"])) * 100)


def _agree(odoo_client) -> None:
    assert LedgerPosting.objects.exclude(status__in=("posted", "skipped")).count() == 0, list(
        LedgerPosting.objects.exclude(status="posted").values_list("ref", "status", "last_error"))
    assert odoo_receivables_compare(client=odoo_client) == []
    assert check_all(odoo_client=odoo_client) == []


@pytest.fixture
def topped_up(billing, settings, stripe_env, odoo_client):  # noqa: F811
    """A 100.00 CAD plan in Ontario with a 10.00 coupon; a wallet of 80.00 paid through Stripe and 10.00 granted."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    mapping_make(service=billing.service)
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    coupon(billing, "ten", amount_cents=1000)
    apply(billing, link, "ten")
    wallet, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "paid_credits": Decimal("80"),
        "granted_credits": Decimal("10")})
    top_up = Invoice.objects.get(invoice_type="credit")
    save_card(stripe_env, link.customer)
    assert payments.payment_collect_for_invoice(invoice_id=top_up.pk).status == "succeeded"
    wallet.refresh_from_db()
    assert (wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (9000, 8000)
    return wallet, top_up


def test_a_paid_top_up_posts_as_a_prepayment_not_revenue(topped_up, odoo_client, odoo_standin):  # noqa: F811
    wallet, top_up = topped_up
    _send(odoo_client)
    _agree(odoo_client)
    posting = LedgerPosting.objects.get(kind="invoice", invoice=top_up)
    lines = odoo_standin.search_read("account.move.line", [["move_id", "=", posting.odoo_move_id],
                                                           ["display_type", "=", "product"]],
                                     ["account_id", "product_id", "balance", "tax_ids"])
    [line] = lines
    [account] = odoo_standin.search_read("account.account", [["id", "=", line["account_id"][0]]], ["code"])
    assert (account["code"], line["balance"], line["tax_ids"]) == (PREPAYMENT, -80.0, [])
    assert _account_balance(odoo_standin, PREPAYMENT) == -8000  # Stripe's 80.00 owed to the customer as credit
    assert _account_balance(odoo_standin, INCOME) == 0  # no revenue yet
    assert _residual(odoo_standin, posting) == 0  # paid


def test_consumption_settles_the_invoice_and_a_void_gives_it_back_in_odoo(topped_up, odoo_client,  # noqa: F811
                                                                         odoo_standin):
    wallet, top_up = topped_up
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    # 100.00 − coupon 10.00 = 90.00, HST 11.70, 101.70; the wallet's 90.00 (granted 10.00 first, then 80.00 paid).
    assert (invoice.sub_total_excluding_taxes_amount_cents, invoice.taxes_amount_cents,
            invoice.prepaid_credit_amount_cents, invoice.total_due_amount_cents) == (9000, 1170, 9000, 1170)
    [used] = WalletTransaction.objects.filter(reason="consumption")
    assert (used.amount_cents, used.paid_amount_cents) == (9000, 8000)
    wallet.refresh_from_db()
    assert (wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (0, 0)

    _send(odoo_client)
    _agree(odoo_client)
    posted = LedgerPosting.objects.get(kind="invoice", invoice=invoice)
    consumed = LedgerPosting.objects.get(kind="wallet_transaction", wallet_transaction=used)
    # The coupon is off the posted lines before tax: Odoo's totals are the hub's to the cent.
    assert (posted.odoo_amount_untaxed_cents, posted.odoo_amount_tax_cents, posted.odoo_amount_total_cents) == (
        9000, 1170, 10170)
    assert (consumed.status, consumed.odoo_amount_total_cents, consumed.hub_amount_total_cents) == ("posted", 9000,
                                                                                                     9000)
    assert _residual(odoo_standin, posted) == invoice.total_due_amount_cents == 1170
    assert _residual(odoo_standin, consumed) == 0
    assert _account_balance(odoo_standin, PREPAYMENT) == 0  # the 80.00 prepaid is used up
    assert _account_balance(odoo_standin, DISCOUNT) == 1000  # the granted 10.00 is a discount, not money
    assert _account_balance(odoo_standin, INCOME) == -9000  # revenue: the invoice's lines, coupon off
    before = _odoo_state(odoo_standin)
    _send_everything_again(odoo_client)
    assert _odoo_state(odoo_standin) == before
    _agree(odoo_client)

    invoice_void(invoice_id=invoice.pk)
    invoice_void(invoice_id=invoice.pk)
    [back] = WalletTransaction.objects.filter(reason="return")
    assert (back.amount_cents, back.paid_amount_cents) == (9000, 8000)
    wallet.refresh_from_db()
    assert (wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (9000, 8000)
    _send(odoo_client)
    _agree(odoo_client)
    given_back = LedgerPosting.objects.get(kind="wallet_transaction", wallet_transaction=back)
    void = LedgerPosting.objects.get(kind="void", invoice=invoice)
    assert given_back.status == void.status == "posted"
    # Every document closed against its counterpart: invoice by the void, consumption by the give-back.
    assert [_residual(odoo_standin, p) for p in (posted, consumed, given_back, void)] == [0, 0, 0, 0]
    assert _account_balance(odoo_standin, PREPAYMENT) == -8000  # the customer's prepayment again
    assert _account_balance(odoo_standin, DISCOUNT) == 0
    assert _account_balance(odoo_standin, INCOME) == 0
    before = _odoo_state(odoo_standin)
    _send_everything_again(odoo_client)
    assert _odoo_state(odoo_standin) == before
    _agree(odoo_client)


def test_granted_credit_without_a_discount_account_fails_naming_it(topped_up, odoo_client,  # noqa: F811
                                                                   odoo_standin):
    from apps.ledger.models import OdooAccountMapping

    OdooAccountMapping.objects.filter(purpose="prepaid_discount").delete()  # the default is blank: a choice
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    _send(odoo_client)
    posting = LedgerPosting.objects.get(kind="wallet_transaction")
    assert (posting.status, posting.last_error) == (
        "failed", "mapping: account prepaid_discount: no Odoo account mapped")
    assert not odoo_standin.search_read("account.move", [["ref", "=", posting.ref]], ["id"])  # nothing sent
    OdooAccountMapping.objects.create(purpose="prepaid_discount", odoo_account="519000")
    LedgerPosting.objects.filter(pk=posting.pk).update(status="pending", next_attempt_at=None)
    _send(odoo_client)
    _agree(odoo_client)


def test_paid_and_granted_credit_are_told_apart_and_kept_apart(billing, settings):
    """Granted credit is consumed first; the return puts each part back where it came from."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    wallet, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "granted_credits": Decimal("30")})
    Wallet.objects.filter(pk=wallet.pk).update(balance_amount_cents=20000, paid_balance_amount_cents=17000)
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    [used] = WalletTransaction.objects.filter(reason="consumption")
    assert (used.amount_cents, used.paid_amount_cents) == (11300, 8300)  # 30.00 granted, then 83.00 paid
    wallet.refresh_from_db()
    assert (wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (8700, 8700)


def test_answers_lost_at_every_wallet_step_post_each_once(topped_up, odoo_client, odoo_standin):  # noqa: F811
    """Odoo commits, the answer is lost: the move create and post, the reconciliation, the unreconciliation of the
    give-back. Each retry looks up what Odoo has and finishes; one move per ref, one reconciliation per pair."""
    wallet, top_up = topped_up
    _send(odoo_client)
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    odoo_standin.fail_next(1, "drop_after_commit", model="account.move.line", method="reconcile")
    odoo_standin.fail_next(2, "drop_after_commit", model="account.move", method="create")
    odoo_standin.fail_next(2, "drop_after_commit", model="account.move", method="action_post")
    _send(odoo_client, rounds=10)
    assert [fault.left for fault in odoo_standin._faults] == [0, 0, 0]  # every fault was hit
    _agree(odoo_client)
    invoice_void(invoice_id=invoice.pk)
    odoo_standin.fail_next(1, "drop_after_commit", model="account.partial.reconcile", method="unlink")
    odoo_standin.fail_next(1, "drop_after_commit", model="account.move.line", method="reconcile")
    odoo_standin.fail_next(1, "drop_after_commit", model="account.move", method="create")
    _send(odoo_client, rounds=10)
    assert [fault.left for fault in odoo_standin._faults] == [0] * 6
    _agree(odoo_client)
    moves = odoo_standin.search_read("account.move", [["move_type", "!=", "entry"]], ["ref"])
    refs = [m["ref"] for m in moves]
    assert len(refs) == len(set(refs)) == LedgerPosting.objects.exclude(
        kind__in=("payment", "customer_credit", "credit_application", "refund")).count()
    for posting in LedgerPosting.objects.exclude(kind="payment"):
        assert _residual(odoo_standin, posting) == 0, posting.ref
    assert _account_balance(odoo_standin, PREPAYMENT) == -8000


def test_the_migration_backfills_paid_credit_as_the_consumption_order_left_it(billing, settings):
    import importlib

    from django.db import connection

    from apps.invoicing.wallets import wallet_top_up_settle, wallet_transaction_create

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=5000), when=at(2026, 3, 1, 0, 0))
    wallet, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "paid_credits": Decimal("80"),
        "granted_credits": Decimal("10")})
    wallet_top_up_settle(invoice=Invoice.objects.get(invoice_type="credit"))
    [pending] = wallet_transaction_create(wallet=wallet, values={"paid_credits": Decimal("30")})  # not paid
    periods_close(as_of=at(2026, 4, 1, 2, 0))  # 56.50: granted 10.00, then 46.50 paid
    wallet.refresh_from_db()
    assert (wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (3350, 3350)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE invoicing_wallettransaction SET paid_amount_cents = 0;"
                       "UPDATE invoicing_wallet SET paid_balance_amount_cents = 0")
        cursor.execute(importlib.import_module("apps.invoicing.migrations.0013_wallet_paid_credit").BACKFILL)
    wallet.refresh_from_db()
    pending.refresh_from_db()
    assert (wallet.paid_balance_amount_cents, pending.paid_amount_cents) == (3350, 3000)


def test_an_unpaid_top_up_voided_leaves_nothing_on_the_prepayment_account(billing, odoo_client,  # noqa: F811
                                                                          odoo_standin):
    mapping_make(service=billing.service)
    link = billing.customer()
    wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "paid_credits": Decimal("80")})
    top_up = Invoice.objects.get(invoice_type="credit")
    _send(odoo_client)
    _agree(odoo_client)
    assert _account_balance(odoo_standin, PREPAYMENT) == -8000  # billed, owed to the customer once paid
    invoice_void(invoice_id=top_up.pk)
    _send(odoo_client)
    _agree(odoo_client)
    assert LedgerPosting.objects.get(kind="void", invoice=top_up).status == "posted"
    assert _account_balance(odoo_standin, PREPAYMENT) == 0
    assert _account_balance(odoo_standin, INCOME) == 0


@pytest.mark.parametrize("end", ["expired", "terminated"])
def test_unused_paid_credit_goes_to_income_when_the_wallet_ends(topped_up, odoo_client, odoo_standin, end):  # noqa: F811
    """80.00 paid and 10.00 granted, then 30.00 used by an invoice; the wallet ends with 60.00 (50.00 paid, the
    granted 10.00 consumed first): the 50.00 still owed as prepayment is released to breakage income, so the
    prepayment account is at zero, and Odoo agrees with the hub to the cent; sending again changes nothing."""
    from datetime import datetime, timezone

    from apps.invoicing.wallets import wallet_terminate, wallets_expire

    wallet, _ = topped_up
    wallet.refresh_from_db()
    billing_plan = Invoice.objects.get(invoice_type="credit")  # the top-up, posted as prepayment
    assert billing_plan.total_amount_cents == 8000
    Wallet.objects.filter(pk=wallet.pk).update(balance_amount_cents=6000, paid_balance_amount_cents=5000,
                                               consumed_amount_cents=3000)  # as an invoice's consumption would
    _send(odoo_client)
    if end == "expired":
        Wallet.objects.filter(pk=wallet.pk).update(expiration_at=datetime(2026, 6, 1, tzinfo=timezone.utc))
        assert wallets_expire(now=datetime(2026, 6, 2, tzinfo=timezone.utc)) == 1
        assert wallets_expire(now=datetime(2026, 6, 2, tzinfo=timezone.utc)) == 0
    else:
        wallet_terminate(wallet=wallet)
        wallet_terminate(wallet=wallet)
    [forfeit] = WalletTransaction.objects.filter(reason="forfeit")
    assert (forfeit.transaction_type, forfeit.transaction_status, forfeit.amount_cents, forfeit.paid_amount_cents) == (
        "outbound", "voided", 6000, 5000)
    wallet.refresh_from_db()
    assert (wallet.status, wallet.balance_amount_cents, wallet.paid_balance_amount_cents) == (end if end == "terminated"
                                                                                              else "terminated", 0, 0)
    _send(odoo_client)
    posting = LedgerPosting.objects.get(kind="wallet_forfeit", wallet_transaction=forfeit)
    assert (posting.status, posting.odoo_amount_total_cents, posting.payment_amount_cents) == ("posted", 0, 5000)
    # The top-up put 80.00 on the prepayment account; the (simulated) consumption took nothing there in Odoo, so
    # the forfeit's 50.00 leaves 30.00: exactly what the invoice would have moved. Compare the forfeit's own lines.
    lines = odoo_standin.search_read("account.move.line", [["move_id", "=", posting.odoo_move_id],
                                                           ["display_type", "=", "product"]], ["account_id", "balance"])
    codes = {line["account_id"][0]: line["balance"] for line in lines}
    accounts = {a["id"]: a["code"] for a in odoo_standin.search_read("account.account", [], ["code"])}
    assert sorted((accounts[account], balance) for account, balance in codes.items()) == [
        (PREPAYMENT, 50.0), (BREAKAGE, -50.0)]
    assert _account_balance(odoo_standin, BREAKAGE) == -5000
    assert _account_balance(odoo_standin, PREPAYMENT) == -8000 + 5000
    before = _odoo_state(odoo_standin)
    _send_everything_again(odoo_client)
    assert _odoo_state(odoo_standin) == before


def test_a_consumed_then_terminated_wallet_leaves_no_prepayment_in_odoo(topped_up, odoo_client,  # noqa: F811
                                                                        odoo_standin, billing):
    """Through the real close: 90.00 (80.00 paid) of which an invoice of 101.70 takes everything but nothing is
    left; a second wallet of 25.00 paid and unused, terminated: its 25.00 goes to income and the prepayment
    account ends at zero, Odoo's receivables the hub's."""
    from apps.customers.models import AccountLink
    from apps.invoicing.wallets import wallet_terminate

    link = AccountLink.objects.get(service=billing.service)
    spare, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "paid_credits": Decimal("25"), "priority": 50})
    top_up = Invoice.objects.filter(invoice_type="credit").order_by("-id").first()
    assert payments.payment_collect_for_invoice(invoice_id=top_up.pk).status == "succeeded"
    Wallet.objects.filter(pk=spare.pk).update(priority=50)
    Wallet.objects.filter(pk=topped_up[0].pk).update(priority=1)
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    spare.refresh_from_db()
    assert spare.balance_amount_cents == 2500 - 1170  # the first wallet paid 90.00, this one the 11.70 left
    wallet_terminate(wallet=spare)
    _send(odoo_client)
    _agree(odoo_client)
    assert _account_balance(odoo_standin, PREPAYMENT) == 0
    assert _account_balance(odoo_standin, BREAKAGE) == -(2500 - 1170)

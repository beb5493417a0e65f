"""Money no invoice took reaches Odoo and stays in step with the hub (issue 15, defect 2; stand-in over HTTP).

Two Checkout links of one invoice are both paid (the expiry of the superseded one never reached Stripe): the first
payment is registered on the invoice, the second is posted as an unmatched customer payment (the partner's
outstanding credit). The next invoice consumes part of that credit: its receivable is reconciled with the payment.
Voiding that invoice gives the credit back: the reconciliation is undone. At each step the Odoo documents are open
for what the hub says.
"""
from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import time_machine

from apps.invoicing.models import CustomerCredit, Invoice
from apps.invoicing.services import AddOnFee, invoice_create_one_off, invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.odoo_client import OdooConfig, get_odoo_client
from apps.ledger.services import ledger_post_pending_batch
from apps.payments import services as payments
from apps.payments import stripe_gateway as gateway
from tests.integration.balance import balance
from tests.integration.ledger.builders import customer_make, mapping_make
from tests.integration.payments.stripe_fixtures import localstripe, ls_post, stripe_env  # noqa: F401
from tests.odoo_standin.fixtures import odoo_standin  # noqa: F401

pytestmark = pytest.mark.django_db


def _send_all(client, rounds: int = 4) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(rounds):
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=50, client=client)


def _residual(standin, move_id: int) -> float:
    [move] = standin.search_read("account.move", [["id", "=", move_id]], ["amount_residual"])
    return move["amount_residual"]


def _paid(url: str, attempt) -> None:
    """The customer pays the attempt's link and Stripe's checkout.session.completed is applied."""
    session = ls_post(url, f"/_config/checkout_sessions/{attempt.stripe_checkout_session_id}/complete",
                      {"payment_method": "pm_card_visa"})
    payments.checkout_session_event_apply(event_id=f"evt_{session['id']}", event_type="checkout.session.completed",
                                          event_created=int(time.time()), session=session)


def test_a_second_payment_is_an_outstanding_credit_in_odoo_consumed_and_given_back_like_the_hub(
        stripe_env, odoo_standin, service_factory, monkeypatch):  # noqa: F811
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="ON", external_id="acme-overpaid")
    client = get_odoo_client(OdooConfig(url=odoo_standin.url, database=odoo_standin.database,
                                        username=odoo_standin.login, api_key=odoo_standin.api_key,
                                        transport="json2", timeout_seconds=2.0))

    def one_off(cents: int) -> Invoice:
        return invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                      fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])

    first = one_off(10000)  # 11300
    payments.invoice_payment_url(invoice=first)
    old = first.payment_attempts.get()
    monkeypatch.setattr(gateway, "checkout_session_expire",
                        lambda **kwargs: (_ for _ in ()).throw(gateway.StripeUnavailable("timeout")))
    new = payments.payment_retry(invoice=first)
    monkeypatch.undo()
    _paid(stripe_env, old)
    _paid(stripe_env, new)
    credit = CustomerCredit.objects.get()
    assert (credit.amount_cents, credit.reason) == (11300, "invoice_paid")
    _send_all(client)

    postings = {p.kind: p for p in LedgerPosting.objects.all()}
    assert {kind: p.status for kind, p in postings.items()} == {
        "invoice": "posted", "payment": "posted", "customer_credit": "posted"}
    assert (postings["payment"].payment_amount_cents, postings["customer_credit"].payment_amount_cents) == \
        (11300, 11300)
    [unmatched] = odoo_standin.search_read("account.payment", [["memo", "=", postings["customer_credit"].ref]],
                                           ["payment_type", "amount", "state", "invoice_ids", "move_id"])
    assert (unmatched["payment_type"], unmatched["amount"], unmatched["invoice_ids"]) == ("inbound", 113.0, [])
    credit_move = unmatched["move_id"][0]
    assert (_residual(odoo_standin, postings["invoice"].odoo_move_id), _residual(odoo_standin, credit_move)) == \
        (0.0, 113.0)
    assert balance(customer.pk) == (-11300, -11300)

    second = one_off(20000)  # 22600: half of it from the credit, the rest due
    assert (second.prepaid_credit_amount_cents, second.total_amount_cents, second.payment_status) == \
        (11300, 11300, "pending")
    _send_all(client)
    applied = LedgerPosting.objects.get(kind="credit_application")
    second_move = LedgerPosting.objects.get(kind="invoice", invoice=second).odoo_move_id
    assert (applied.status, applied.odoo_amount_total_cents) == ("posted", 11300)
    assert (_residual(odoo_standin, second_move), _residual(odoo_standin, credit_move)) == (113.0, 0.0)
    assert balance(customer.pk) == (11300, 11300)

    invoice_void(invoice_id=second.pk)
    credit.refresh_from_db()
    assert (credit.balance_amount_cents, credit.status) == (11300, "available")
    _send_all(client)
    assert set(LedgerPosting.objects.values_list("status", flat=True)) == {"posted"}
    assert (_residual(odoo_standin, second_move), _residual(odoo_standin, credit_move)) == (0.0, 113.0)
    assert balance(customer.pk) == (-11300, -11300)

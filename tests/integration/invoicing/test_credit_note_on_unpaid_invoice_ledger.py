"""A credit note on an invoice still due, in the hub and in Odoo (found by the billing state machine, issue 15).

Odoo reconciles a posted out_refund with the invoice it reverses (`reversed_entry_id`) for as much as both have
open, whichever way it is posted (C-MOVE `_post` -> `_reconcile_reversed_moves`; research/odoo.md §3.4). The hub
keeps the same model (`credit_note_create`): a note first settles what its invoice still owes
(`offset_amount_cents`, Lago's offset), so the invoice asks for less, and only the rest is refunded or kept as the
customer's credit. Hub and ledger then agree on every document at every step: the offset is the reconciliation,
later credit applications reconcile what they consume, payments find what the hub asks for.

These tests first failed on main (the hub kept the whole note as credit and left the invoice due in full: its later
application reconciled 0, the invoice's payment found nothing left to pay in Odoo).
"""
from __future__ import annotations


import pytest
import time_machine

from apps.core.exceptions import ValidationFailed
from apps.integrity.invariants import check_all
from apps.invoicing.close import periods_close
from apps.invoicing.credits import credit_available_cents
from apps.invoicing.models import CustomerCredit, Invoice
from apps.invoicing.services import CreditNoteItemIn, credit_note_create, invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch
from apps.payments import services as payments
from apps.payments.models import PaymentAttempt
from tests.integration.ledger.builders import mapping_make
from tests.integration.payments.stripe_fixtures import (  # noqa: F401
    localstripe,
    ls_client,
    ls_post,
    save_card,
    stripe_env,
)
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401

from .conftest import at

pytestmark = pytest.mark.django_db


def _send_all(client) -> None:
    for _ in range(4):  # a document waits one round for the one it refers to
        LedgerPosting.objects.filter(status=LedgerPosting.Status.PENDING).update(next_attempt_at=None)
        ledger_post_pending_batch(client=client)


def _all_posted() -> list:
    return list(LedgerPosting.objects.exclude(status__in=["posted", "skipped"])
                .values_list("ref", "status", "last_error"))


def _odoo_move(client, posting_filter: dict):
    posting = LedgerPosting.objects.get(**posting_filter)
    [move] = client.moves_read(ids=[posting.odoo_move_id])
    return move


def _credit(invoice: Invoice, amount_cents: int, **amounts):
    with time_machine.travel(at(2026, 3, 2), tick=False):
        return credit_note_create(invoice_id=invoice.pk,
                                  items=[CreditNoteItemIn(fee_id=invoice.fees.get().pk, amount_cents=amount_cents)],
                                  **amounts)


@pytest.fixture
def march(billing, settings, odoo_client):
    """March billed in advance (3100 + HST 403 = 3503), unpaid, posted to Odoo."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    mapping_make(service=billing.service)
    plan = billing.plan("adv", amount_cents=3100, pay_in_advance=True)
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 3, 1, 1, 0))
    invoice = Invoice.objects.get()
    _send_all(odoo_client)
    return invoice


def test_a_note_on_the_unpaid_invoice_settles_it_and_the_next_invoice_is_billed_in_full(march, odoo_client):
    # Asked as Lago's credit: the hub offsets what is due first, as Odoo reconciles it.
    note = _credit(march, 3100, credit_amount_cents=3503)
    assert (note.offset_amount_cents, note.credit_amount_cents, note.balance_amount_cents) == (3503, 0, 0)
    march.refresh_from_db()
    assert (march.total_amount_cents, march.total_due_amount_cents, march.payment_status) == (3503, 0, "succeeded")
    _send_all(odoo_client)
    assert _all_posted() == []
    invoice_move = _odoo_move(odoo_client, {"kind": "invoice", "invoice": march})
    note_move = _odoo_move(odoo_client, {"kind": "credit_note", "credit_note": note})
    assert (invoice_move.payment_state, invoice_move.amount_residual_cents) == ("reversed", 0)
    assert note_move.amount_residual_cents == 0

    periods_close(as_of=at(2026, 4, 1, 1, 0))  # nothing left to consume: April is billed in full
    april = Invoice.objects.exclude(pk=march.pk).get()
    assert (april.credit_notes_amount_cents, april.total_amount_cents) == (0, 3503)
    _send_all(odoo_client)
    assert _all_posted() == []
    assert check_all(odoo_client=odoo_client) == []


def test_a_partial_note_lowers_what_is_charged_and_the_rest_is_paid(march, stripe_env, odoo_client):
    note = _credit(march, 2000)  # 2000 + 260 tax
    assert (note.offset_amount_cents, note.credit_amount_cents) == (2260, 0)
    march.refresh_from_db()
    assert (march.total_due_amount_cents, march.payment_status) == (1243, "pending")
    save_card(stripe_env, march.customer, "pm_card_visa")
    attempt = payments.payment_collect_for_invoice(invoice_id=march.pk)
    assert (attempt.status, attempt.amount_cents) == ("succeeded", 1243)
    _send_all(odoo_client)
    assert _all_posted() == []
    assert _odoo_move(odoo_client, {"kind": "invoice", "invoice": march}).amount_residual_cents == 0
    assert check_all(odoo_client=odoo_client) == []


def test_a_note_beyond_what_is_due_keeps_the_rest_as_credit_for_the_next_invoice(march, stripe_env, odoo_client):
    _credit(march, 2000)  # offsets 2260 of 3503
    save_card(stripe_env, march.customer, "pm_card_visa")
    assert payments.payment_collect_for_invoice(invoice_id=march.pk).amount_cents == 1243  # paid in between
    second = _credit(march, 1100)  # 1243: nothing is due any more, so all of it is credit
    assert (second.offset_amount_cents, second.credit_amount_cents, second.balance_amount_cents) == (0, 1243, 1243)
    _send_all(odoo_client)
    assert _all_posted() == []
    assert check_all(odoo_client=odoo_client) == []

    periods_close(as_of=at(2026, 4, 1, 1, 0))
    april = Invoice.objects.exclude(pk=march.pk).get()
    assert (april.credit_notes_amount_cents, april.total_amount_cents) == (1243, 2260)
    _send_all(odoo_client)
    assert _all_posted() == []
    assert check_all(odoo_client=odoo_client) == []


def test_voiding_the_invoice_after_a_partial_note_leaves_no_credit(march, odoo_client):
    _credit(march, 2000)
    _send_all(odoo_client)  # the note is in Odoo, reconciled with March, before the void
    invoice_void(invoice_id=march.pk)
    assert credit_available_cents(customer_id=march.customer_id, currency="CAD") == 0  # no money from nowhere
    _send_all(odoo_client)
    assert _all_posted() == []
    assert _odoo_move(odoo_client, {"kind": "invoice", "invoice": march}).amount_residual_cents == 0
    assert check_all(odoo_client=odoo_client) == []


def test_a_void_sent_with_the_note_waits_for_it(march, odoo_client):
    _credit(march, 2000)
    invoice_void(invoice_id=march.pk)  # both wait to be sent: the note must reconcile first
    _send_all(odoo_client)
    assert _all_posted() == []
    assert check_all(odoo_client=odoo_client) == []


def test_a_link_for_the_old_amount_is_replaced_and_its_late_payment_is_kept(
        march, stripe_env, odoo_client, django_capture_on_commit_callbacks):
    old = payments.payment_collect_for_invoice(invoice_id=march.pk)  # no card: a Checkout link for 3503
    assert (old.kind, old.status, old.amount_cents) == ("checkout", "requires_action", 3503)

    with django_capture_on_commit_callbacks(execute=True):
        _credit(march, 2000)  # 1243 left due
    old.refresh_from_db()
    assert (old.status, old.checkout_closed_at is not None) == ("canceled", True)
    assert ls_client(stripe_env).v1.checkout.sessions.retrieve(old.stripe_checkout_session_id).status == "expired"
    new = march.payment_attempts.order_by("-attempt_number").first()
    assert (new.status, new.amount_cents) == ("requires_action", 1243)
    _send_all(odoo_client)
    assert check_all(odoo_client=odoo_client) == []


def test_the_old_link_paid_before_the_note_is_recorded_and_the_excess_kept_as_credit(
        march, stripe_env, odoo_client, django_capture_on_commit_callbacks):
    old = payments.payment_collect_for_invoice(invoice_id=march.pk)
    ls_post(stripe_env, f"/_config/checkout_sessions/{old.stripe_checkout_session_id}/complete",
            {"payment_method": "pm_card_visa"})  # paid; Stripe's webhook is late

    with django_capture_on_commit_callbacks(execute=True):
        _credit(march, 2000)  # offsets 2260: the expiry finds the link paid and records it

    march.refresh_from_db()
    assert (march.total_paid_amount_cents, march.total_due_amount_cents, march.payment_status) == \
        (1243, 0, "succeeded")
    [credit] = CustomerCredit.objects.all()
    assert (credit.reason, credit.amount_cents) == ("overpaid", 2260)
    assert not march.payment_attempts.filter(status__in=PaymentAttempt.OPEN_STATUSES).exists()
    _send_all(odoo_client)
    assert _all_posted() == []
    assert check_all(odoo_client=odoo_client) == []


def test_the_refund_is_what_the_offset_leaves_of_what_was_paid(march):
    Invoice.objects.filter(pk=march.pk).update(total_paid_amount_cents=1000)  # 1000 paid, 2503 due
    with pytest.raises(ValidationFailed) as refused:
        _credit(march, 3100, refund_amount_cents=1001)
    assert refused.value.details == {"refund_amount_cents": ["higher_than_remaining_invoice_amount"]}
    note = _credit(march, 3100, refund_amount_cents=1000)
    assert (note.offset_amount_cents, note.refund_amount_cents, note.credit_amount_cents) == (2503, 1000, 0)


def test_an_offset_beyond_what_is_due_is_refused(march):
    with pytest.raises(ValidationFailed) as refused:
        _credit(march, 3100, offset_amount_cents=3504, credit_amount_cents=0, refund_amount_cents=0)
    assert refused.value.details == {"base": ["does_not_match_item_amounts"]}
    Invoice.objects.filter(pk=march.pk).update(total_paid_amount_cents=1000)
    with pytest.raises(ValidationFailed) as refused:
        _credit(march, 3100, offset_amount_cents=3503, credit_amount_cents=0)
    assert refused.value.details == {"offset_amount_cents": ["higher_than_remaining_invoice_amount"]}

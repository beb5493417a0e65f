"""Voiding a credit note's credit (credit_note_void): the customer loses the balance, no later invoice consumes it,
and a void racing a finalization that consumes the same note, or another void, leaves exactly one outcome (the note's
row lock; two connections with committed transactions). Integrity I1 still balances after a void."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from apps.core.exceptions import NotAllowed
from apps.integrity.invariants import check_all
from apps.invoicing import services
from apps.invoicing.models import CreditApplication, CreditNote, Invoice
from apps.invoicing.services import (
    AddOnFee,
    CreditNoteItemIn,
    credit_note_create,
    credit_note_void,
    invoice_create_one_off,
    invoice_void,
)
from apps.ledger.models import LedgerPosting
from apps.payments.models import Payment
from tests.integration.balance import balance
from tests.integration.ledger.builders import customer_make

PATIENCE_SECONDS = 30  # a failsafe against a hung test only; nothing is asserted about time


@pytest.fixture
def world(service_factory):
    """An Ontario customer with a paid 113.00 invoice and a credit note of 45.20 kept as credit."""
    service = service_factory("cloud").service
    customer = customer_make(province="ON")

    def one_off(cents: int) -> Invoice:
        return invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                      fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])

    paid = one_off(10000)
    Invoice.objects.filter(pk=paid.pk).update(total_paid_amount_cents=11300, payment_status="succeeded")
    Payment.objects.create(invoice=paid, amount_cents=11300, currency="CAD", payment_type="manual", reference="wire 1",
                           paid_at=timezone.now())
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=paid.fees.get().pk,
                                                                          amount_cents=4000)])
    assert (note.credit_amount_cents, note.balance_amount_cents) == (4520, 4520)
    return customer, note, one_off


def _i1(customer) -> list:
    flows, owed = balance(customer.pk)  # the tests' own reading of I1, beside the invariant's
    assert flows == owed, (flows, owed)
    return check_all(customer_ids=[customer.pk], only=["I1"])


@pytest.mark.django_db
def test_a_later_invoice_does_not_consume_voided_credit(world) -> None:
    customer, note, one_off = world
    used = one_off(1000)  # 11.30 consumed from the note: 33.90 left
    assert used.credit_notes_amount_cents == 1130
    note = credit_note_void(credit_note_id=note.pk)
    assert (note.credit_status, note.balance_amount_cents, note.voided_amount_cents) == ("voided", 0, 3390)

    later = one_off(2000)

    assert (later.credit_notes_amount_cents, later.total_amount_cents) == (0, 2260)
    assert not CreditApplication.objects.filter(invoice=later).exists()
    assert _i1(customer) == []


@pytest.mark.django_db
def test_void_then_void_again_is_refused_and_posts_once(world) -> None:
    customer, note, _ = world
    credit_note_void(credit_note_id=note.pk)
    with pytest.raises(NotAllowed) as refused:
        credit_note_void(credit_note_id=note.pk)
    assert refused.value.code == "no_voidable_amount"
    note.refresh_from_db()
    assert (note.voided_amount_cents, note.balance_amount_cents) == (4520, 0)
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID, credit_note=note).count() == 1
    assert _i1(customer) == []


@pytest.mark.django_db
def test_credit_a_voided_invoice_gives_back_to_a_voided_note_is_lost_and_posted(world) -> None:
    customer, note, one_off = world
    used = one_off(1000)  # covered by credit (succeeded); let it be voidable as if still collecting
    Invoice.objects.filter(pk=used.pk).update(payment_status="pending")
    credit_note_void(credit_note_id=note.pk)

    invoice_void(invoice_id=used.pk)

    note.refresh_from_db()
    assert (note.credit_status, note.balance_amount_cents, note.voided_amount_cents) == ("voided", 0, 4520)
    voids = list(LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID, credit_note=note)
                 .order_by("id").values_list("payment_amount_cents", "credit_application__kind"))
    assert voids == [(3390, None), (1130, "returned")]
    assert _i1(customer) == []
    invoice_void(invoice_id=used.pk)  # idempotent: nothing more is lost or posted
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).count() == 2


# -- races, on two connections --------------------------------------------------------------------------------------
def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def _waiting_on_a_lock(pid: int | None) -> bool:
    if pid is None:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)", [pid])
        return cursor.fetchone()[0]


def _race(monkeypatch, pause_in: str, first, second) -> dict[str, object]:
    """Run `first()` and `second()` on two connections. The first stops inside its transaction right after
    `services.<pause_in>` ran (its writes not committed) until the second has finished or waits on a lock."""
    real = getattr(services, pause_in)
    first_inside, second_done = threading.Event(), threading.Event()
    second_pid: dict[str, int] = {}
    outcome: dict[str, object] = {}

    def run_then_pause(*args, **kwargs):
        result = real(*args, **kwargs)
        if threading.current_thread().name == "first":
            first_inside.set()
            _wait_until(lambda: second_done.is_set() or _waiting_on_a_lock(second_pid.get("pid")),
                        "the second call to finish or wait for the lock")
        return result

    monkeypatch.setattr(services, pause_in, run_then_pause)

    def run(name: str, call) -> None:
        try:
            if name == "second":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    second_pid["pid"] = cursor.fetchone()[0]
            outcome[name] = call()
        except BaseException as exc:  # asserted by the caller
            outcome[name] = exc
        finally:
            if name == "second":
                second_done.set()
            connection.close()

    threads = {name: threading.Thread(target=run, args=(name, call), name=name)
               for name, call in (("first", first), ("second", second))}
    threads["first"].start()
    _wait_until(lambda: first_inside.is_set() or "first" in outcome, "the first call to write its rows")
    threads["second"].start()
    for thread in threads.values():
        thread.join(PATIENCE_SECONDS)
        assert not thread.is_alive()
    return outcome


@pytest.mark.django_db(transaction=True)
def test_a_finalization_consuming_the_note_then_a_void_each_take_their_part(monkeypatch, world) -> None:
    customer, note, one_off = world
    outcome = _race(monkeypatch, "credits_apply", lambda: one_off(1000), lambda: credit_note_void(credit_note_id=note.pk))

    assert isinstance(outcome["first"], Invoice), outcome
    assert isinstance(outcome["second"], CreditNote), outcome
    assert outcome["first"].credit_notes_amount_cents == 1130
    note.refresh_from_db()
    # The void saw the finalization's consumption: it voided only what was left, nothing counted twice.
    assert (note.balance_amount_cents, note.voided_amount_cents) == (0, 4520 - 1130)
    assert LedgerPosting.objects.get(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).payment_amount_cents == 3390
    assert _i1(customer) == []


@pytest.mark.django_db(transaction=True)
def test_a_void_then_a_finalization_leaves_nothing_to_consume(monkeypatch, world) -> None:
    customer, note, one_off = world
    outcome = _race(monkeypatch, "ledger_credit_note_void_create", lambda: credit_note_void(credit_note_id=note.pk),
                    lambda: one_off(1000))

    assert isinstance(outcome["first"], CreditNote) and isinstance(outcome["second"], Invoice), outcome
    assert (outcome["second"].credit_notes_amount_cents, outcome["second"].total_amount_cents) == (0, 1130)
    note.refresh_from_db()
    assert (note.balance_amount_cents, note.voided_amount_cents, note.credit_status) == (0, 4520, "voided")
    assert not CreditApplication.objects.filter(credit_note=note).exists()
    assert _i1(customer) == []


@pytest.mark.django_db(transaction=True)
def test_two_voids_at_once_void_once(monkeypatch, world) -> None:
    customer, note, _ = world
    outcome = _race(monkeypatch, "ledger_credit_note_void_create", lambda: credit_note_void(credit_note_id=note.pk),
                    lambda: credit_note_void(credit_note_id=note.pk))

    assert isinstance(outcome["first"], CreditNote), outcome
    assert isinstance(outcome["second"], NotAllowed) and outcome["second"].code == "no_voidable_amount"
    note.refresh_from_db()
    assert note.voided_amount_cents == 4520
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).count() == 1
    assert _i1(customer) == []


@pytest.mark.django_db
def test_a_voided_notes_items_stay_credited(world) -> None:
    """The void takes the customer's credit, not the credit note: its fee cannot be credited again (Lago counts
    every item in Fee#creditable_amount_cents), or the voided part would be handed out twice."""
    _, note, _ = world
    credit_note_void(credit_note_id=note.pk)
    fee = note.items.get().fee
    with pytest.raises(services.ValidationFailed) as refused:
        credit_note_create(invoice_id=note.invoice_id, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=6001)])
    assert refused.value.details == {"items[0].amount_cents": ["higher_than_remaining_fee_amount"]}
    assert credit_note_create(invoice_id=note.invoice_id,
                              items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=6000)]).total_amount_cents == 6780

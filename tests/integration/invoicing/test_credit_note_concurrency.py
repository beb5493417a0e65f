"""Two credit notes issued at once on one invoice, on two connections with committed transactions: together they
never credit more than a fee nor refund more than was paid (the invoice row lock serializes them)."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from apps.core.exceptions import ValidationFailed
from apps.invoicing import services
from apps.invoicing.models import CreditNote, CreditNoteItem, Invoice
from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from tests.integration.ledger.builders import customer_make, invoice_make

pytestmark = pytest.mark.django_db(transaction=True)
PATIENCE_SECONDS = 30  # a failsafe against a hung test only; nothing is asserted about time


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


def _race(monkeypatch, first: dict, second: dict) -> dict[str, object]:
    """Run credit_note_create(**first) and (**second) on two connections. The first stops inside its transaction,
    its note written but not committed, until the second has either finished or is blocked on a lock; then both
    go on. Without the invoice lock the second reads what is credited and refunded before the first commits.
    Returns each call's CreditNote or exception."""
    real_record = services.credit_note_webhook_record
    first_inside, second_done = threading.Event(), threading.Event()
    second_pid: dict[str, int] = {}
    outcome: dict[str, object] = {}

    def record_then_pause(*, credit_note):
        real_record(credit_note=credit_note)
        if threading.current_thread().name == "first":
            first_inside.set()
            _wait_until(lambda: second_done.is_set() or _waiting_on_a_lock(second_pid.get("pid")),
                        "the second credit note to finish or wait for the lock")

    monkeypatch.setattr(services, "credit_note_webhook_record", record_then_pause)

    def run(name: str, kwargs: dict) -> None:
        try:
            if name == "second":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    second_pid["pid"] = cursor.fetchone()[0]
            outcome[name] = credit_note_create(**kwargs)
        except BaseException as exc:  # asserted by the caller
            outcome[name] = exc
        finally:
            if name == "second":
                second_done.set()
            connection.close()

    threads = {name: threading.Thread(target=run, args=(name, kwargs), name=name)
               for name, kwargs in (("first", first), ("second", second))}
    threads["first"].start()
    _wait_until(lambda: first_inside.is_set() or "first" in outcome, "the first credit note to write its rows")
    threads["second"].start()
    for thread in threads.values():
        thread.join(PATIENCE_SECONDS)
        assert not thread.is_alive()
    return outcome


def _items(fee, cents):
    return [CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)]


@pytest.fixture
def invoice(service_factory):
    return invoice_make(service=service_factory("cloud").service, customer=customer_make(province="ON"),
                        fees_cents=[1000])  # HST 130: total 1130


def test_two_notes_at_once_never_credit_more_than_the_fee(monkeypatch, invoice) -> None:
    fee = invoice.fees.get()
    outcome = _race(monkeypatch, {"invoice_id": invoice.pk, "items": _items(fee, 600)},
                    {"invoice_id": invoice.pk, "items": _items(fee, 600)})

    assert isinstance(outcome["first"], CreditNote)
    assert isinstance(outcome["second"], ValidationFailed)
    assert outcome["second"].details == {"items[0].amount_cents": ["higher_than_remaining_fee_amount"]}
    assert sum(CreditNoteItem.objects.filter(fee=fee).values_list("amount_cents", flat=True)) == 600


def test_two_notes_at_once_that_fit_are_both_issued_with_their_own_numbers(monkeypatch, invoice) -> None:
    fee = invoice.fees.get()
    outcome = _race(monkeypatch, {"invoice_id": invoice.pk, "items": _items(fee, 500)},
                    {"invoice_id": invoice.pk, "items": _items(fee, 500)})

    assert isinstance(outcome["first"], CreditNote) and isinstance(outcome["second"], CreditNote)
    notes = list(CreditNote.objects.filter(invoice=invoice).order_by("sequential_id"))
    assert [note.number for note in notes] == [f"{invoice.number}-CN1", f"{invoice.number}-CN2"]
    # The fee credited in full in two halves credits exactly its tax: 65 + 65 (cumulative: 65, then 130 - 65).
    assert [note.taxes_amount_cents for note in notes] == [65, 65]


def test_two_refunds_at_once_never_refund_more_than_was_paid(monkeypatch, invoice) -> None:
    # 530 of credit applied at finalization, the 600 left paid: nothing due, so a note can refund up to 600.
    Invoice.objects.filter(pk=invoice.pk).update(credit_notes_amount_cents=530, total_amount_cents=600,
                                                 total_paid_amount_cents=600)
    fee = invoice.fees.get()
    outcome = _race(monkeypatch, {"invoice_id": invoice.pk, "items": _items(fee, 400), "refund_amount_cents": 452},
                    {"invoice_id": invoice.pk, "items": _items(fee, 400), "refund_amount_cents": 452})

    assert isinstance(outcome["first"], CreditNote) and outcome["first"].refund_amount_cents == 452
    assert isinstance(outcome["second"], ValidationFailed)
    assert outcome["second"].details == {"refund_amount_cents": ["higher_than_remaining_invoice_amount"]}
    assert sum(CreditNote.objects.filter(invoice=invoice).values_list("refund_amount_cents", flat=True)) <= 600

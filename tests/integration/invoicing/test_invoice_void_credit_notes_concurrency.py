"""A void with generate_credit_note racing another void, a credit note or a payment on the same invoice, on two
connections with committed transactions: the invoice row lock makes them take turns, so one consistent outcome is
left (one set of void notes, never more credited than the invoice, no payment on a voided invoice) and I1 holds."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection

from apps.core.exceptions import BillingError, NotAllowed, ValidationFailed
from apps.integrity.invariants import check_all
from apps.invoicing import services
from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing.services import CreditNoteItemIn, credit_note_create, invoice_void
from apps.payments.models import Payment
from apps.payments.services import payment_manual_create
from apps.webhooks.models import WebhookEvent
from apps.webhooks.services import webhook_endpoint_create
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


def _race(monkeypatch, first: Callable[[], object], second: Callable[[], object]) -> dict[str, object]:
    """Run first() and second() on two connections. The first stops inside its transaction once it has written a
    credit note (not committed) until the second has finished or is blocked on a lock; then both go on. Returns
    each call's result or exception."""
    real_record = services.credit_note_webhook_record
    first_inside, second_done = threading.Event(), threading.Event()
    second_pid: dict[str, int] = {}
    outcome: dict[str, object] = {}

    def record_then_pause(*, credit_note):
        real_record(credit_note=credit_note)
        if threading.current_thread().name == "first" and not first_inside.is_set():
            first_inside.set()
            _wait_until(lambda: second_done.is_set() or _waiting_on_a_lock(second_pid.get("pid")),
                        "the second call to finish or wait for the lock")

    monkeypatch.setattr(services, "credit_note_webhook_record", record_then_pause)

    def run(name: str, call: Callable[[], object]) -> None:
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
    _wait_until(lambda: first_inside.is_set() or "first" in outcome, "the first call to write a credit note")
    threads["second"].start()
    for thread in threads.values():
        thread.join(PATIENCE_SECONDS)
        assert not thread.is_alive()
    return outcome


@pytest.fixture
def invoice(service_factory):
    service = service_factory("cloud").service
    webhook_endpoint_create(service=service, values={"webhook_url": "https://app.example.com/hooks",
                                                     "event_types": None})
    invoice = invoice_make(service=service, customer=customer_make(province="ON"), fees_cents=[10000])  # 11300
    return invoice


def _void(invoice: Invoice, credit: int = 0, refund: int = 0) -> Callable[[], Invoice]:
    return lambda: invoice_void(invoice_id=invoice.pk, generate_credit_note=True, credit_amount_cents=credit,
                                refund_amount_cents=refund)


def _i1_holds(invoice: Invoice) -> None:
    assert check_all(customer_ids=[invoice.customer_id], only=["I1"]) == []


def test_two_voids_at_once_write_one_set_of_notes(monkeypatch, invoice):
    payment_manual_create(invoice_id=invoice.pk, amount_cents=11300, reference="wire")
    outcome = _race(monkeypatch, _void(invoice, credit=1000), _void(invoice, credit=1000))
    assert isinstance(outcome["first"], Invoice) and outcome["first"].status == "voided"
    # The second reads the voided invoice: nothing left to credit (Lago's 422 for an amount; 405 without one).
    assert isinstance(outcome["second"], ValidationFailed)
    assert CreditNote.objects.filter(invoice=invoice).count() == 2
    assert WebhookEvent.objects.filter(event_type="invoice.voided").count() == 1
    assert WebhookEvent.objects.filter(event_type="credit_note.created").count() == 2
    _i1_holds(invoice)


def test_a_credit_note_issued_during_a_void_waits_and_is_refused(monkeypatch, invoice):
    payment_manual_create(invoice_id=invoice.pk, amount_cents=11300, reference="wire")
    fee = invoice.fees.get()
    outcome = _race(monkeypatch, _void(invoice, refund=2000),
                    lambda: credit_note_create(invoice_id=invoice.pk,
                                               items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=100)]))
    assert isinstance(outcome["first"], Invoice)
    assert isinstance(outcome["second"], NotAllowed)  # the invoice is voided: nothing more is credited on it
    assert sum(note.total_amount_cents for note in CreditNote.objects.filter(invoice=invoice)) == 11300
    _i1_holds(invoice)


def test_a_void_during_a_credit_note_sees_what_the_note_credited(monkeypatch, invoice):
    payment_manual_create(invoice_id=invoice.pk, amount_cents=11300, reference="wire")
    fee = invoice.fees.get()
    note = lambda: credit_note_create(invoice_id=invoice.pk,  # noqa: E731
                                      items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=5000)])  # 5650
    # 6000 would fit before the note, not after it (5650 left): the void is refused, nothing written.
    outcome = _race(monkeypatch, note, _void(invoice, credit=6000))
    assert isinstance(outcome["first"], CreditNote)
    assert isinstance(outcome["second"], ValidationFailed)
    assert Invoice.objects.get(pk=invoice.pk).status == "finalized"
    assert CreditNote.objects.filter(invoice=invoice).count() == 1
    # Sized to what is left, it then goes through: everything credited exactly once.
    _void(invoice, credit=5650)()
    assert sum(n.total_amount_cents for n in CreditNote.objects.filter(invoice=invoice)) == 11300
    _i1_holds(invoice)


def test_a_payment_during_a_void_is_refused_and_nothing_is_collected_twice(monkeypatch, invoice):
    payment_manual_create(invoice_id=invoice.pk, amount_cents=5000, reference="wire 1")  # 6300 due
    outcome = _race(monkeypatch, _void(invoice, credit=1000),
                    lambda: payment_manual_create(invoice_id=invoice.pk, amount_cents=6300, reference="wire 2"))
    assert isinstance(outcome["first"], Invoice)
    assert isinstance(outcome["second"], BillingError)  # the invoice is voided: it takes no payment
    assert Payment.objects.filter(invoice=invoice).count() == 1
    settle = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id").first()
    assert settle.offset_amount_cents == 6300  # the due part was settled by the void, not paid
    _i1_holds(invoice)

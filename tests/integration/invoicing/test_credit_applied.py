"""Credit kept for the customer is consumed by the customer's next invoices (issue 15, defect 1).

Every finalization path consumes it: the close one customer at a time, the close's batches (which insert their
invoices already numbered), one-off invoices, and a draft finalized by hand. Oldest credit first, per currency,
after tax; what is left is what Stripe is asked for; voiding the invoice gives the credit back.
"""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from apps.invoicing.close import periods_close
from apps.invoicing.models import CreditApplication, CreditNote, Invoice
from apps.invoicing.services import (
    AddOnFee,
    CreditNoteItemIn,
    credit_note_create,
    invoice_create_one_off,
    invoice_finalize,
    invoice_void,
)
from apps.ledger.models import LedgerPosting
from apps.payments import services as payments
from apps.payments.models import PaymentAttempt
from tests.integration.balance import balance
from tests.integration.paying import pay
from tests.integration.payments.stripe_fixtures import localstripe, ls_client, save_card, stripe_env  # noqa: F401

from .conftest import at

pytestmark = pytest.mark.django_db


def one_off(billing, customer, cents: int, currency: str = "CAD") -> Invoice:
    """A finalized one-off invoice of one add-on fee of `cents` (Ontario: 13% HST on top)."""
    return invoice_create_one_off(service=billing.service, customer=customer, currency=currency,
                                  fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])


def credit(invoice: Invoice, cents: int) -> CreditNote:
    """A credit note on `invoice`, paid first, crediting `cents` of its fee (plus its tax), all kept as credit (on an
    invoice still due, a note settles it first: tests/integration/invoicing/test_credit_note_on_unpaid_invoice_ledger.py)."""
    if invoice.total_due_amount_cents:
        pay(invoice)
    fee = invoice.fees.get()
    note = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)])
    assert note.credit_status == CreditNote.CreditStatus.AVAILABLE
    return note


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_the_close_consumes_credit_notes_oldest_first_in_the_invoice_currency(billing, settings, batched):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = 1 if batched else 1000
    customer = billing.customer().customer
    billing.subscribe("s1", billing.plan(amount_cents=9999), when=at(2026, 3, 1, 0, 0))
    paid = one_off(billing, customer, 20000)  # 22600 with HST
    older = credit(paid, 4000)  # 4520
    newer = credit(paid, 10000)  # 11300
    usd = credit(one_off(billing, customer, 1000, currency="USD"), 1000)

    periods_close(as_of=at(2026, 4, 1, 1, 0))

    invoice = Invoice.objects.get(invoice_type=Invoice.InvoiceType.SUBSCRIPTION)
    assert invoice.status == Invoice.Status.FINALIZED
    assert invoice.sub_total_including_taxes_amount_cents == 9999 + 1300
    # 11299 due: all of the older note (4520), then 6779 of the newer one.
    assert invoice.credit_notes_amount_cents == 11299
    assert (invoice.total_amount_cents, invoice.total_due_amount_cents) == (0, 0)
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED  # credit paid it
    for note in (older, newer, usd):
        note.refresh_from_db()
    assert (older.balance_amount_cents, older.credit_status) == (0, "consumed")
    assert (newer.balance_amount_cents, newer.credit_status) == (11300 - 6779, "available")
    assert (usd.balance_amount_cents, usd.credit_status) == (usd.credit_amount_cents, "available")
    assert sorted(CreditApplication.objects.filter(invoice=invoice).values_list("credit_note_id", "amount_cents")) == \
        sorted([(older.pk, 4520), (newer.pk, 6779)])

    flows, owed = balance(customer.pk)
    assert flows == owed == 11299 - 4520 - 11300  # I1: 4521 of credit left (22600 was paid)

    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0  # a rerun consumes nothing more
    newer.refresh_from_db()
    assert newer.balance_amount_cents == 11300 - 6779
    assert CreditApplication.objects.count() == 2


def test_a_one_off_invoice_consumes_credit_and_only_its_remainder_is_due(billing):
    customer = billing.customer().customer
    note = credit(one_off(billing, customer, 10000), 3000)  # 3390 of credit

    invoice = one_off(billing, customer, 5000)  # 5650

    assert (invoice.credit_notes_amount_cents, invoice.total_amount_cents) == (3390, 2260)
    assert (invoice.total_due_amount_cents, invoice.payment_status) == (2260, Invoice.PaymentStatus.PENDING)
    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.credit_notes_amount_cents, stored.total_amount_cents) == (3390, 2260)
    note.refresh_from_db()
    assert (note.balance_amount_cents, note.credit_status) == (0, "consumed")
    assert one_off(billing, customer, 100).credit_notes_amount_cents == 0  # nothing left


def test_stripe_is_asked_only_for_what_credit_left_due(billing, stripe_env):  # noqa: F811
    customer = billing.customer().customer
    credit(one_off(billing, customer, 10000), 4000)  # 4520 of credit
    invoice = one_off(billing, customer, 10000)  # 11300 - 4520
    assert invoice.total_due_amount_cents == 6780

    link = payments.invoice_payment_url(invoice=invoice)  # the customer without a card gets a Checkout link
    session = ls_client(stripe_env).v1.checkout.sessions.retrieve(link.rsplit("/", 1)[1])
    assert (session.amount_total, session.currency) == (6780, "cad")

    save_card(stripe_env, customer)
    attempt = payments.payment_collect_for_invoice(invoice_id=invoice.pk, force_new=True)
    assert (attempt.amount_cents, attempt.status) == (6780, PaymentAttempt.Status.SUCCEEDED)
    intent = ls_client(stripe_env).v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert intent.amount == 6780
    invoice.refresh_from_db()
    assert (invoice.total_paid_amount_cents, invoice.total_due_amount_cents) == (6780, 0)
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED


def test_an_invoice_covered_by_credit_is_paid_without_calling_stripe(billing, stripe_env,  # noqa: F811
                                                                   django_capture_on_commit_callbacks):
    customer = billing.customer().customer
    credit(one_off(billing, customer, 10000), 10000)  # 11300 of credit
    with django_capture_on_commit_callbacks() as callbacks:
        invoice = one_off(billing, customer, 5000)
    assert (invoice.total_amount_cents, invoice.payment_status) == (0, Invoice.PaymentStatus.SUCCEEDED)
    assert callbacks == []  # no collection task
    assert payments.payment_collect_for_invoice(invoice_id=invoice.pk) is None
    assert not PaymentAttempt.objects.filter(invoice=invoice).exists()


def test_voiding_an_invoice_gives_its_credit_back_for_the_next_one(billing):
    customer = billing.customer().customer
    note = credit(one_off(billing, customer, 10000), 4000)  # 4520
    invoice = one_off(billing, customer, 10000)
    note.refresh_from_db()
    assert note.credit_status == "consumed"

    invoice_void(invoice_id=invoice.pk)
    invoice_void(invoice_id=invoice.pk)  # again: nothing more given back

    note.refresh_from_db()
    assert (note.balance_amount_cents, note.credit_status) == (4520, "available")
    rows = list(CreditApplication.objects.filter(invoice=invoice).values_list("kind", "amount_cents"))
    assert rows == [("applied", 4520), ("returned", -4520)]
    assert balance(customer.pk) == (-4520, -4520)  # I1 after the void: the first one was paid, its credit is back
    again = one_off(billing, customer, 1000)  # 1130: consumes the returned credit
    assert again.credit_notes_amount_cents == 1130
    note.refresh_from_db()
    assert note.balance_amount_cents == 4520 - 1130


def test_a_draft_finalized_by_hand_consumes_credit_and_the_api_shows_it(billing, service_factory, api_client_for,
                                                                       settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    issued = service_factory("nexaapi", "NexaAPI")
    billing.service = issued.service
    customer = billing.customer().customer
    billing.subscribe("s1", billing.plan(amount_cents=9999), when=at(2026, 3, 1, 0, 0))
    note = credit(one_off(billing, customer, 5000), 5000)  # 5650
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    draft = Invoice.objects.get(invoice_type=Invoice.InvoiceType.SUBSCRIPTION)
    assert (draft.status, draft.credit_notes_amount_cents) == ("draft", 0)  # applied at finalization only

    api = api_client_for(issued.raw_key)
    body = api.put(f"/api/v1/invoices/{draft.lago_id}/finalize").json()["invoice"]

    assert (body["sub_total_including_taxes_amount_cents"], body["credit_notes_amount_cents"]) == (11299, 5650)
    assert (body["total_amount_cents"], body["total_due_amount_cents"], body["payment_status"]) == \
        (5649, 5649, "pending")
    [given] = body["credits"]
    assert (given["amount_cents"], given["before_taxes"], given["item"]["type"], given["item"]["code"]) == \
        (5650, False, "credit_note", note.number)
    note_body = api.get(f"/api/v1/credit_notes/{note.lago_id}").json()["credit_note"]
    assert (note_body["balance_amount_cents"], note_body["credit_status"]) == (0, "consumed")


@pytest.mark.django_db(transaction=True)
def test_two_invoices_finalizing_at_once_never_consume_the_same_credit_twice(billing):
    customer = billing.customer().customer
    note = credit(one_off(billing, customer, 5000), 5000)  # 5650
    drafts = []
    for _ in range(2):
        invoice = one_off(billing, customer, 4000)  # consumes credit as it is finalized: undo that into a draft
        drafts.append(invoice)
    # Put the credit back and turn the two invoices into drafts of 4520 each, as if just written by a close.
    LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_APPLICATION).delete()
    CreditApplication.objects.all().delete()
    CreditNote.objects.filter(pk=note.pk).update(balance_amount_cents=5650, credit_status="available")
    Invoice.objects.filter(pk__in=[d.pk for d in drafts]).update(
        status="draft", number="", series="", sequential_id=None, credit_notes_amount_cents=0,
        total_amount_cents=4520, payment_status="pending")

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

    threads = [threading.Thread(target=finalize, args=(d.pk,)) for d in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    applied = sorted(Invoice.objects.filter(pk__in=[d.pk for d in drafts]).values_list("credit_notes_amount_cents",
                                                                                        flat=True))
    assert applied == [5650 - 4520, 4520]  # one took 4520, the other the 1130 left
    note.refresh_from_db()
    assert (note.balance_amount_cents, note.credit_status) == (0, "consumed")
    assert sum(CreditApplication.objects.values_list("amount_cents", flat=True)) == 5650

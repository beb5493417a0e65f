"""Voiding an invoice with Lago's `generate_credit_note`: a paid or partly paid invoice is voided by credit notes
(what is still due settled, the requested credit and refund on one note, the rest on a note voided at once), bad
amounts write nothing, voiding twice writes one set of notes, and the balance invariant (I1) holds throughout."""
from __future__ import annotations

import json

import pytest

from apps.core.exceptions import Forbidden, NotAllowed, ValidationFailed
from apps.integrity.invariants import check_all
from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing import services
from apps.invoicing.services import CreditNoteItemIn, credit_note_create, credit_note_estimate, invoice_void
from apps.ledger.models import LedgerPosting
from apps.payments.services import payment_manual_create
from apps.webhooks.models import WebhookEvent
from apps.webhooks.services import webhook_endpoint_create
from tests.integration.balance import balance
from tests.integration.ledger.builders import customer_make, invoice_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid_invoice(service_factory):
    """An Ontario invoice of 10000 + HST 1300 = 11300, with a listening webhook endpoint; pay it with `pay`."""
    service = service_factory("cloud").service
    webhook_endpoint_create(service=service, values={"webhook_url": "https://app.example.com/hooks",
                                                     "event_types": None})
    customer = customer_make(province="ON")
    invoice = invoice_make(service=service, customer=customer, fees_cents=[10000])
    assert invoice.total_amount_cents == 11300
    return invoice


def _pay(invoice: Invoice, cents: int) -> None:
    payment_manual_create(invoice_id=invoice.pk, amount_cents=cents, reference="wire")


def _events(event_type: str) -> list[dict]:
    return [json.loads(bytes(row.body)) for row in WebhookEvent.objects.filter(event_type=event_type).order_by("pk")]


def _i1_holds(invoice: Invoice) -> None:
    flows, owed = balance(invoice.customer_id)
    assert flows == owed
    assert check_all(customer_ids=[invoice.customer_id]) == []  # I1 and every other invariant


def test_a_paid_invoice_voided_with_credit_and_refund_writes_the_requested_note_and_a_voided_rest(paid_invoice):
    _pay(paid_invoice, 11300)
    invoice = invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=3000,
                           refund_amount_cents=2000)
    assert (invoice.status, invoice.voided_with_credit_notes) == ("voided", True)
    requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    # 4425 + HST 575.25 -> 575 = 5000: exactly what was asked, 3000 as credit and 2000 refunded.
    assert (requested.sub_total_excluding_taxes_amount_cents, requested.taxes_amount_cents) == (4425, 575)
    assert (requested.total_amount_cents, requested.credit_amount_cents, requested.refund_amount_cents,
            requested.offset_amount_cents, requested.balance_amount_cents) == (5000, 3000, 2000, 0, 3000)
    assert (requested.credit_status, requested.refund_status) == ("available", "pending")
    # The rest (5575 + the 725 of tax left = 6300) is credited and voided at once: the customer keeps none of it.
    assert (rest.total_amount_cents, rest.taxes_amount_cents, rest.voided_amount_cents, rest.balance_amount_cents,
            rest.credit_status) == (6300, 725, 6300, 0, "voided")
    # Every fee is wholly credited, so the void's reversal has nothing left to reverse.
    kinds = sorted(LedgerPosting.objects.filter(invoice=invoice).values_list("kind", flat=True))
    assert kinds.count("void") == 1
    assert [e["invoice"]["lago_id"] for e in _events("invoice.voided")] == [str(invoice.lago_id)]
    assert sorted(e["credit_note"]["lago_id"] for e in _events("credit_note.created")) == sorted(
        [str(requested.lago_id), str(rest.lago_id)])
    # The customer is owed the credit and the refund, nothing else: 3000 + 2000.
    assert balance(invoice.customer_id) == (-5000, -5000)
    _i1_holds(invoice)


def test_voiding_twice_answers_not_voidable_and_writes_one_set_of_notes(paid_invoice):
    _pay(paid_invoice, 11300)
    invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=1000)
    with pytest.raises(NotAllowed) as again:
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True)
    assert again.value.code == "not_voidable"
    with pytest.raises(ValidationFailed) as again_with_amount:
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=1000)
    assert again_with_amount.value.details == {"credit_refund_amount": ["total_amount_exceeds_invoice_amount"]}
    assert CreditNote.objects.filter(invoice=paid_invoice).count() == 2
    assert len(_events("invoice.voided")) == 1 and len(_events("credit_note.created")) == 2
    _i1_holds(paid_invoice)


@pytest.mark.parametrize(("paid", "credit", "refund"), [
    (11300, 11300, 1),  # more than the invoice
    (11300, 0, 11301),  # a refund above what was paid
    (5000, 4000, 1001),  # more than was paid: the unpaid part is settled, never handed out as credit
    (5000, 0, 5001),
])
def test_amounts_above_what_lago_allows_are_refused_and_nothing_is_written(paid_invoice, paid, credit, refund):
    _pay(paid_invoice, paid)
    before = (WebhookEvent.objects.count(), LedgerPosting.objects.count())
    with pytest.raises(ValidationFailed) as refused:
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=credit,
                     refund_amount_cents=refund)
    assert refused.value.details == {"credit_refund_amount": ["total_amount_exceeds_invoice_amount"]}
    paid_invoice.refresh_from_db()
    assert (paid_invoice.status, paid_invoice.total_paid_amount_cents) == ("finalized", paid)
    assert not CreditNote.objects.filter(invoice=paid_invoice).exists()
    assert (WebhookEvent.objects.count(), LedgerPosting.objects.count()) == before


def test_a_partly_paid_invoice_has_its_due_settled_then_the_credit_then_the_voided_rest(paid_invoice):
    _pay(paid_invoice, 5000)  # 6300 still due
    invoice = invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=1000)
    settle, requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    assert (settle.total_amount_cents, settle.offset_amount_cents, settle.credit_amount_cents) == (6300, 6300, 0)
    assert (requested.total_amount_cents, requested.credit_amount_cents, requested.balance_amount_cents) == (
        1000, 1000, 1000)
    assert (rest.total_amount_cents, rest.voided_amount_cents, rest.credit_status) == (4000, 4000, "voided")
    assert sum(note.sub_total_excluding_taxes_amount_cents for note in (settle, requested, rest)) == 10000
    assert sum(note.taxes_amount_cents for note in (settle, requested, rest)) == 1300
    assert (invoice.status, invoice.total_due_amount_cents) == ("voided", 0)
    assert balance(invoice.customer_id) == (-1000, -1000)
    _i1_holds(invoice)


def test_without_generate_credit_note_a_paid_invoice_is_still_not_voidable(paid_invoice):
    _pay(paid_invoice, 11300)
    with pytest.raises(NotAllowed) as refused:
        invoice_void(invoice_id=paid_invoice.pk, credit_amount_cents=1000)  # amounts alone change nothing (Lago)
    assert refused.value.code == "not_voidable"
    assert not CreditNote.objects.filter(invoice=paid_invoice).exists()


def test_an_invoice_already_credited_voids_only_what_is_left(paid_invoice):
    _pay(paid_invoice, 11300)
    fee = paid_invoice.fees.get()
    credit_note_create(invoice_id=paid_invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=5000)],
                       refund_amount_cents=1000)  # 5650: 1000 refunded, 4650 credit
    with pytest.raises(ValidationFailed):  # 5650 left to credit
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=5651)
    with pytest.raises(ValidationFailed):  # 10300 of the payment not refunded, but only 5650 left to credit
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, refund_amount_cents=5651)
    invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=650,
                 refund_amount_cents=5000)
    notes = list(CreditNote.objects.filter(invoice=paid_invoice).order_by("sequential_id"))
    assert [(n.total_amount_cents, n.credit_amount_cents, n.refund_amount_cents) for n in notes] == [
        (5650, 4650, 1000), (5650, 650, 5000)]  # no rest: all of it credited or refunded
    assert notes[1].taxes_amount_cents == 650 and notes[0].taxes_amount_cents + notes[1].taxes_amount_cents == 1300
    _i1_holds(paid_invoice)


def test_an_invoice_that_took_credit_is_refused_with_feature_unavailable(paid_invoice):
    Invoice.objects.filter(pk=paid_invoice.pk).update(credit_notes_amount_cents=100, total_amount_cents=11200)
    with pytest.raises(Forbidden) as refused:
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True)
    assert refused.value.code == "feature_unavailable"
    assert not CreditNote.objects.filter(invoice=paid_invoice).exists()


def test_an_amount_no_split_of_the_fees_can_total_is_refused_and_nothing_is_written(paid_invoice):
    _pay(paid_invoice, 11300)
    # One fee at 13%: 103 + 13 = 116, 104 + 14 = 118; no whole-cent item totals 117 with its tax.
    with pytest.raises(ValidationFailed) as refused:
        invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=117)
    assert refused.value.details == {"credit_refund_amount": ["value_is_out_of_range"]}
    assert not CreditNote.objects.filter(invoice=paid_invoice).exists()
    assert Invoice.objects.get(pk=paid_invoice.pk).status == "finalized"
    invoice_void(invoice_id=paid_invoice.pk, generate_credit_note=True, credit_amount_cents=118)
    assert CreditNote.objects.filter(invoice=paid_invoice).order_by("sequential_id").first().total_amount_cents == 118


def test_with_two_fees_and_two_taxes_every_amount_is_reached_exactly(service_factory):
    service = service_factory("cloud").service
    invoice = invoice_make(service=service, customer=customer_make(province="QC"), fees_cents=[6000, 4000])
    _pay(invoice, invoice.total_amount_cents)  # 11498
    for target in (*range(1, 300), 5000, 11497, 11498):
        items = services._items_totalling(invoice, target)
        assert credit_note_estimate(invoice=invoice, items=items).total_amount_cents == target, target
    invoice_void(invoice_id=invoice.pk, generate_credit_note=True, credit_amount_cents=117)
    requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    assert (requested.total_amount_cents, rest.total_amount_cents) == (117, 11498 - 117)
    _i1_holds(invoice)


def test_a_partly_paid_invoice_is_not_voided_plainly_and_nothing_is_written(paid_invoice):
    """The payment would be owed to nobody in the hub while Odoo's reversal keeps it as the customer's credit: the
    hub refuses, naming the way that places it (generate_credit_note), and writes nothing."""
    _pay(paid_invoice, 5000)
    before = (WebhookEvent.objects.count(), LedgerPosting.objects.count())
    with pytest.raises(NotAllowed) as refused:
        invoice_void(invoice_id=paid_invoice.pk)
    assert refused.value.code == "not_voidable"
    assert "generate_credit_note" in str(refused.value)
    paid_invoice.refresh_from_db()
    assert (paid_invoice.status, paid_invoice.total_paid_amount_cents) == ("finalized", 5000)
    assert not CreditNote.objects.filter(invoice=paid_invoice).exists()
    assert (WebhookEvent.objects.count(), LedgerPosting.objects.count()) == before
    _i1_holds(paid_invoice)

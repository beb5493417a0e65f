"""The outbox contract other apps rely on: one posting per document, written in their transaction."""
from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import transaction

from apps.ledger.models import LedgerPosting
from apps.ledger.services import PaymentRecord, ledger_posting_create
from tests.integration.ledger.builders import credit_note_make, customer_make, invoice_make

pytestmark = pytest.mark.django_db


def test_posting_per_invoice_is_unique_and_keyed_by_number(service_factory) -> None:
    invoice = invoice_make(service=service_factory().service, customer=customer_make(), fees_cents=[4999])
    first = ledger_posting_create(invoice=invoice)
    second = ledger_posting_create(invoice=invoice)
    assert first.pk == second.pk
    assert first.ref == f"NEXA/{invoice.number}"
    assert (first.kind, first.status) == ("invoice", "pending")
    assert LedgerPosting.objects.filter(invoice=invoice).count() == 1


def test_credit_note_and_payment_postings_are_unique_per_document(service_factory) -> None:
    invoice = invoice_make(service=service_factory().service, customer=customer_make(), fees_cents=[4999])
    note = credit_note_make(invoice=invoice)
    payment = PaymentRecord(invoice=invoice, stripe_id="pi_123", amount_cents=5649, currency="CAD",
                            paid_at=dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc))
    assert ledger_posting_create(credit_note=note).pk == ledger_posting_create(credit_note=note).pk
    paid = ledger_posting_create(payment=payment)
    assert paid.pk == ledger_posting_create(payment=payment).pk
    assert (paid.ref, paid.payment_amount_cents, paid.invoice_id) == ("NEXA/PAY/pi_123", 5649, invoice.pk)
    assert LedgerPosting.objects.count() == 2


def test_draft_invoice_is_refused(service_factory) -> None:
    invoice = invoice_make(service=service_factory().service, customer=customer_make(), fees_cents=[100])
    invoice.number = ""
    with pytest.raises(ValueError):
        ledger_posting_create(invoice=invoice)


@pytest.mark.django_db(transaction=True)
def test_send_task_is_enqueued_on_commit_only_when_enabled(service_factory, settings) -> None:
    invoice = invoice_make(service=service_factory().service, customer=customer_make(), fees_cents=[100])
    with mock.patch("apps.ledger.tasks.ledger_posting_send_task.delay") as delay:
        settings.LEDGER_ENABLED = False
        with transaction.atomic():
            posting = ledger_posting_create(invoice=invoice)
        assert delay.call_count == 0
        posting.delete()
        settings.LEDGER_ENABLED = True
        with transaction.atomic():
            posting = ledger_posting_create(invoice=invoice)
            assert delay.call_count == 0  # not before commit
        delay.assert_called_once_with(posting.pk)
        with transaction.atomic():
            ledger_posting_create(invoice=invoice)  # existing row: no second message
        assert delay.call_count == 1


def test_finalizing_an_invoice_and_issuing_a_credit_note_write_their_postings(service_factory) -> None:
    from apps.invoicing.models import Invoice
    from apps.invoicing.services import CreditNoteItemIn, credit_note_create, invoice_finalize

    invoice = invoice_make(service=service_factory().service, customer=customer_make(), fees_cents=[4999])
    Invoice.objects.filter(pk=invoice.pk).update(status="draft", number="", series="", sequential_id=None)
    finalized = invoice_finalize(invoice_id=invoice.pk)
    invoice_finalize(invoice_id=invoice.pk)
    [posting] = LedgerPosting.objects.filter(invoice=invoice)
    assert (posting.kind, posting.ref) == ("invoice", f"NEXA/{finalized.number}")
    fee = invoice.fees.get()
    note = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=1000)])
    assert LedgerPosting.objects.get(credit_note=note).ref == f"NEXA/{note.number}"

"""A refunded credit note reaches the ledger once: the Stripe refund (localstripe) becomes one `refund` posting,
posted to the Odoo stand-in as an outbound payment on the credit note's out_refund (odoo.md §3.4-3.5)."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction

from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from apps.ledger.models import LedgerPosting
from apps.ledger.odoo_client import OdooConfig, get_odoo_client
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from apps.payments import services as payments
from apps.payments.models import Refund
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.integration.payments.stripe_fixtures import localstripe, save_card, stripe_env  # noqa: F401
from tests.odoo_standin.fixtures import odoo_standin  # noqa: F401

pytestmark = pytest.mark.django_db


def test_refunded_credit_note_posts_one_outbound_payment_on_its_credit_note(
        stripe_env, odoo_standin, service_factory):  # noqa: F811
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="ON", external_id="acme-refund")
    invoice = invoice_make(service=service, customer=customer, fees_cents=[10000])  # 10000 + 1300 HST
    ledger_posting_create(invoice=invoice)  # what invoice_finalize writes
    save_card(stripe_env, customer, "pm_card_visa")
    payments.payment_collect_for_invoice(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.payment_status, invoice.total_paid_amount_cents) == ("succeeded", 11300)

    fee = invoice.fees.get()
    note = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=10000)],
                              refund_amount_cents=5000)  # 5000 back on the card, 6300 left as credit
    refund = payments.credit_note_refund(credit_note_id=note.pk)
    assert (refund.status, refund.amount_cents) == (Refund.Status.SUCCEEDED, 5000)
    assert payments.credit_note_refund(credit_note_id=note.pk).pk == refund.pk  # again: nothing new
    with transaction.atomic():  # the seam itself is idempotent too
        payments._record_for_ledger(refund=refund)
    [posting] = LedgerPosting.objects.filter(kind=LedgerPosting.Kind.REFUND)
    assert (posting.credit_note_id, posting.stripe_payment_id, posting.payment_amount_cents, posting.ref) == \
        (note.pk, refund.stripe_refund_id, 5000, f"NEXA/REF/{refund.stripe_refund_id}")
    assert sorted(LedgerPosting.objects.values_list("kind", flat=True)) == \
        ["credit_note", "invoice", "payment", "refund"]

    client = get_odoo_client(OdooConfig(url=odoo_standin.url, database=odoo_standin.database,
                                        username=odoo_standin.login, api_key=odoo_standin.api_key,
                                        transport="json2", timeout_seconds=2.0))
    # Each document waits for the one it settles (credit note after the earlier payment, refund after the
    # credit note); rounds 30 s apart as the sweeper would run them.
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(4):
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=10, client=client)
    statuses = dict(LedgerPosting.objects.values_list("kind", "status"))
    assert statuses == {"invoice": "posted", "payment": "posted", "credit_note": "posted", "refund": "posted"}
    posting.refresh_from_db()
    note_posting = LedgerPosting.objects.get(kind=LedgerPosting.Kind.CREDIT_NOTE)
    assert (posting.odoo_move_id, posting.odoo_amount_total_cents) == (note_posting.odoo_move_id, 5000)

    [paid_back] = odoo_standin.search_read("account.payment", [["memo", "=", posting.ref]],
                                           ["payment_type", "partner_type", "amount", "invoice_ids", "journal_id"])
    assert (paid_back["payment_type"], paid_back["partner_type"], paid_back["amount"]) == ("outbound", "customer", 50.0)
    assert (paid_back["invoice_ids"], paid_back["journal_id"][1]) == ([note_posting.odoo_move_id], "Stripe")
    [credit] = odoo_standin.search_read("account.move", [["id", "=", note_posting.odoo_move_id]],
                                        ["move_type", "amount_total", "amount_residual", "payment_state"])
    # The invoice was already paid, so the credit note stays open for what was not refunded (6300).
    assert (credit["move_type"], credit["amount_total"], credit["amount_residual"], credit["payment_state"]) == \
        ("out_refund", 113.0, 63.0, "partial")
    assert len(odoo_standin.search_read("account.payment", [["memo", "=", posting.ref]], ["id"])) == 1

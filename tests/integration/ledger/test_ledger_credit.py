"""Customer credit reaches Odoo: an invoice that consumed a credit note is reconciled with it in the stand-in, and
voiding the invoice undoes that, so each Odoo document is open for what the hub says is due on it (issue 15, 1)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing.services import AddOnFee, CreditNoteItemIn, credit_note_create, invoice_create_one_off, invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.odoo_client import OdooConfig, get_odoo_client
from apps.ledger.services import PaymentRecord, ledger_post_pending_batch, ledger_posting_create
from tests.integration.ledger.builders import customer_make, mapping_make
from tests.odoo_standin.fixtures import odoo_standin  # noqa: F401

pytestmark = pytest.mark.django_db


def _send_all(client, rounds: int = 4) -> None:
    """Send the outbox as the sweeper would: rounds a minute apart, so documents waiting for others go next."""
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(rounds):
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=50, client=client)


def _residuals(standin, postings: dict[str, LedgerPosting]) -> dict[str, float]:
    out = {}
    for name, posting in postings.items():
        posting.refresh_from_db()
        [move] = standin.search_read("account.move", [["id", "=", posting.odoo_move_id]], ["amount_residual"])
        out[name] = move["amount_residual"]
    return out


def test_credit_consumed_by_an_invoice_is_reconciled_in_odoo_and_given_back_on_void(odoo_standin,  # noqa: F811
                                                                                  service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="ON", external_id="acme-credit")
    client = get_odoo_client(OdooConfig(url=odoo_standin.url, database=odoo_standin.database,
                                        username=odoo_standin.login, api_key=odoo_standin.api_key,
                                        transport="json2", timeout_seconds=2.0))

    def one_off(cents: int) -> Invoice:
        return invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                      fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])

    paid = one_off(10000)  # 11300, paid in full (the ledger gets the payment as apps.payments records it)
    Invoice.objects.filter(pk=paid.pk).update(total_paid_amount_cents=11300, payment_status="succeeded")
    ledger_posting_create(payment=PaymentRecord(invoice=paid, stripe_id="pi_paid_1", amount_cents=11300,
                                                currency="CAD", paid_at=timezone.now()))
    fee = paid.fees.get()
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=4000)])
    assert note.balance_amount_cents == 4520
    _send_all(client)

    invoice = one_off(10000)  # 11300, of which 4520 is the credit
    assert invoice.total_due_amount_cents == 6780
    [applied] = LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_APPLICATION)
    assert (applied.invoice_id, applied.credit_note_id, applied.payment_amount_cents) == (invoice.pk, note.pk, 4520)
    _send_all(client)

    applied.refresh_from_db()
    assert (applied.status, applied.odoo_amount_total_cents, applied.last_error) == ("posted", 4520, "")
    postings = {"invoice": LedgerPosting.objects.get(kind="invoice", invoice=invoice),
                "note": LedgerPosting.objects.get(kind="credit_note", credit_note=note)}
    # Odoo shows what the hub does: 6780 open on the invoice, nothing left on the credit note.
    assert _residuals(odoo_standin, postings) == {"invoice": 67.8, "note": 0.0}
    _send_all(client)  # sending again changes nothing
    assert len(odoo_standin.search_read("account.partial.reconcile", [], ["id"])) == 1

    invoice_void(invoice_id=invoice.pk)
    note.refresh_from_db()
    assert (note.balance_amount_cents, note.credit_status) == (4520, CreditNote.CreditStatus.AVAILABLE)
    _send_all(client)

    kinds = dict(LedgerPosting.objects.filter(invoice=invoice).values_list("ref", "status"))
    assert set(kinds.values()) == {"posted"} and len(kinds) == 4  # invoice, application, its return, void
    # The void reverses the whole invoice; the credit note is open again for the 4520 the hub gives back.
    assert _residuals(odoo_standin, postings) == {"invoice": 0.0, "note": 45.2}
    assert odoo_standin.search_read("account.partial.reconcile", [], ["id"]) == []

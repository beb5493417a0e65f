"""A credit note's voided credit reaches Odoo (stand-in over real HTTP, both transports): after a credit note, its
partial consumption by a later invoice and the void of what is left, the customer's receivable and each sales tax
in Odoo are the hub's to the cent; the void's out_invoice re-bills the remainder pro rata per tax and is reconciled
with the note's out_refund. Sending the void again changes nothing."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from apps.catalog.taxes import credited_item_taxes
from apps.integrity.invariants import check_all, odoo_receivables_compare
from apps.invoicing.models import CreditNote, Invoice, InvoiceAppliedTax
from apps.invoicing.services import (
    AddOnFee,
    CreditNoteItemIn,
    credit_note_create,
    credit_note_void,
    invoice_create_one_off,
    invoice_void,
)
from apps.ledger.models import LedgerPosting
from apps.ledger.services import PaymentRecord, ledger_post_pending_batch, ledger_posting_create
from apps.payments.models import Payment
from tests.integration.ledger.builders import customer_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401

pytestmark = pytest.mark.django_db


def _send_all(client, rounds: int = 5) -> None:
    """Send the outbox as the sweeper would: rounds a minute apart, so documents waiting for others go next."""
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(rounds):
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=50, client=client)


def _cents(value) -> int:
    return int((Decimal(str(value)) * 100).to_integral_value())


def _odoo_taxes(standin) -> dict[str, int]:
    """Σ credit − debit (cents) of the posted tax lines, per Odoo tax name: the sales tax the company owes."""
    out: dict[str, int] = {}
    for line in standin.search_read("account.move.line", [["tax_line_id", "!=", False],
                                                          ["move_id.state", "=", "posted"]],
                                    ["tax_line_id", "balance"]):
        out[line["tax_line_id"][1]] = out.get(line["tax_line_id"][1], 0) - _cents(line["balance"])
    return out


def _hub_taxes(customer) -> dict[str, int]:
    """The tax the hub says the customer was charged, per tax code: its invoices' less its notes' plus what was
    voided of them (the void posting's lines, read back from the hub's own rows)."""
    out: dict[str, int] = {}
    for code, cents in InvoiceAppliedTax.objects.filter(
            invoice__customer=customer, invoice__status="finalized").values_list("tax_code", "amount_cents"):
        out[code] = out.get(code, 0) + cents
    for note in CreditNote.objects.filter(customer=customer):
        for item in note.items.select_related("fee"):
            for code, cents in credited_item_taxes(item.amount_cents, item.applied_taxes,
                                                   item.fee.applied_taxes).items():
                out[code] = out.get(code, 0) - cents
    return out


def _odoo_state(standin) -> tuple:
    moves = standin.search_read("account.move", [], ["ref", "state", "amount_total", "amount_residual"])
    partials = standin.search_read("account.partial.reconcile", [], ["debit_move_id", "credit_move_id", "amount"])
    return (sorted((m["ref"] or "", m["state"], m["amount_total"], m["amount_residual"]) for m in moves),
            sorted((p["debit_move_id"][0], p["credit_move_id"][0], p["amount"]) for p in partials))


def test_a_partly_consumed_note_voided_brings_odoo_back_to_the_hub(odoo_standin, odoo_client,  # noqa: F811
                                                                   service_factory) -> None:
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="QC", external_id="acme-void")  # GST 5% + QST 9.975%: two taxes per line

    def one_off(cents: int) -> Invoice:
        return invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                      fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])

    paid = one_off(10000)  # GST 500, QST 997.5 -> 998: 11498, paid in full
    assert paid.total_amount_cents == 11498
    Invoice.objects.filter(pk=paid.pk).update(total_paid_amount_cents=11498, payment_status="succeeded")
    payment = Payment.objects.create(invoice=paid, amount_cents=11498, currency="CAD", payment_type="manual",
                                     reference="wire 1", paid_at=timezone.now())
    ledger_posting_create(payment=PaymentRecord(invoice=paid, stripe_id=f"manual-{payment.pk}", amount_cents=11498,
                                                currency="CAD", paid_at=payment.paid_at))
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=paid.fees.get().pk,
                                                                          amount_cents=4000)])
    assert (note.taxes_amount_cents, note.balance_amount_cents) == (599, 4599)  # GST 200, QST 399
    used = one_off(1000)  # GST 50, QST 99.75 -> 100: 1150, all of it taken from the note
    assert used.credit_notes_amount_cents == 1150
    _send_all(odoo_client)
    # Before the void the customer has 34.49 of credit in Odoo as in the hub.
    assert odoo_client.partner_receivables(refs=["acme-void"]) == {("acme-void", "CAD"): -3449}
    assert odoo_receivables_compare(client=odoo_client) == []

    credit_note_void(credit_note_id=note.pk)
    due = one_off(2000)  # GST 100, QST 199.5 -> 200: 2300, nothing left to consume
    assert (due.credit_notes_amount_cents, due.total_amount_cents) == (0, 2300)
    _send_all(odoo_client)

    assert list(LedgerPosting.objects.exclude(status="posted").values_list("ref", "status", "last_error")) == []
    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID)
    # 34.49 of the note's 45.99 (4000 + GST 200 + QST 399), pro rata: 3000 untaxed, GST 150, QST 299.
    assert (void.hub_amount_untaxed_cents, void.hub_amount_tax_cents, void.hub_amount_total_cents) == (3000, 449, 3449)
    assert (void.odoo_amount_untaxed_cents, void.odoo_amount_tax_cents, void.odoo_amount_total_cents) == (
        3000, 449, 3449)
    [move] = odoo_standin.search_read("account.move", [["ref", "=", void.ref]], ["move_type", "amount_residual"])
    assert (move["move_type"], move["amount_residual"]) == ("out_invoice", 0.0)  # reconciled with the note
    note_move = LedgerPosting.objects.get(kind=LedgerPosting.Kind.CREDIT_NOTE, credit_note=note)
    assert odoo_standin.search_read("account.move", [["id", "=", note_move.odoo_move_id]],
                                    ["amount_residual"])[0]["amount_residual"] == 0.0

    # The receivable: only the last invoice is owed, in Odoo as in the hub.
    assert odoo_client.partner_receivables(refs=["acme-void"]) == {("acme-void", "CAD"): 2300}
    assert odoo_receivables_compare(client=odoo_client) == []
    assert check_all(customer_ids=[customer.pk], only=["I1"], odoo_client=odoo_client) == []
    # The taxes: invoices' less the note's plus the voided share (GST 150, QST 299), per tax, to the cent.
    hub = _hub_taxes(customer)
    hub["gst_sale_tax_5"] += 150
    hub["qst_sale_tax_9975"] += 299
    assert hub == {"gst_sale_tax_5": 500 - 200 + 50 + 100 + 150, "qst_sale_tax_9975": 998 - 399 + 100 + 200 + 299}
    assert _odoo_taxes(odoo_standin) == {"5% GST": hub["gst_sale_tax_5"], "9.975% QST": hub["qst_sale_tax_9975"]}

    # The void sent again (a lost answer): looked up by ref and its reconciliation found, nothing posted twice.
    # (Only the void: a credit note's own posting, sent again once credit was applied, reads the later
    # reconciliations as its offset and says mismatch, with or without a void.)
    state = _odoo_state(odoo_standin)
    LedgerPosting.objects.filter(pk=void.pk).update(status="pending", next_attempt_at=None, claimed_until=None)
    _send_all(odoo_client)
    assert _odoo_state(odoo_standin) == state
    assert list(LedgerPosting.objects.exclude(status="posted").values_list("kind", "last_error")) == []


def test_a_void_whose_tax_odoo_would_round_otherwise_carries_the_hubs_tax(odoo_standin, odoo_client,  # noqa: F811
                                                                        service_factory) -> None:
    """Ontario, 13% HST on a 1.00 fee credited in full (1.13), 0.57 refunded and 0.56 kept as credit: voiding the
    0.56 splits it pro rata into 0.50 (49.56) and 6 cents of tax (6.44), where Odoo's own rounding of 13% of 0.50
    would be 7: the line tells Odoo the hub's 6, as coupon lines do."""
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="ON", external_id="acme-round")
    paid = invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                  fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=100)])
    Invoice.objects.filter(pk=paid.pk).update(total_paid_amount_cents=113, payment_status="succeeded")
    ledger_posting_create(payment=PaymentRecord(invoice=paid, stripe_id="pi_round", amount_cents=113,
                                                currency="CAD", paid_at=timezone.now()))
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=paid.fees.get().pk,
                                                                          amount_cents=100)],
                              credit_amount_cents=56, refund_amount_cents=57)
    assert (note.total_amount_cents, note.balance_amount_cents) == (113, 56)
    credit_note_void(credit_note_id=note.pk)
    _send_all(odoo_client)

    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID)
    assert void.status == "posted", void.last_error
    assert (void.hub_amount_untaxed_cents, void.hub_amount_tax_cents, void.hub_amount_total_cents) == (50, 6, 56)
    assert (void.odoo_amount_untaxed_cents, void.odoo_amount_tax_cents, void.odoo_amount_total_cents) == (50, 6, 56)
    # HST: 13 charged, 13 credited, 6 re-billed.
    assert _odoo_taxes(odoo_standin) == {"13% HST": 13 - 13 + 6}
    # Still owed to the customer: the 0.57 refund not paid yet, in Odoo as in the hub.
    assert odoo_client.partner_receivables(refs=["acme-round"]) == {("acme-round", "CAD"): -57}
    assert odoo_receivables_compare(client=odoo_client) == []


def test_credit_a_voided_invoice_gives_back_to_a_voided_note_is_rebilled_too(odoo_standin, odoo_client,  # noqa: F811
                                                                             service_factory) -> None:
    """An invoice that consumed the note, voided after the note's credit was: the credit it gives back is lost as
    well, and its own posting re-bills it, so Odoo still owes what the hub says (nothing) and taxes net out."""
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="QC", external_id="acme-back")

    def one_off(cents: int) -> Invoice:
        return invoice_create_one_off(service=service, customer=customer, currency="CAD",
                                      fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=cents)])

    paid = one_off(10000)
    Invoice.objects.filter(pk=paid.pk).update(total_paid_amount_cents=11498, payment_status="succeeded")
    payment = Payment.objects.create(invoice=paid, amount_cents=11498, currency="CAD", payment_type="manual",
                                     reference="wire 2", paid_at=timezone.now())
    ledger_posting_create(payment=PaymentRecord(invoice=paid, stripe_id=f"manual-{payment.pk}", amount_cents=11498,
                                                currency="CAD", paid_at=payment.paid_at))
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=paid.fees.get().pk,
                                                                          amount_cents=4000)])
    used = one_off(1000)  # 1150 from the note
    Invoice.objects.filter(pk=used.pk).update(payment_status="pending")  # voidable, as if still being collected
    _send_all(odoo_client)
    credit_note_void(credit_note_id=note.pk)
    invoice_void(invoice_id=used.pk)
    _send_all(odoo_client, rounds=7)

    assert list(LedgerPosting.objects.exclude(status="posted").values_list("ref", "status", "last_error")) == []
    voids = LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).order_by("id")
    assert [(p.hub_amount_untaxed_cents, p.hub_amount_tax_cents, p.hub_amount_total_cents) for p in voids] == [
        (3000, 449, 3449), (1000, 150, 1150)]  # together the note's whole 4000 + GST 200 + QST 399
    assert odoo_client.partner_receivables(refs=["acme-back"]) == {("acme-back", "CAD"): 0}
    assert odoo_receivables_compare(client=odoo_client) == []
    # The paid invoice's tax stands: the note's was re-billed whole, the voided invoice's reversed.
    assert _odoo_taxes(odoo_standin) == {"5% GST": 500, "9.975% QST": 998}

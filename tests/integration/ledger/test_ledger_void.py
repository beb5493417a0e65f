"""A voided invoice is reversed in Odoo for what its credit notes had not credited (stand-in over real HTTP)."""
from __future__ import annotations

import pytest

from apps.invoicing.services import invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from tests.integration.ledger.builders import credit_note_make, customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

MOVE_FIELDS = ["id", "state", "move_type", "amount_untaxed", "amount_tax", "amount_total", "reversed_entry_id",
               "amount_residual"]


@pytest.fixture
def service(service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    return service


def _move(standin, ref: str) -> dict:
    [move] = standin.search_read("account.move", [["ref", "=", ref]], MOVE_FIELDS)
    return move


def test_void_reverses_what_the_credit_notes_left_after_them(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(province="ON"), fees_cents=[4999, 1234])
    ledger_posting_create(invoice=invoice)
    note = credit_note_make(invoice=invoice)  # the first fee in full: 4999 + 650 tax
    ledger_posting_create(credit_note=note)

    invoice_void(invoice_id=invoice.pk)  # writes the void posting in its transaction
    result = ledger_post_pending_batch(limit=10, client=odoo_client)  # one batch: invoice, credit note, void

    assert (result.claimed, result.posted) == (3, 3)
    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.VOID)
    assert (void.ref, void.status) == (f"NEXA/VOID/{invoice.number}", "posted")
    # 1234 left on the second fee; HST 13 % of it rounded once: 160.42 -> 160
    assert (void.hub_amount_untaxed_cents, void.hub_amount_tax_cents, void.hub_amount_total_cents) == (1234, 160, 1394)
    assert (void.odoo_amount_untaxed_cents, void.odoo_amount_tax_cents, void.odoo_amount_total_cents) == (1234, 160, 1394)
    move = _move(odoo_standin, f"NEXA/{invoice.number}")
    reversal = _move(odoo_standin, void.ref)
    assert (reversal["move_type"], reversal["state"], reversal["reversed_entry_id"][0]) == ("out_refund", "posted", move["id"])
    assert move["amount_residual"] == 0.0  # nothing left receivable on the voided invoice

    assert ledger_post_pending_batch(limit=10, client=odoo_client).claimed == 0  # posted once
    invoice_void(invoice_id=invoice.pk)  # voiding again changes nothing
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.VOID).count() == 1


def test_void_waits_for_the_invoice_and_its_credit_notes(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[2000, 500])
    note = credit_note_make(invoice=invoice)
    ledger_posting_create(credit_note=note)  # written before the void: must reach Odoo first
    invoice_void(invoice_id=invoice.pk)
    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.VOID)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    void.refresh_from_db()
    assert void.status == "pending" and "waiting for invoice" in void.last_error

    ledger_posting_create(invoice=invoice)
    LedgerPosting.objects.update(next_attempt_at=None)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    assert dict(LedgerPosting.objects.values_list("kind", "status")) == {
        "invoice": "posted", "credit_note": "posted", "void": "posted"}
    assert _move(odoo_standin, void.ref)["amount_untaxed"] == 5.0


def test_a_void_with_everything_credited_has_nothing_to_post(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[2000])
    ledger_posting_create(invoice=invoice)
    ledger_posting_create(credit_note=credit_note_make(invoice=invoice))
    invoice_void(invoice_id=invoice.pk)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    assert dict(LedgerPosting.objects.values_list("kind", "status")) == {
        "invoice": "posted", "credit_note": "posted", "void": "skipped"}
    assert not odoo_standin.search_read("account.move", [["ref", "=", f"NEXA/VOID/{invoice.number}"]], ["id"])


def test_void_waits_for_an_earlier_credit_note_still_unsent(service, odoo_client, odoo_standin) -> None:
    import datetime as dt

    from django.utils import timezone

    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[2000, 500])
    ledger_posting_create(invoice=invoice)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    note_posting = ledger_posting_create(credit_note=credit_note_make(invoice=invoice))
    LedgerPosting.objects.filter(pk=note_posting.pk).update(  # backing off after an Odoo outage, say
        next_attempt_at=timezone.now() + dt.timedelta(hours=1))
    invoice_void(invoice_id=invoice.pk)

    ledger_post_pending_batch(limit=10, client=odoo_client)
    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.VOID)
    assert void.status == "pending" and "credit notes" in void.last_error  # else it would reverse 25.00, not 5.00

    LedgerPosting.objects.update(next_attempt_at=None)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    void.refresh_from_db()
    assert (void.status, void.hub_amount_untaxed_cents, void.odoo_amount_untaxed_cents) == ("posted", 500, 500)

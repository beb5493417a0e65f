"""Credit notes and voids carry the hub's cumulative per-rate tax to Odoo, so its totals match to the cent
(stand-in over real HTTP, both transports; issue 15, defect 6)."""
from __future__ import annotations

import pytest

from apps.invoicing.services import CreditNoteItemIn, credit_note_create, invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.odoo_client import cents_from_wire
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

MOVE_FIELDS = ["amount_untaxed", "amount_tax", "amount_total", "move_type"]


@pytest.fixture
def service(service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    return service


def _credit(invoice, fee, cents):
    return credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)])


def _agree(posting: LedgerPosting) -> tuple[int, int, int]:
    assert posting.status == "posted", posting.last_error
    hub = (posting.hub_amount_untaxed_cents, posting.hub_amount_tax_cents, posting.hub_amount_total_cents)
    assert (posting.odoo_amount_untaxed_cents, posting.odoo_amount_tax_cents, posting.odoo_amount_total_cents) == hub
    return hub


def test_split_credit_notes_post_the_capped_tax_and_odoo_agrees(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(province="ON"), fees_cents=[8, 8])
    first, second = invoice.fees.order_by("id")
    ledger_posting_create(invoice=invoice)
    # 4 + 4: taxes 1 and 0 (Odoo's own rounding of the second line would be 1);
    # 3 + 3 + 2: taxes 0, 1, 0 (Odoo's own rounding of the second line would be 0).
    notes = [_credit(invoice, first, 4), _credit(invoice, first, 4),
             _credit(invoice, second, 3), _credit(invoice, second, 3), _credit(invoice, second, 2)]
    assert [note.taxes_amount_cents for note in notes] == [1, 0, 0, 1, 0]

    # One credit note of an invoice per round: each waits for the earlier ones (Odoo reconciles them in order).
    posted = 0
    for _ in range(6):
        LedgerPosting.objects.filter(status=LedgerPosting.Status.PENDING).update(next_attempt_at=None)
        posted += ledger_post_pending_batch(limit=20, client=odoo_client).posted
    assert posted == 6
    hub = [_agree(p) for p in LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE).order_by("id")]
    assert [tax for _, tax, _ in hub] == [1, 0, 0, 1, 0]
    refunds = odoo_standin.search_read("account.move", [["move_type", "=", "out_refund"]], MOVE_FIELDS)
    assert sum(cents_from_wire(move["amount_tax"], "CAD") for move in refunds) == 2  # the invoice's 2 cents
    assert _agree(LedgerPosting.objects.get(kind=LedgerPosting.Kind.INVOICE)) == (16, 2, 18)
    # Only the lines whose tax differs from Odoo's own rounding carry an amount for Odoo.
    lines = odoo_standin.search_read("account.move.line", [["display_type", "=", "product"]], ["extra_tax_data"])
    assert sum(1 for line in lines if line["extra_tax_data"]) == 2


def test_a_void_after_a_partial_credit_reverses_only_the_tax_left(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(province="ON"), fees_cents=[8])
    ledger_posting_create(invoice=invoice)
    assert _credit(invoice, invoice.fees.get(), 4).taxes_amount_cents == 1
    invoice_void(invoice_id=invoice.pk)

    ledger_post_pending_batch(limit=10, client=odoo_client)

    void = LedgerPosting.objects.get(kind=LedgerPosting.Kind.VOID)
    assert _agree(void) == (4, 0, 4)  # the credit note already took the fee's 1 cent of tax

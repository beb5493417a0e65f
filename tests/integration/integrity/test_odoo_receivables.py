"""I1 against the ledger: once every posting is sent, each customer owes in Odoo what it owes in the hub."""
from __future__ import annotations

import pytest

from apps.integrity.invariants import Violation, check_all, odoo_receivables_compare
from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch
from apps.payments import services as payments
from apps.payments.models import Refund
from tests.integration.ledger.builders import mapping_make
from tests.integration.payments.stripe_fixtures import save_card
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

from .conftest import sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def posted_world(world, stripe_env, odoo_client):
    """March paid and credited (credit kept, and a refund), April unpaid; every posting sent to the stand-in."""
    mapping_make(service=world.billing.service)
    save_card(stripe_env, world.customer, "pm_card_visa")
    assert payments.payment_collect_for_invoice(invoice_id=world.march.pk).status == "succeeded"
    base = world.march.fees.get(fee_type="subscription")
    credit_note_create(invoice_id=world.march.pk, items=[CreditNoteItemIn(fee_id=base.pk, amount_cents=300)])
    refunded = credit_note_create(invoice_id=world.march.pk, items=[CreditNoteItemIn(fee_id=base.pk, amount_cents=200)],
                                  refund_amount_cents=226)
    assert payments.credit_note_refund(credit_note_id=refunded.pk).status == Refund.Status.SUCCEEDED
    for _ in range(5):  # a refund waits for its credit note's move: a few rounds, bounded
        ledger_post_pending_batch(client=odoo_client)
        sql("UPDATE ledger_ledgerposting SET next_attempt_at = NULL WHERE status = 'pending'")
    assert sorted(LedgerPosting.objects.values_list("kind", "status")) == [
        ("credit_note", "posted"), ("credit_note", "posted"), ("invoice", "posted"), ("invoice", "posted"),
        ("payment", "posted"), ("refund", "posted")]
    return world


def test_the_hub_and_odoo_agree_on_what_the_customer_owes(posted_world, odoo_client):
    assert odoo_receivables_compare(client=odoo_client) == []
    assert check_all(odoo_client=odoo_client) == []
    # Not vacuous: April (1752) less the credit kept (339) is owed on both sides.
    assert odoo_client.partner_receivables(refs=[posted_world.customer.external_id]) == {
        (posted_world.customer.external_id, "CAD"): 1752 - 339}


def test_a_hub_balance_odoo_does_not_hold_is_reported(posted_world, odoo_client):
    sql("UPDATE invoicing_creditnote SET balance_amount_cents = balance_amount_cents - 39 WHERE credit_status = 'available'")
    ref = posted_world.customer.external_id

    assert odoo_receivables_compare(client=odoo_client) == [Violation(
        code="I1", rule="odoo_receivable", customer_id=posted_world.customer.pk, currency="CAD", expected=1452,
        actual=1413, reference=ref, message=f"owes 1452 in the hub but 1413 in Odoo (partner ref {ref!r})",
    )]


def test_customers_with_unsent_postings_are_not_compared(posted_world, odoo_client):
    sql("UPDATE invoicing_creditnote SET balance_amount_cents = balance_amount_cents - 39 WHERE credit_status = 'available'")
    sql("UPDATE ledger_ledgerposting SET status = 'pending' WHERE kind = 'payment'")
    assert odoo_receivables_compare(client=odoo_client) == []


def test_customer_credit_from_a_payment_no_invoice_took_agrees_with_odoo(credit_world, odoo_client):
    """April voided while its link was paid: the money is customer credit in the hub, an unmatched payment in Odoo."""
    mapping_make(service=credit_world.billing.service)
    for _ in range(5):  # the void and the customer credit wait for the invoice's move: a few rounds, bounded
        ledger_post_pending_batch(client=odoo_client)
        sql("UPDATE ledger_ledgerposting SET next_attempt_at = NULL WHERE status = 'pending'")
    assert set(LedgerPosting.objects.values_list("kind", "status")) == {
        ("invoice", "posted"), ("void", "posted"), ("customer_credit", "posted")}
    ref = credit_world.customer.external_id
    assert odoo_client.partner_receivables(refs=[ref]) == {(ref, "CAD"): 1865 - 1752}  # March due, less the credit
    assert odoo_receivables_compare(client=odoo_client) == []

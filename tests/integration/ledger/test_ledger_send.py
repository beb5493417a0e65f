"""Posting service against the Odoo stand-in over real HTTP, for both transports."""
from __future__ import annotations

import datetime as dt

import pytest

from apps.ledger.models import LedgerPosting, OdooJournalMapping
from apps.ledger.odoo_client import OdooClient
from apps.ledger.services import (
    PaymentRecord,
    ledger_post_pending_batch,
    ledger_posting_create,
    ledger_posting_retry,
    ledger_posting_send,
)
from tests.integration.ledger.builders import credit_note_make, customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.odoo_standin.server import OdooStandIn

pytestmark = pytest.mark.django_db

MOVE_FIELDS = ["name", "ref", "state", "move_type", "amount_untaxed", "amount_tax", "amount_total",
               "reversed_entry_id", "payment_state", "partner_id", "amount_residual"]


def _moves(standin: OdooStandIn, ref: str) -> list[dict]:
    return standin.search_read("account.move", [["ref", "=", ref]], MOVE_FIELDS)


@pytest.fixture
def service(service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    return service


def test_invoice_credit_note_and_payment_appear_in_odoo_with_links(
        service, odoo_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    customer = customer_make(province="ON", external_id="acme-001")
    invoice = invoice_make(service=service, customer=customer, fees_cents=[4999, 1234])
    assert (invoice.sub_total_excluding_taxes_amount_cents, invoice.taxes_amount_cents) == (6233, 810)
    note = credit_note_make(invoice=invoice)  # first fee: 4999 + 650 tax
    ledger_posting_create(invoice=invoice)
    ledger_posting_create(credit_note=note)
    ledger_posting_create(payment=PaymentRecord(
        invoice=invoice, stripe_id="pi_3Nexa", amount_cents=7043 - 5649, currency="CAD",
        paid_at=dt.datetime(2026, 11, 3, 15, tzinfo=dt.timezone.utc)))

    result = ledger_post_pending_batch(limit=10, client=odoo_client)

    assert (result.claimed, result.posted) == (3, 3)
    inv, cn, pay = LedgerPosting.objects.order_by("id")
    assert [p.status for p in (inv, cn, pay)] == ["posted"] * 3
    assert (inv.odoo_name, inv.odoo_amount_untaxed_cents, inv.odoo_amount_tax_cents, inv.odoo_amount_total_cents) \
        == ("INV/2026/00001", 6233, 810, 7043)
    assert (cn.odoo_name, cn.odoo_amount_total_cents) == ("RINV/2026/00001", 5649)
    assert (pay.odoo_name, pay.odoo_amount_total_cents, pay.odoo_move_id) == ("PSTRIP/2026/00001", 1394, inv.odoo_move_id)
    [move] = _moves(odoo_standin, f"NEXA/{invoice.number}")
    [refund] = _moves(odoo_standin, f"NEXA/{note.number}")
    assert (move["amount_total"], move["state"], move["payment_state"], move["amount_residual"]) == \
        (70.43, "posted", "paid", 0.0)
    assert refund["reversed_entry_id"][0] == move["id"] == inv.odoo_move_id
    assert (refund["move_type"], refund["amount_total"]) == ("out_refund", 56.49)
    [payment] = odoo_standin.search_read("account.payment", [["memo", "=", "NEXA/PAY/pi_3Nexa"]],
                                         ["invoice_ids", "journal_id", "amount", "date"])
    assert (payment["invoice_ids"], payment["journal_id"][1], payment["amount"], payment["date"]) == \
        ([move["id"]], "Stripe", 13.94, "2026-11-03")
    [partner] = odoo_standin.search_read("res.partner", [["ref", "=", "acme-001"]], ["state_id", "id"])
    assert move["partner_id"][0] == partner["id"] and partner["state_id"][1] == "Ontario"
    lines = odoo_standin.search_read("account.move.line", [["move_id", "=", move["id"]], ["display_type", "=", "product"]],
                                     ["product_id", "account_id", "analytic_distribution", "tax_ids"])
    assert {line["product_id"][1] for line in lines} == {"Platform fee"}
    assert {line["account_id"][1] for line in lines} == {"400000 Product Sales"}
    assert all(len(line["analytic_distribution"]) == 1 for line in lines)


def test_sending_twice_or_concurrently_creates_one_move(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[4999])
    posting = ledger_posting_create(invoice=invoice)
    ledger_posting_send(posting_id=posting.pk, client=odoo_client)
    again = ledger_posting_send(posting_id=posting.pk, client=odoo_client)  # a duplicate task
    assert again.claimed == 0
    ledger_posting_retry(posting_id=posting.pk)  # not failed: no-op
    posting.refresh_from_db()
    assert posting.status == "posted"
    # A row whose status was lost (a worker killed after Odoo committed) is found by ref, not re-created.
    LedgerPosting.objects.filter(pk=posting.pk).update(status="pending", odoo_move_id=None, odoo_name="")
    ledger_posting_send(posting_id=posting.pk, client=odoo_client)
    posting.refresh_from_db()
    assert (posting.status, posting.odoo_name) == ("posted", "INV/2026/00001")
    assert len(_moves(odoo_standin, posting.ref)) == 1


def test_mismatched_totals_are_flagged_not_hidden(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[1001], skew_tax_cents=1)
    posting = ledger_posting_create(invoice=invoice)
    ledger_posting_send(posting_id=posting.pk, client=odoo_client)
    posting.refresh_from_db()
    assert posting.status == "mismatch"
    assert (posting.hub_amount_tax_cents, posting.odoo_amount_tax_cents) == (131, 130)
    assert "the hub billed (1001, 131, 1132)" in posting.last_error


def test_batch_posts_many_invoices_in_few_round_trips(service, odoo_client, odoo_standin) -> None:
    invoices = [invoice_make(service=service, customer=customer_make(province="QC" if n % 2 else "ON"),
                             fees_cents=[1000 + n, 333]) for n in range(120)]
    for invoice in invoices:
        ledger_posting_create(invoice=invoice)
    odoo_standin.reset_counts()
    result = ledger_post_pending_batch(limit=500, client=odoo_client)
    calls = odoo_standin.call_count()
    assert (result.claimed, result.posted) == (120, 120)
    # 1 partner search + 3 partner calls + refs + currency + 1 find + 3 creates + 5 posts + 1 read
    assert calls <= 25, calls
    assert odoo_standin.call_count("account.move", "create") == 3
    names = sorted(LedgerPosting.objects.values_list("odoo_name", flat=True))
    assert names == [f"INV/2026/{n:05d}" for n in range(1, 121)]
    assert len(odoo_standin.search_read("account.move", [], ["id"])) == 120


def test_credit_note_waits_for_its_invoice(service, odoo_client, odoo_standin) -> None:
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[2000])
    note = credit_note_make(invoice=invoice)
    note_posting = ledger_posting_create(credit_note=note)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    note_posting.refresh_from_db()
    assert note_posting.status == "pending" and note_posting.next_attempt_at is not None
    assert "waiting for invoice" in note_posting.last_error
    ledger_posting_create(invoice=invoice)
    LedgerPosting.objects.update(next_attempt_at=None)
    ledger_post_pending_batch(limit=10, client=odoo_client)
    assert set(LedgerPosting.objects.values_list("status", flat=True)) == {"posted"}


def test_missing_journal_mapping_fails_with_its_name_and_retries_from_admin(service, odoo_client) -> None:
    OdooJournalMapping.objects.filter(purpose="sales").update(odoo_journal="NOPE")
    posting = ledger_posting_create(invoice=invoice_make(service=service, customer=customer_make(), fees_cents=[10]))
    ledger_posting_send(posting_id=posting.pk, client=odoo_client)
    posting.refresh_from_db()
    assert posting.status == "failed"
    assert "journal sales -> NOPE: not found in Odoo" in posting.last_error
    OdooJournalMapping.objects.filter(purpose="sales").update(odoo_journal="INV")
    assert ledger_posting_retry(posting_id=posting.pk)
    ledger_posting_send(posting_id=posting.pk, client=odoo_client)
    posting.refresh_from_db()
    assert posting.status == "posted"

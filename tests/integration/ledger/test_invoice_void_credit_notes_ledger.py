"""A paid invoice voided with Lago's generate_credit_note (credit X, refund Y) reaches Odoo (stand-in over real HTTP)
without counting anything twice: the requested note and the voided rest note carry it, the void's own reversal has
nothing left (skipped), and the customer's receivable, the revenue account and each sales tax in Odoo are the hub's
to the cent (docs/ledger.md, "Void with credit notes")."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from apps.integrity.invariants import check_all, odoo_receivables_compare
from apps.invoicing.models import CreditNote
from apps.invoicing.services import invoice_void
from apps.ledger.models import LedgerPosting
from apps.ledger.odoo_client import OdooConfig, get_odoo_client
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from apps.payments import services as payments
from apps.payments.models import Refund
from tests.integration.balance import balance
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.integration.payments.stripe_fixtures import localstripe, save_card, stripe_env  # noqa: F401
from tests.odoo_standin.fixtures import odoo_standin  # noqa: F401

pytestmark = pytest.mark.django_db


def _cents(value) -> int:
    return int((Decimal(str(value)) * 100).to_integral_value())


def _odoo_balances(standin) -> tuple[int, dict[str, int]]:
    """(revenue on 400000, {tax name: tax owed}), as Σ credit − debit of the posted lines, in cents."""
    revenue, taxes = 0, {}
    for line in standin.search_read("account.move.line", [["move_id.state", "=", "posted"]],
                                    ["account_id", "tax_line_id", "balance"]):
        if line["tax_line_id"]:
            name = line["tax_line_id"][1]
            taxes[name] = taxes.get(name, 0) - _cents(line["balance"])
        elif line["account_id"][1].startswith("400000"):
            revenue -= _cents(line["balance"])
    return revenue, taxes


def test_a_paid_invoice_voided_with_credit_and_refund_matches_odoo_to_the_cent(
        stripe_env, odoo_standin, service_factory):  # noqa: F811
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="QC", external_id="acme-void-cn")  # GST 5% + QST 9.975%
    invoice = invoice_make(service=service, customer=customer, fees_cents=[6000, 4000])
    # 6000: GST 300, QST 598.5 -> 599; 4000: GST 200, QST 399: 11498
    assert invoice.total_amount_cents == 11498
    ledger_posting_create(invoice=invoice)  # what invoice_finalize writes
    save_card(stripe_env, customer, "pm_card_visa")
    payments.payment_collect_for_invoice(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.payment_status, invoice.total_paid_amount_cents) == ("succeeded", 11498)

    invoice_void(invoice_id=invoice.pk, generate_credit_note=True, credit_amount_cents=3000,
                 refund_amount_cents=2000)
    requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    assert (requested.total_amount_cents, requested.credit_amount_cents, requested.refund_amount_cents) == (
        5000, 3000, 2000)
    assert rest.total_amount_cents == 6498 and rest.credit_status == "voided"
    refund = payments.credit_note_refund(credit_note_id=requested.pk)  # the on-commit task's call
    assert (refund.status, refund.amount_cents) == (Refund.Status.SUCCEEDED, 2000)

    client = get_odoo_client(OdooConfig(url=odoo_standin.url, database=odoo_standin.database,
                                        username=odoo_standin.login, api_key=odoo_standin.api_key,
                                        transport="json2", timeout_seconds=2.0))
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(6):  # documents wait for the ones they settle: rounds a minute apart, as the sweeper
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=50, client=client)

    statuses = sorted(LedgerPosting.objects.values_list("kind", "status"))
    assert statuses == sorted([("invoice", "posted"), ("payment", "posted"), ("credit_note", "posted"),
                               ("credit_note", "posted"), ("credit_note_void", "posted"), ("refund", "posted"),
                               ("void", "skipped")])  # nothing left for the reversal: never reversed twice

    # Receivable: the customer is owed the 3000 of credit, as the hub says (its refund is paid).
    assert client.partner_receivables(refs=["acme-void-cn"]) == {("acme-void-cn", "CAD"): -3000}
    assert balance(customer.pk) == (-3000, -3000)
    assert odoo_receivables_compare(client=client) == []
    assert check_all(customer_ids=[customer.pk], only=["I1"], odoo_client=client) == []

    # Revenue and taxes: the invoice less the requested note (the rest note's credit is re-billed by its void).
    fees = {(row.sub_total_excluding_taxes_amount_cents, row.taxes_amount_cents) for row in (requested,)}
    [(requested_untaxed, requested_tax)] = fees
    assert requested_untaxed + requested_tax == 5000
    requested_taxes: dict[str, int] = {}
    for item in requested.items.all():
        for tax in item.applied_taxes:
            requested_taxes[tax["code"]] = requested_taxes.get(tax["code"], 0) + tax["amount_cents"]
    revenue, taxes = _odoo_balances(odoo_standin)
    assert revenue == 10000 - requested_untaxed
    assert taxes == {"5% GST": 500 - requested_taxes["gst_sale_tax_5"],
                     "9.975% QST": 998 - requested_taxes["qst_sale_tax_9975"]}
    assert sum(taxes.values()) == 1498 - requested_tax


def test_a_partly_paid_invoice_voided_with_credit_matches_odoo_to_the_cent(odoo_standin, service_factory):  # noqa: F811
    service = service_factory("cloud").service
    mapping_make(service=service)
    customer = customer_make(province="QC", external_id="acme-void-part")
    invoice = invoice_make(service=service, customer=customer, fees_cents=[6000, 4000])  # 11498
    ledger_posting_create(invoice=invoice)
    payments.payment_manual_create(invoice_id=invoice.pk, amount_cents=5000, reference="wire")  # 6498 due

    invoice_void(invoice_id=invoice.pk, generate_credit_note=True, credit_amount_cents=1000)
    settle, requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    assert (settle.total_amount_cents, settle.offset_amount_cents) == (6498, 6498)
    assert (requested.total_amount_cents, requested.credit_amount_cents) == (1000, 1000)
    assert (rest.total_amount_cents, rest.credit_status) == (4000, "voided")

    client = get_odoo_client(OdooConfig(url=odoo_standin.url, database=odoo_standin.database,
                                        username=odoo_standin.login, api_key=odoo_standin.api_key,
                                        transport="xmlrpc", timeout_seconds=2.0))
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(6):
        with time_machine.travel(now + dt.timedelta(seconds=60 * round_), tick=False):
            ledger_post_pending_batch(limit=50, client=client)
    assert list(LedgerPosting.objects.exclude(status="posted").values_list("kind", "status")) == [("void", "skipped")]

    assert client.partner_receivables(refs=["acme-void-part"]) == {("acme-void-part", "CAD"): -1000}
    assert balance(customer.pk) == (-1000, -1000)
    assert odoo_receivables_compare(client=client) == []
    assert check_all(customer_ids=[customer.pk], only=["I1"], odoo_client=client) == []
    kept_taxes: dict[str, int] = {"gst_sale_tax_5": 500, "qst_sale_tax_9975": 998}
    for note in (settle, requested):
        for item in note.items.all():
            for tax in item.applied_taxes:
                kept_taxes[tax["code"]] -= tax["amount_cents"]
    revenue, taxes = _odoo_balances(odoo_standin)
    assert revenue == 10000 - settle.sub_total_excluding_taxes_amount_cents - requested.sub_total_excluding_taxes_amount_cents
    assert taxes == {"5% GST": kept_taxes["gst_sale_tax_5"], "9.975% QST": kept_taxes["qst_sale_tax_9975"]}
    assert revenue + sum(taxes.values()) == 11498 - 6498 - 1000  # what was paid and is neither credit nor refund

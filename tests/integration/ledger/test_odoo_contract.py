"""Contract of apps.ledger.odoo_client against the Odoo 19 stand-in, over real HTTP, for both transports."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.core.money import from_minor_units
from apps.catalog.taxes import invoice_totals
from tests.tax_rates import rates as province_rates
from apps.ledger.odoo_client import (
    MoveDraft,
    MoveLineDraft,
    OdooClient,
    OdooConfig,
    OdooError,
    OdooUnavailable,
    get_odoo_client,
)
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.odoo_standin.server import OdooStandIn

INVOICE_DATE = date(2026, 10, 31)


def _partner(client: OdooClient, province: str = "ON", ref: str = "cust-0001") -> int:
    return client.partner_find_or_create(ref=ref, name=f"Customer {ref}", email=f"{ref}@example.com",
                                         country_code="CA", state_code=province, vat="123456789RT0001")


def _draft(client: OdooClient, *, ref: str, partner_id: int, fees_cents: list[int], province: str = "ON",
           move_type: str = "out_invoice", reversed_entry_id: int | None = None) -> MoveDraft:
    """Build a move the way the ledger service will: one line per fee, quantity 1, price = fee."""
    rates = province_rates(province)
    xml_ids = [f"account.1_{rate.code}" for rate in rates]
    tax_ids = client.refs_resolve(model="account.tax", refs=xml_ids)
    journal_id = client.refs_resolve(model="account.journal", refs=["account.1_sale"])["account.1_sale"]
    lines = tuple(
        MoveLineDraft(name=f"fee {n}", price_unit=from_minor_units(cents, "CAD"),
                      tax_ids=tuple(tax_ids[x] for x in xml_ids))
        for n, cents in enumerate(fees_cents)
    )
    return MoveDraft(ref=ref, move_type=move_type, partner_id=partner_id, invoice_date=INVOICE_DATE,
                     currency="CAD", journal_id=journal_id, lines=lines, reversed_entry_id=reversed_entry_id)


def _post_one(client: OdooClient, draft: MoveDraft) -> int:
    [move_id] = client.moves_create(moves=[draft])
    client.moves_post(ids=[move_id])
    return move_id


def test_check_connection_reports_version_and_uid(odoo_client: OdooClient) -> None:
    info = odoo_client.check_connection()
    assert info.version == "19.0"
    assert info.uid == 2


def test_bad_api_key_raises_permanent_error_with_odoo_message(odoo_config: OdooConfig) -> None:
    client = get_odoo_client(OdooConfig(**{**odoo_config.__dict__, "api_key": "wrong-key"}))
    with pytest.raises(OdooError) as caught:
        client.check_connection()
    assert not isinstance(caught.value, OdooUnavailable)
    expected = "Invalid apikey" if odoo_config.transport == "json2" else "Access Denied"
    assert expected in caught.value.message


def test_partner_find_or_create_is_idempotent(odoo_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    first = _partner(odoo_client, "QC")
    second = _partner(odoo_client, "QC")
    assert first == second
    [partner] = odoo_standin.search_read("res.partner", [["ref", "=", "cust-0001"]],
                                         ["state_id", "country_id", "vat", "is_company"])
    assert partner["state_id"][1] == "Quebec"
    assert partner["country_id"][1] == "Canada"
    assert partner["vat"] == "123456789RT0001"
    assert partner["is_company"] is True


@pytest.mark.parametrize(
    ("province", "fees_cents"),
    [
        ("ON", [4321, 4999, 770]),  # odoo.md §5.5 example A: tax 13.12, total 114.02
        ("ON", [10, 10, 10, 10, 10, 4999]),  # example B: per-line rounding gives 6.55, not 6.56
        ("QC", [10000, 333, 4999]),  # GST and QST rounded separately per line
    ],
)
def test_posted_invoice_gets_odoo_name_and_hub_totals(odoo_client: OdooClient, province: str,
                                                      fees_cents: list[int]) -> None:
    partner_id = _partner(odoo_client, province)
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/NEXA-2026-000001", partner_id=partner_id,
                                            fees_cents=fees_cents, province=province))
    [move] = odoo_client.moves_read(ids=[move_id])
    hub = invoice_totals([(cents, province_rates(province)) for cents in fees_cents])
    assert (move.name, move.state, move.move_type) == ("INV/2026/00001", "posted", "out_invoice")
    assert move.amount_untaxed_cents == hub.untaxed_amount_cents
    assert move.amount_tax_cents == hub.tax_amount_cents
    assert move.amount_total_cents == hub.total_amount_cents
    assert (move.payment_state, move.amount_residual_cents) == ("not_paid", hub.total_amount_cents)


def test_worked_example_a_totals_are_exact(odoo_client: OdooClient) -> None:
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/A", partner_id=_partner(odoo_client),
                                            fees_cents=[4321, 4999, 770]))
    [move] = odoo_client.moves_read(ids=[move_id])
    assert (move.amount_untaxed_cents, move.amount_tax_cents, move.amount_total_cents) == (10090, 1312, 11402)


def test_qst_group_tax_equals_its_children(odoo_client: OdooClient) -> None:
    partner_id = _partner(odoo_client, "QC")
    group = odoo_client.refs_resolve(model="account.tax", refs=["account.1_gstqst_sale_tax_14975"])
    draft = _draft(odoo_client, ref="NEXA/G", partner_id=partner_id, fees_cents=[10000], province="QC")
    grouped = MoveDraft(**{**draft.__dict__, "lines": (MoveLineDraft(
        name="fee", price_unit=Decimal("100.00"), tax_ids=(group["account.1_gstqst_sale_tax_14975"],)),)})
    [by_children, by_group] = odoo_client.moves_read(ids=odoo_client.moves_create(moves=[draft, grouped]))
    assert by_children.amount_tax_cents == by_group.amount_tax_cents == 1498  # 5.00 + 9.975 -> 9.98
    assert by_group.amount_total_cents == 11498


def test_posted_move_refuses_writes_to_readonly_fields(odoo_client: OdooClient) -> None:
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/W", partner_id=_partner(odoo_client),
                                            fees_cents=[1000]))
    other = _partner(odoo_client, ref="cust-0002")
    # The adapter exposes no write; the raw call checks the stand-in's invariant and the error mapping.
    with pytest.raises(OdooError) as caught:
        odoo_client._call("account.move", "write", ids=[move_id], vals={"partner_id": other})
    assert not isinstance(caught.value, OdooUnavailable)
    assert caught.value.message == "You cannot modify the following readonly fields on a posted move: partner_id"
    [move] = odoo_client.moves_read(ids=[move_id])
    assert move.partner_id == _partner(odoo_client)


def test_posting_twice_is_refused_with_odoo_message(odoo_client: OdooClient) -> None:
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/P", partner_id=_partner(odoo_client),
                                            fees_cents=[1000]))
    with pytest.raises(OdooError, match=r"The entry INV/2026/00001 \(id \d+\) must be in draft\."):
        odoo_client.moves_post(ids=[move_id])


def test_refund_is_linked_to_its_invoice_and_reverses_it(odoo_client: OdooClient) -> None:
    partner_id = _partner(odoo_client)
    invoice_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/NEXA-2026-000002", partner_id=partner_id,
                                               fees_cents=[4999]))
    refund_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/CN-2026-000001", partner_id=partner_id,
                                              fees_cents=[4999], move_type="out_refund",
                                              reversed_entry_id=invoice_id))
    invoice, refund = odoo_client.moves_read(ids=[invoice_id, refund_id])
    assert (refund.name, refund.move_type, refund.reversed_entry_id) == ("RINV/2026/00001", "out_refund", invoice_id)
    assert refund.amount_total_cents == invoice.amount_total_cents == 5649
    assert (invoice.payment_state, invoice.amount_residual_cents) == ("reversed", 0)
    assert refund.payment_state == "paid"


def test_a_refund_reconciles_with_its_invoice_for_what_both_have_open(odoo_client: OdooClient) -> None:
    """C-MOVE `_post` -> `_reconcile_reversed_moves`: as much as both receivables have open, on any post."""
    partner_id = _partner(odoo_client)
    invoice_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/I1", partner_id=partner_id, fees_cents=[4999]))
    small = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/I1-CN1", partner_id=partner_id, fees_cents=[2000],
                                          move_type="out_refund", reversed_entry_id=invoice_id))
    big = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/I1-CN2", partner_id=partner_id, fees_cents=[4000],
                                        move_type="out_refund", reversed_entry_id=invoice_id))
    invoice, first, second = odoo_client.moves_read(ids=[invoice_id, small, big])
    assert (invoice.amount_residual_cents, invoice.payment_state) == (0, "reversed")  # 5649 - 2260 - 3389
    assert (first.amount_residual_cents, second.amount_residual_cents) == (0, 4520 - 3389)


def test_refunds_posted_together_pair_with_their_deduplicated_invoices_by_position(odoo_client: OdooClient) -> None:
    """`draft_reverse_moves.reversed_entry_id` is a recordset (de-duplicated), zipped with the refunds: two
    refunds of one invoice in one call reconcile only the first; an invoice posted in the same call is not open."""
    partner_id = _partner(odoo_client)
    invoice_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/I2", partner_id=partner_id, fees_cents=[4999]))
    refunds = odoo_client.moves_create(moves=[
        _draft(odoo_client, ref=f"NEXA/I2-CN{n}", partner_id=partner_id, fees_cents=[1000], move_type="out_refund",
               reversed_entry_id=invoice_id) for n in (1, 2)])
    odoo_client.moves_post(ids=refunds)
    invoice, first, second = odoo_client.moves_read(ids=[invoice_id, *refunds])
    assert (invoice.amount_residual_cents, first.amount_residual_cents, second.amount_residual_cents) == \
        (5649 - 1130, 0, 1130)

    [draft_invoice] = odoo_client.moves_create(moves=[_draft(odoo_client, ref="NEXA/I3", partner_id=partner_id,
                                                             fees_cents=[1000])])
    [refund] = odoo_client.moves_create(moves=[_draft(odoo_client, ref="NEXA/I3-CN1", partner_id=partner_id,
                                                      fees_cents=[1000], move_type="out_refund",
                                                      reversed_entry_id=draft_invoice)])
    odoo_client.moves_post(ids=[draft_invoice, refund])
    assert [move.amount_residual_cents for move in odoo_client.moves_read(ids=[draft_invoice, refund])] == [1130, 1130]


def test_registered_payment_marks_invoice_paid_and_is_findable(odoo_client: OdooClient) -> None:
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/NEXA-2026-000003",
                                            partner_id=_partner(odoo_client), fees_cents=[4321, 4999, 770]))
    bank = odoo_client.refs_resolve(model="account.journal", refs=["BNK1"])["BNK1"]
    assert odoo_client.payment_find(ref="pi_3Q0001") is None
    payment_id = odoo_client.payment_register(move_id=move_id, amount_cents=11402, currency="CAD",
                                              journal_id=bank, date=date(2026, 11, 2), ref="pi_3Q0001")
    [move] = odoo_client.moves_read(ids=[move_id])
    assert (move.payment_state, move.amount_residual_cents) == ("paid", 0)
    assert odoo_client.payment_find(ref="pi_3Q0001") == payment_id


def test_partial_payment_leaves_partial_state(odoo_client: OdooClient) -> None:
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/PP", partner_id=_partner(odoo_client),
                                            fees_cents=[10000]))
    bank = odoo_client.refs_resolve(model="account.journal", refs=["BNK1"])["BNK1"]
    odoo_client.payment_register(move_id=move_id, amount_cents=5000, currency="CAD", journal_id=bank,
                                 date=date(2026, 11, 2), ref="pi_partial")
    [move] = odoo_client.moves_read(ids=[move_id])
    assert (move.payment_state, move.amount_residual_cents) == ("partial", 6300)


def test_enterprise_accounting_shows_in_payment_until_matched(odoo_client: OdooClient,
                                                              odoo_standin: OdooStandIn) -> None:
    odoo_standin.store.in_payment_mode = True
    move_id = _post_one(odoo_client, _draft(odoo_client, ref="NEXA/IP", partner_id=_partner(odoo_client),
                                            fees_cents=[10000]))
    stripe = odoo_client.refs_resolve(model="account.journal", refs=["STRIP"])["STRIP"]  # clearing account
    odoo_client.payment_register(move_id=move_id, amount_cents=11300, currency="CAD", journal_id=stripe,
                                 date=date(2026, 11, 2), ref="pi_stripe")
    [move] = odoo_client.moves_read(ids=[move_id])
    assert (move.payment_state, move.amount_residual_cents) == ("in_payment", 0)


def test_payment_on_a_draft_move_is_refused(odoo_client: OdooClient) -> None:
    [move_id] = odoo_client.moves_create(moves=[_draft(odoo_client, ref="NEXA/D", partner_id=_partner(odoo_client),
                                                       fees_cents=[1000])])
    with pytest.raises(OdooError, match="You can only register payment for posted journal entries."):
        odoo_client.payment_register(move_id=move_id, amount_cents=1130, currency="CAD", journal_id=2,
                                     date=date(2026, 11, 2), ref="pi_draft")


def test_batch_of_50_moves_uses_a_constant_number_of_round_trips(odoo_client: OdooClient,
                                                                 odoo_standin: OdooStandIn) -> None:
    partner_id = _partner(odoo_client)
    drafts = [_draft(odoo_client, ref=f"NEXA/NEXA-2026-{n:06d}", partner_id=partner_id, fees_cents=[1000 + n])
              for n in range(50)]
    odoo_client.currency_id(code="CAD")  # warm the per-client cache, as a long-lived task would
    odoo_standin.reset_counts()

    ids = odoo_client.moves_create(moves=drafts)
    odoo_client.moves_post(ids=ids)
    found = odoo_client.moves_find(refs=[d.ref for d in drafts])

    assert odoo_standin.call_count("account.move", "create") == 1
    assert odoo_standin.call_count("account.move", "action_post") == 2  # post_batch_size 25
    assert odoo_standin.call_count("account.move", "search_read") == 1
    assert odoo_standin.call_count() - odoo_standin.call_count("common") == 4
    assert [found[d.ref].id for d in drafts] == ids
    assert [found[d.ref].name for d in drafts] == [f"INV/2026/{n:05d}" for n in range(1, 51)]


def test_refs_exist_reports_missing_ids_xml_ids_and_codes(odoo_client: OdooClient) -> None:
    missing = odoo_client.refs_exist(model="account.tax",
                                     refs=["account.1_hst_sale_tax_13", "account.1_hst_sale_tax_99", 2, 9999])
    assert missing == ["account.1_hst_sale_tax_99", 9999]
    assert odoo_client.refs_exist(model="account.account", refs=["400000", "121000", "999999"]) == ["999999"]
    assert odoo_client.refs_exist(model="account.journal", refs=["INV", "account.1_bank"]) == []
    assert odoo_client.refs_exist(model="product.product", refs=["API", "NOPE"]) == ["NOPE"]
    assert odoo_client.refs_exist(model="account.analytic.account", refs=["SAAS", "PS", 77]) == [77]

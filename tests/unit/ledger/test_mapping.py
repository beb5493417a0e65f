"""apps.ledger.mapping: hub document -> Odoo move draft, no DB, no network."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.ledger import mapping
from apps.ledger.mapping import DocumentIn, LineIn, MappingMissing, MappingRefs, ProductRef

REFS = MappingRefs(
    products={(1, "default", None): ProductRef("PLATFORM", "400000"), (1, "metric", 7): ProductRef("API"),
              (1, "plan", 3): ProductRef("SEAT", "#12")},
    taxes={"hst_sale_tax_13": "account.1_hst_sale_tax_13"}, analytics={1: "SAAS"}, sales_journal="INV")
RESOLVED = {mapping.PRODUCT: {"PLATFORM": 31, "API": 32, "SEAT": 33}, mapping.ACCOUNT: {"400000": 41, "#12": 12},
            mapping.TAX: {"account.1_hst_sale_tax_13": 51}, mapping.ANALYTIC: {"SAAS": 61}, mapping.JOURNAL: {"INV": 71}}


def _doc(*lines: LineIn, move_type: str = "out_invoice") -> DocumentIn:
    return DocumentIn(ref="NEXA/NEXA-2026-000001", move_type=move_type, number="NEXA-2026-000001",
                      issuing_date=date(2026, 10, 31), currency="CAD", lines=lines, reversed_entry_id=None)


def test_lines_take_metric_then_plan_then_service_default_product() -> None:
    draft = mapping.move_draft(_doc(
        LineIn("usage", 1234, 1, metric_id=7, tax_codes=("hst_sale_tax_13",)),
        LineIn("plan", 4999, 1, plan_id=3, tax_codes=("hst_sale_tax_13",)),
        LineIn("add-on", 1, 1, metric_id=99)), partner_id=9, refs=REFS, resolved=RESOLVED)
    assert [(line.product_id, line.account_id) for line in draft.lines] == [(32, None), (33, 12), (31, 41)]
    assert [line.price_unit for line in draft.lines] == [Decimal("12.34"), Decimal("49.99"), Decimal("0.01")]
    assert draft.lines[0].tax_ids == (51,) and draft.lines[2].tax_ids == ()
    assert draft.lines[0].analytic_distribution == {61: Decimal(100)}
    assert (draft.journal_id, draft.partner_id, draft.invoice_origin) == (71, 9, "NEXA-2026-000001")


def test_zero_lines_are_left_out() -> None:
    draft = mapping.move_draft(_doc(LineIn("free", 0, 1), LineIn("paid", 5, 1)), partner_id=9, refs=REFS,
                               resolved=RESOLVED)
    assert [line.name for line in draft.lines] == ["paid"]


def test_every_missing_mapping_is_named_at_once() -> None:
    refs = MappingRefs(products={(1, "default", None): ProductRef("GONE")}, taxes={}, sales_journal="INV")
    with pytest.raises(MappingMissing) as caught:
        mapping.move_draft(_doc(LineIn("a", 100, 1, service_code="cloud", tax_codes=("qst_sale_tax_9975",)),
                                LineIn("b", 100, 2, service_code="crm")), partner_id=9, refs=refs, resolved=RESOLVED)
    assert caught.value.problems == [
        "product for service cloud -> GONE: not found in Odoo (product.product)",
        "tax qst_sale_tax_9975: no Odoo tax mapped",
        "product for service crm (line 'b'): no Odoo product mapped",
    ]


def test_refs_needed_lists_only_what_the_documents_use() -> None:
    needed = mapping.refs_needed(REFS, [_doc(LineIn("usage", 1, 1, metric_id=7, tax_codes=("hst_sale_tax_13",)))])
    assert needed == {mapping.PRODUCT: {"API"}, mapping.ACCOUNT: set(), mapping.TAX: {"account.1_hst_sale_tax_13"},
                      mapping.JOURNAL: {"INV"}, mapping.ANALYTIC: {"SAAS"}}


@pytest.mark.parametrize("value, expected", [("#42", 42), ("400000", "400000"), ("account.1_sale", "account.1_sale"),
                                             (" INV ", "INV"), ("#x", "#x")])
def test_odoo_ref_reads_hash_ids_and_keeps_digit_codes(value: str, expected: int | str) -> None:
    assert mapping.odoo_ref(value) == expected


def test_backoff_doubles_and_is_capped() -> None:
    from apps.ledger.services import backoff_seconds

    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_seconds(30) == 6 * 3600


def test_account_purpose_lines_post_to_the_mapped_account_without_product_or_analytic() -> None:
    """Wallet credit (issue 20): the prepayment / prepaid-discount account instead of the service's product."""
    refs = MappingRefs(products=REFS.products, taxes=REFS.taxes, analytics=REFS.analytics, sales_journal="INV",
                       accounts={"prepayment": "298000", "prepaid_discount": ""})
    resolved = {**RESOLVED, mapping.ACCOUNT: {**RESOLVED[mapping.ACCOUNT], "298000": 298}}
    wallet = LineIn("credits", 8000, 1, service_code="cloud", account_purpose="prepayment")
    assert mapping.refs_needed(refs, [_doc(wallet)])[mapping.ACCOUNT] == {"298000"}
    assert mapping.refs_needed(refs, [_doc(wallet)])[mapping.PRODUCT] == set()
    [line] = mapping.move_draft(_doc(wallet), partner_id=9, refs=refs, resolved=resolved).lines
    assert (line.product_id, line.account_id, line.tax_ids, line.analytic_distribution) == (None, 298, (), None)
    with pytest.raises(MappingMissing) as caught:
        mapping.move_draft(_doc(wallet, LineIn("granted", 100, 1, account_purpose="prepaid_discount")),
                           partner_id=9, refs=refs, resolved=resolved)
    assert caught.value.problems == ["account prepaid_discount: no Odoo account mapped"]
    with pytest.raises(MappingMissing) as caught:
        mapping.move_draft(_doc(wallet), partner_id=9, refs=refs, resolved=RESOLVED)  # not in Odoo
    assert caught.value.problems == ["account prepayment -> 298000: not found in Odoo (account.account)"]

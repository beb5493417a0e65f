"""A credit-note line whose hub tax is not the rate rounded on the line tells Odoo its amount per tax (no DB)."""
from __future__ import annotations

import xmlrpc.client
from datetime import date
from decimal import Decimal

from apps.ledger import mapping
from apps.ledger.mapping import DocumentIn, LineIn, MappingRefs, ProductRef
from apps.ledger.odoo_client import MoveDraft, MoveLineDraft, OdooClient, OdooConfig

REFS = MappingRefs(products={(1, "default", None): ProductRef("PLATFORM")},
                   taxes={"gst_sale_tax_5": "account.1_gst_sale_tax_5", "qst_sale_tax_9975": "account.1_qst"},
                   sales_journal="INV")
RESOLVED = {mapping.PRODUCT: {"PLATFORM": 31}, mapping.TAX: {"account.1_gst_sale_tax_5": 51, "account.1_qst": 52},
            mapping.JOURNAL: {"INV": 71}}
QC = ("gst_sale_tax_5", "qst_sale_tax_9975")


def test_manual_tax_cents_become_odoo_tax_ids_and_major_units() -> None:
    document = DocumentIn(ref="NEXA/CN", move_type="out_refund", number="CN", issuing_date=date(2026, 10, 31),
                          currency="CAD", lines=(
                              LineIn("capped", 5, 1, tax_codes=QC, manual_tax_cents=(("gst_sale_tax_5", 0),
                                                                                     ("qst_sale_tax_9975", 1))),
                              LineIn("plain", 5, 1, tax_codes=QC)))
    draft = mapping.move_draft(document, partner_id=9, refs=REFS, resolved=RESOLVED)
    assert draft.lines[0].manual_tax_amounts == ((51, Decimal("0.00")), (52, Decimal("0.01")))
    assert draft.lines[1].manual_tax_amounts == ()


def test_manual_amounts_travel_in_extra_tax_data_only_on_their_line() -> None:
    client = OdooClient(OdooConfig(url="http://odoo.invalid", database="nexa", username="bot", api_key="k"))
    client._currency_ids["CAD"] = 3
    draft = MoveDraft(ref="NEXA/CN", move_type="out_refund", partner_id=42, invoice_date=date(2026, 11, 5),
                      currency="CAD", journal_id=1, lines=(
                          MoveLineDraft(name="capped", price_unit=Decimal("0.04"), tax_ids=(17,),
                                        manual_tax_amounts=((17, Decimal("0.00")),)),
                          MoveLineDraft(name="plain", price_unit=Decimal("0.04"), tax_ids=(17,))))
    vals = client._move_vals(draft)
    capped, plain = (command[2] for command in vals["invoice_line_ids"])
    assert capped["extra_tax_data"] == {"currency_id": 3, "price_unit": 0.04, "quantity": 1.0, "discount": 0.0,
                                        "manual_tax_amounts": {"17": {"tax_amount_currency": 0.0}}}
    assert "extra_tax_data" not in plain
    xmlrpc.client.dumps((vals,), allow_none=False)  # string keys and floats only

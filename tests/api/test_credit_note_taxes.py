"""Credit-note tax through the API: the estimate is what the note credits, capped at the fee's tax (issue 15, 6)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_estimate_and_note_credit_an_8_cent_fee_s_1_cent_of_tax_once(cloud) -> None:
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    cloud.post("/api/v1/add_ons", {"add_on": {"code": "tokens", "name": "Tokens", "amount_cents": 8,
                                              "amount_currency": "CAD"}}, format="json")
    invoice = cloud.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "currency": "CAD", "fees": [
        {"add_on_code": "tokens", "units": "1", "unit_amount_cents": 8}]}}, format="json").json()["invoice"]
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"]) == (8, 1)
    payload = {"credit_note": {"invoice_id": invoice["lago_id"], "reason": "other",
                               "items": [{"fee_id": invoice["fees"][0]["lago_id"], "amount_cents": 4}]}}

    credited = []
    for _ in range(2):
        estimate = cloud.post("/api/v1/credit_notes/estimate", payload, format="json").json()["estimated_credit_note"]
        note = cloud.post("/api/v1/credit_notes", payload, format="json").json()["credit_note"]
        assert (estimate["taxes_amount_cents"], estimate["max_creditable_amount_cents"]) == (
            note["taxes_amount_cents"], note["total_amount_cents"])
        credited.append(note["taxes_amount_cents"])
    assert credited == [1, 0]

    over = cloud.post("/api/v1/credit_notes/estimate", payload, format="json")
    assert over.status_code == 422
    assert over.json()["error_details"] == {"items[0].amount_cents": ["higher_than_remaining_fee_amount"]}

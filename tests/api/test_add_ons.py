"""Add-ons (Lago's `/add_ons`) and one-off invoices that bill them by code (issue 20)."""
from __future__ import annotations

import pytest

from apps.invoicing.models import Fee, Invoice

pytestmark = pytest.mark.django_db

TOKENS = {"code": "tokens_1m", "name": "1M tokens", "amount_cents": 1999, "amount_currency": "CAD",
          "description": "One million tokens", "tax_codes": ["hst_on"]}


def _create(client, **overrides):
    return client.post("/api/v1/add_ons", {"add_on": {**TOKENS, **overrides}}, format="json")


def test_crud_with_lago_s_bodies(cloud):
    created = _create(cloud)
    assert created.status_code == 200
    body = created.json()["add_on"]
    assert set(body) == {"lago_id", "name", "invoice_display_name", "code", "amount_cents", "amount_currency",
                         "description", "created_at", "taxes"}
    assert (body["code"], body["name"], body["amount_cents"], body["amount_currency"]) == (
        "tokens_1m", "1M tokens", 1999, "CAD")
    assert (body["invoice_display_name"], body["description"], body["taxes"]) == (None, "One million tokens", [])
    assert body["created_at"].endswith("Z")

    assert cloud.get("/api/v1/add_ons/tokens_1m").json()["add_on"]["lago_id"] == body["lago_id"]
    updated = cloud.put("/api/v1/add_ons/tokens_1m", {"add_on": {"amount_cents": 2499, "invoice_display_name": "Tokens"}},
                        format="json").json()["add_on"]
    assert (updated["amount_cents"], updated["invoice_display_name"], updated["name"]) == (2499, "Tokens", "1M tokens")

    deleted = cloud.delete("/api/v1/add_ons/tokens_1m")
    assert deleted.status_code == 200 and deleted.json()["add_on"]["code"] == "tokens_1m"
    gone = cloud.get("/api/v1/add_ons/tokens_1m")
    assert (gone.status_code, gone.json()) == (404, {"status": 404, "error": "Not Found", "code": "add_on_not_found"})
    assert _create(cloud).status_code == 200  # a deleted add-on's code is free again (Lago discards)


def test_lago_s_errors(cloud):
    assert _create(cloud).status_code == 200
    duplicate = _create(cloud)
    assert duplicate.status_code == 422
    assert duplicate.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                                "error_details": {"code": ["value_already_exist"]}}
    invalid = _create(cloud, code="other", amount_cents=0, amount_currency="XXX", name=None)
    assert invalid.json()["error_details"] == {"name": ["value_is_mandatory"], "amount_cents": ["value_is_out_of_range"],
                                               "amount_currency": ["value_is_invalid"]}
    missing_root = cloud.post("/api/v1/add_ons", {"addon": TOKENS}, format="json")
    assert missing_root.status_code == 400
    assert missing_root.json()["error"] == "BadRequest: param is missing or the value is empty: add_on"
    assert _create(cloud, code="second").status_code == 200
    renamed = cloud.put("/api/v1/add_ons/second", {"add_on": {"code": "tokens_1m"}}, format="json")
    assert renamed.json()["error_details"] == {"code": ["value_already_exist"]}
    assert cloud.put("/api/v1/add_ons/nope", {"add_on": {"name": "x"}}, format="json").status_code == 404
    assert cloud.delete("/api/v1/add_ons/nope").status_code == 404


def test_list_is_paginated_like_lago(cloud):
    empty = cloud.get("/api/v1/add_ons").json()
    assert empty == {"add_ons": [], "meta": {"current_page": 0, "next_page": None, "prev_page": None,
                                             "total_pages": 0, "total_count": 0}}
    for index in range(3):
        assert _create(cloud, code=f"a{index}").status_code == 200
    page = cloud.get("/api/v1/add_ons", {"page": 2, "per_page": 2}).json()
    assert [a["code"] for a in page["add_ons"]] == ["a0"]  # newest first
    assert page["meta"] == {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 3}


def test_each_service_sees_only_its_own_add_ons(cloud, desk):
    assert _create(cloud).status_code == 200
    assert desk.get("/api/v1/add_ons").json()["meta"]["total_count"] == 0
    assert desk.get("/api/v1/add_ons/tokens_1m").status_code == 404
    assert desk.put("/api/v1/add_ons/tokens_1m", {"add_on": {"name": "x"}}, format="json").status_code == 404
    assert desk.delete("/api/v1/add_ons/tokens_1m").status_code == 404
    assert _create(desk, amount_cents=5).status_code == 200  # the same code, another service's catalog
    assert cloud.get("/api/v1/add_ons/tokens_1m").json()["add_on"]["amount_cents"] == 1999


@pytest.fixture
def acme(cloud):
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON", "currency": "CAD"}}, format="json")
    assert _create(cloud).status_code == 200
    assert _create(cloud, code="onboarding", name="Onboarding", amount_cents=50000, description=None,
                   invoice_display_name="Onboarding (one day)").status_code == 200
    return cloud


def _one_off(client, fees):
    return client.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": fees}}, format="json")


def test_one_off_fees_default_from_the_add_on_and_may_override_it(acme):
    response = _one_off(acme, [
        {"add_on_code": "tokens_1m"},  # 1 unit at the add-on's 19.99
        {"add_on_code": "tokens_1m", "units": 3, "unit_amount_cents": 1500, "description": "Volume price",
         "invoice_display_name": "Tokens (volume)"},
        {"add_on_code": "onboarding", "units": "0.5"},
    ])
    assert response.status_code == 200, response.json()
    invoice = response.json()["invoice"]
    fees = invoice["fees"]
    assert [(f["amount_cents"], f["units"], f["item"]["code"], f["item"]["type"]) for f in fees] == [
        (1999, "1", "tokens_1m", "add_on"), (4500, "3", "tokens_1m", "add_on"), (25000, "0.5", "onboarding", "add_on")]
    assert [f["item"]["invoice_display_name"] for f in fees] == ["1M tokens", "Tokens (volume)", "Onboarding (one day)"]
    assert [f["item"]["description"] for f in fees] == ["One million tokens", "Volume price", None]
    # ON HST 13% per line: 259.87 -> 260, 585, 3250
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"], invoice["total_amount_cents"]) == (
        31499, 4095, 35594)
    assert invoice["invoice_type"] == "one_off" and invoice["currency"] == "CAD"

    # Changing the add-on later leaves the issued invoice as it was.
    acme.put("/api/v1/add_ons/tokens_1m", {"add_on": {"amount_cents": 1, "name": "renamed"}}, format="json")
    again = acme.get(f"/api/v1/invoices/{invoice['lago_id']}").json()["invoice"]
    assert again["fees"][0]["amount_cents"] == 1999 and again["fees"][0]["item"]["invoice_display_name"] == "1M tokens"


def test_an_unknown_or_deleted_add_on_answers_404_and_writes_nothing(acme, desk):
    desk.post("/api/v1/customers", {"customer": {"external_id": "acme"}}, format="json")
    before = (Invoice.objects.count(), Fee.objects.count())
    unknown = _one_off(acme, [{"add_on_code": "tokens_1m"}, {"add_on_code": "nope"}])
    assert (unknown.status_code, unknown.json()) == (
        404, {"status": 404, "error": "Not Found", "code": "add_on_not_found"})
    assert acme.delete("/api/v1/add_ons/onboarding").status_code == 200
    assert _one_off(acme, [{"add_on_code": "onboarding"}]).status_code == 404
    assert _one_off(desk, [{"add_on_code": "tokens_1m"}]).status_code == 404  # another service's add-on
    assert (Invoice.objects.count(), Fee.objects.count()) == before

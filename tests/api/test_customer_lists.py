"""A customer's nested lists (issue 21): /customers/{external_id}/invoices, /credit_notes, /subscriptions.

lago-python-client 1.55 has no call for them (apps reach them with their own HTTP client)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _customer(client, external_id):
    response = client.post("/api/v1/customers", {"customer": {"external_id": external_id, "name": external_id.title(),
                                                              "country": "CA", "state": "ON", "currency": "CAD"}},
                           format="json")
    assert response.status_code == 200


def _invoice(client, customer, code="setup"):
    response = client.post("/api/v1/invoices", {"invoice": {"external_customer_id": customer,
                                                            "fees": [{"add_on_code": code}]}}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["invoice"]


@pytest.fixture
def two_customers(cloud_catalog):
    cloud = cloud_catalog  # acme with subscription sub-1 on plan pro
    _customer(cloud, "globex")
    assert cloud.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 1000,
                                                     "amount_currency": "CAD"}}, format="json").status_code == 200
    acme_invoice = _invoice(cloud, "acme")
    globex_invoice = _invoice(cloud, "globex")
    fee = acme_invoice["fees"][0]
    note = cloud.post("/api/v1/credit_notes", {"credit_note": {
        "invoice_id": acme_invoice["lago_id"], "items": [{"fee_id": fee["lago_id"], "amount_cents": 100}],
        "credit_amount_cents": 113}}, format="json")
    assert note.status_code == 200, note.json()
    return cloud, acme_invoice, globex_invoice, note.json()["credit_note"]


def test_each_list_holds_only_that_customers_objects(two_customers):
    cloud, acme_invoice, globex_invoice, note = two_customers
    invoices = cloud.get("/api/v1/customers/acme/invoices").json()
    assert [i["lago_id"] for i in invoices["invoices"]] == [acme_invoice["lago_id"]]
    assert invoices["meta"]["total_count"] == 1
    assert [i["lago_id"] for i in cloud.get("/api/v1/customers/globex/invoices").json()["invoices"]] == [
        globex_invoice["lago_id"]]
    assert [n["lago_id"] for n in cloud.get("/api/v1/customers/acme/credit_notes").json()["credit_notes"]] == [note["lago_id"]]
    assert cloud.get("/api/v1/customers/globex/credit_notes").json()["credit_notes"] == []
    assert [s["external_id"] for s in cloud.get("/api/v1/customers/acme/subscriptions").json()["subscriptions"]] == ["sub-1"]
    assert cloud.get("/api/v1/customers/globex/subscriptions").json()["subscriptions"] == []


def test_the_lists_take_the_top_level_filters(two_customers):
    cloud, acme_invoice, _, _ = two_customers
    assert cloud.get("/api/v1/customers/acme/invoices", {"invoice_type": "subscription"}).json()["invoices"] == []
    one_off = cloud.get("/api/v1/customers/acme/invoices", {"invoice_type": "one_off"}).json()["invoices"]
    assert [i["lago_id"] for i in one_off] == [acme_invoice["lago_id"]]
    assert cloud.get("/api/v1/customers/acme/subscriptions", {"plan_code": "other"}).json()["subscriptions"] == []
    assert cloud.get("/api/v1/customers/acme/subscriptions", {"status[]": "terminated"}).json()["subscriptions"] == []
    bad = cloud.get("/api/v1/customers/acme/invoices", {"amount_from": "lots"})
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"amount_from": ["value_is_invalid"]})
    bad = cloud.get("/api/v1/customers/acme/subscriptions", {"status[]": "sleeping"})
    assert bad.status_code == 422
    page = cloud.get("/api/v1/customers/acme/invoices", {"per_page": 1, "page": 2}).json()
    assert page == {"invoices": [], "meta": {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 1,
                                              "total_count": 1}}


def test_an_unknown_or_other_services_customer_is_not_found(two_customers, desk):
    cloud = two_customers[0]
    for kind in ("invoices", "credit_notes", "subscriptions"):
        for client in (cloud, desk):
            response = client.get(f"/api/v1/customers/{'nobody' if client is cloud else 'acme'}/{kind}")
            assert (response.status_code, response.json()) == (
                404, {"status": 404, "error": "Not Found", "code": "customer_not_found"}), kind

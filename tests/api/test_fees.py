"""GET /fees and /fees/{lago_id} (issue 21): the lines a service billed, with Lago's filters and pagination."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError

pytestmark = pytest.mark.django_db


def _customer(client, external_id="acme"):
    response = client.post("/api/v1/customers", {"customer": {"external_id": external_id, "name": "Acme", "country": "CA",
                                                              "state": "ON", "currency": "CAD"}}, format="json")
    assert response.status_code == 200


def _add_on(client, code, amount_cents):
    response = client.post("/api/v1/add_ons", {"add_on": {"code": code, "name": code.title(), "amount_cents": amount_cents,
                                                          "amount_currency": "CAD"}}, format="json")
    assert response.status_code == 200


def _one_off(client, customer, *codes):
    response = client.post("/api/v1/invoices", {"invoice": {"external_customer_id": customer,
                                                            "fees": [{"add_on_code": code} for code in codes]}}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["invoice"]


@pytest.fixture
def billed(cloud):
    _customer(cloud)
    _customer(cloud, "globex")
    _add_on(cloud, "setup", 10000)
    _add_on(cloud, "training", 2500)
    first = _one_off(cloud, "acme", "setup", "training")
    second = _one_off(cloud, "globex", "training")
    return cloud, first, second


def test_a_fee_is_found_by_its_id_as_on_its_invoice(billed):
    cloud, first, _ = billed
    on_invoice = first["fees"][0]
    response = cloud.get(f"/api/v1/fees/{on_invoice['lago_id']}")
    assert response.status_code == 200
    assert response.json()["fee"] == on_invoice
    assert on_invoice["applied_taxes"][0]["tax_rate"] == 13.0 and on_invoice["taxes_rate"] == 13.0
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        gone = cloud.get(f"/api/v1/fees/{missing}")
        assert (gone.status_code, gone.json()) == (404, {"status": 404, "error": "Not Found", "code": "fee_not_found"})


def test_the_list_is_newest_first_with_lagos_filters_and_pages(billed):
    cloud, first, second = billed
    listed = cloud.get("/api/v1/fees").json()
    ids = [fee["lago_id"] for fee in listed["fees"]]
    assert sorted(ids) == sorted([fee["lago_id"] for fee in first["fees"] + second["fees"]])
    assert ids[0] == second["fees"][0]["lago_id"]
    assert listed["meta"]["total_count"] == 3

    def codes(**query):
        response = cloud.get("/api/v1/fees", query)
        assert response.status_code == 200, response.json()
        return sorted(fee["item"]["code"] for fee in response.json()["fees"])

    assert codes(external_customer_id="acme") == ["setup", "training"]
    assert codes(external_customer_id="globex") == ["training"]
    assert codes(fee_type="add_on") == ["setup", "training", "training"]
    assert codes(fee_type="charge") == []
    assert codes(payment_status="pending") == ["setup", "training", "training"]
    assert codes(payment_status="succeeded") == []
    assert codes(currency="CAD", created_at_from="2000-01-01T00:00:00Z") == ["setup", "training", "training"]
    assert codes(created_at_to="2000-01-01T00:00:00Z") == []
    assert codes(external_subscription_id="none") == []
    page = cloud.get("/api/v1/fees", {"per_page": 2, "page": 2}).json()
    assert len(page["fees"]) == 1
    assert page["meta"] == {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 3}


def test_bad_filters_get_lagos_422(billed):
    cloud, _, _ = billed
    for query in ({"fee_type": "nope"}, {"payment_status": "paid"}, {"currency": "XXX"}, {"created_at_from": "soon"}):
        response = cloud.get("/api/v1/fees", query)
        assert response.status_code == 422, query
        assert response.json()["code"] == "validation_errors"
        assert list(response.json()["error_details"]) == list(query)


def test_another_service_sees_none_of_them(billed, desk):
    _, first, _ = billed
    assert desk.get("/api/v1/fees").json()["meta"]["total_count"] == 0
    assert desk.get(f"/api/v1/fees/{first['fees'][0]['lago_id']}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_finds_and_lists_fees(live_server, service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    cloud = api_client_for(issued.raw_key)
    _customer(cloud)
    _add_on(cloud, "setup", 10000)
    invoice = _one_off(cloud, "acme", "setup")
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    fee = lago.fees.find(invoice["fees"][0]["lago_id"])
    assert (fee.lago_id, fee.amount_cents, fee.taxes_amount_cents) == (invoice["fees"][0]["lago_id"], 10000, 1300)
    listed = lago.fees.find_all({"external_customer_id": "acme"})
    assert [item.lago_id for item in listed["fees"]] == [fee.lago_id]
    with pytest.raises(LagoApiError) as error:
        lago.fees.find("00000000-0000-0000-0000-000000000000")
    assert error.value.status_code == 404

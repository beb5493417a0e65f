"""A subscription's charges and their filters (issue 21): Lago 1.51's /subscriptions/{external_id}/charges. Reads
show the subscription's plan's charges (its own plan's once overridden); writes land on its own copy of the plan,
bill through the close, and leave the catalog plan as it was."""
from __future__ import annotations

import pytest
import time_machine

from apps.catalog.models import ChargeFilter, Plan
from apps.invoicing.close import periods_close
from apps.subscriptions.models import Subscription
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db

ALL = "__ALL_FILTER_VALUES__"
NOT_FOUND = {"status": 404, "error": "Not Found"}


@pytest.fixture
def subscribed(cloud, settings):
    """Lago's guide's storage metric (region × provider), a plan at $2/GB with a $1 Africa & AWS filter, one
    subscription."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    gb = cloud.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb",
        "filters": [{"key": "region", "values": ["africa", "europe", "us"]},
                    {"key": "provider", "values": ["aws", "gcp"]}]}}, format="json").json()["billable_metric"]
    response = cloud.post("/api/v1/plans", {"plan": {
        "name": "Standard plan", "code": "standard_plan", "interval": "monthly", "amount_cents": 1000,
        "amount_currency": "CAD", "charges": [{
            "billable_metric_id": gb["lago_id"], "code": "storage", "charge_model": "standard",
            "properties": {"amount": "2"}, "filters": [{"values": {"region": ["africa"], "provider": ["aws"]},
                                                        "invoice_display_name": "Africa & AWS",
                                                        "properties": {"amount": "1"}}]}]}}, format="json")
    assert response.status_code == 200, response.json()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        assert cloud.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "standard_plan", "external_id": "s1"}},
            format="json").status_code == 200
    return cloud


def _call(client, method, path, body=None):
    response = getattr(client, method)(f"/api/v1/subscriptions/s1{path}", body, format="json")
    return response.status_code, response.json()


def _events(client):
    with time_machine.travel(at(2026, 3, 10), tick=False):
        for index, props in enumerate([{"region": "africa", "provider": "aws", "gb": "10"},
                                       {"region": "europe", "provider": "gcp", "gb": "4"}]):
            assert client.post("/api/v1/events", {"event": {
                "transaction_id": f"t{index}", "external_subscription_id": "s1", "code": "gb",
                "timestamp": int(at(2026, 3, 2 + index).timestamp()), "properties": props}},
                format="json").status_code == 200


def _charge_fees(client) -> dict:
    invoice = client.get("/api/v1/invoices").json()["invoices"][0]
    return {fee["item"]["filter_invoice_display_name"]: fee["amount_cents"] for fee in invoice["fees"]
            if fee["item"]["type"] == "charge"}


def test_reads_show_the_plans_charges_until_overridden(subscribed):
    catalog = subscribed.get("/api/v1/plans/standard_plan").json()["plan"]["charges"][0]
    status, body = _call(subscribed, "get", "/charges")
    assert status == 200 and body["charges"] == [catalog] and body["meta"]["total_count"] == 1
    assert _call(subscribed, "get", "/charges/storage") == (200, {"charge": catalog})
    status, body = _call(subscribed, "get", "/charges/storage/filters")
    assert status == 200 and [item["invoice_display_name"] for item in body["filters"]] == ["Africa & AWS"]
    africa = body["filters"][0]
    assert _call(subscribed, "get", f"/charges/storage/filters/{africa['lago_id']}") == (200, {"filter": africa})
    assert Subscription.objects.get().plan.parent_id is None  # reading copies nothing


def test_an_overridden_charge_bills_through_the_close_and_leaves_the_plan_unchanged(subscribed):
    catalog = subscribed.get("/api/v1/plans/standard_plan").json()["plan"]
    status, body = _call(subscribed, "put", "/charges/storage", {"charge": {
        "properties": {"amount": "3"}, "invoice_display_name": "Storage for Acme"}})
    assert status == 200, body
    charge = body["charge"]
    assert (charge["code"], charge["properties"], charge["invoice_display_name"]) == (
        "storage", {"amount": "3"}, "Storage for Acme")
    assert charge["lago_id"] != catalog["charges"][0]["lago_id"]  # the subscription's own copy
    assert [item["properties"] for item in charge["filters"]] == [{"amount": "1"}]  # its filters kept
    assert _call(subscribed, "get", "/charges/storage") == (200, {"charge": charge})
    # Again: the same copy changes in place.
    status, body = _call(subscribed, "put", "/charges/storage", {"charge": {"min_amount_cents": 100}})
    assert (status, body["charge"]["lago_id"], body["charge"]["properties"]) == (200, charge["lago_id"],
                                                                              {"amount": "3"})
    assert Plan.objects.filter(code="standard_plan").count() == 2
    assert subscribed.get("/api/v1/plans/standard_plan").json()["plan"] == catalog

    _events(subscribed)
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    # Africa & AWS: 10 × $1; Europe: 4 GB at the overridden $3 (the plan's $2 otherwise).
    assert _charge_fees(subscribed) == {"Africa & AWS": 1000, None: 1200}


def test_subscription_filters_are_written_on_its_own_plan(subscribed):
    catalog = subscribed.get("/api/v1/plans/standard_plan").json()["plan"]
    africa = catalog["charges"][0]["filters"][0]
    africa_id = str(ChargeFilter.objects.get(invoice_display_name="Africa & AWS").lago_id)
    # The catalog filter's id names the copy's filter of the same values.
    status, body = _call(subscribed, "put", f"/charges/storage/filters/{africa_id}", {"filter": {
        "properties": {"amount": "0.25"}}})
    assert status == 200, body
    assert (body["filter"]["values"], body["filter"]["properties"]) == (africa["values"], {"amount": "0.25"})
    own_africa = body["filter"]["lago_id"]
    assert own_africa != africa_id and Subscription.objects.get().plan.parent_id is not None
    status, europe = _call(subscribed, "post", "/charges/storage/filters", {"filter": {
        "values": {"region": ["europe"]}, "invoice_display_name": "Europe", "properties": {"amount": "0.5"}}})
    assert status == 200, europe
    status, body = _call(subscribed, "get", "/charges/storage/filters")
    assert [item["lago_id"] for item in body["filters"]] == [own_africa, europe["filter"]["lago_id"]]
    assert _call(subscribed, "get", f"/charges/storage/filters/{africa_id}")[1]["filter"]["lago_id"] == own_africa

    _events(subscribed)
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    # 10 GB Africa & AWS at $0.25, 4 GB Europe at $0.50.
    assert _charge_fees(subscribed) == {"Africa & AWS": 250, "Europe": 200, None: 0}
    assert subscribed.get("/api/v1/plans/standard_plan").json()["plan"] == catalog

    status, body = _call(subscribed, "delete", f"/charges/storage/filters/{europe['filter']['lago_id']}")
    assert status == 200 and body["filter"]["invoice_display_name"] == "Europe"
    assert ChargeFilter.objects.get(lago_id=europe["filter"]["lago_id"]).deleted_at is not None
    assert [item["lago_id"] for item in _call(subscribed, "get", "/charges/storage/filters")[1]["filters"]] == [
        own_africa]


def test_a_filter_delete_first_moves_the_subscription_to_its_own_plan(subscribed):
    africa_id = str(ChargeFilter.objects.get(invoice_display_name="Africa & AWS").lago_id)
    status, body = _call(subscribed, "delete", f"/charges/storage/filters/{africa_id}")
    assert status == 200 and body["filter"]["values"] == {"region": ["africa"], "provider": ["aws"]}
    assert _call(subscribed, "get", "/charges/storage/filters")[1]["filters"] == []
    assert ChargeFilter.objects.get(lago_id=africa_id).deleted_at is None  # the catalog's is untouched


def test_bad_writes_are_422_and_change_nothing(subscribed):
    cases = [
        ("put", "/charges/storage", {"charge": {"properties": {"amount": "-1"}}}, {"amount": ["invalid_amount"]}),
        ("put", "/charges/storage", {"charge": {"filters": [{"values": {"region": ["mars"]},
                                                             "properties": {"amount": "1"}}]}},
         {"filters": ["value_is_invalid"]}),
        ("post", "/charges/storage/filters", {"filter": {"values": {"zone": ["a"]}, "properties": {"amount": "1"}}},
         {"values": ["value_is_invalid"]}),
    ]
    for method, path, body, details in cases:
        status, answer = _call(subscribed, method, path, body)
        assert (status, answer.get("error_details")) == (422, details), (method, path, body)
    assert Subscription.objects.get().plan.parent_id is None and Plan.objects.count() == 1


def test_another_services_key_and_unknown_names_get_lagos_404(subscribed, desk):
    africa_id = str(ChargeFilter.objects.get().lago_id)
    requests = [
        ("get", "/charges", None), ("get", "/charges/storage", None),
        ("put", "/charges/storage", {"charge": {"properties": {"amount": "9"}}}),
        ("get", "/charges/storage/filters", None),
        ("post", "/charges/storage/filters", {"filter": {"values": {"region": ["us"]}, "properties": {}}}),
        ("get", f"/charges/storage/filters/{africa_id}", None),
        ("put", f"/charges/storage/filters/{africa_id}", {"filter": {"properties": {"amount": "9"}}}),
        ("delete", f"/charges/storage/filters/{africa_id}", None),
    ]
    for method, path, body in requests:
        assert _call(desk, method, path, body) == (404, {**NOT_FOUND, "code": "subscription_not_found"}), path
    assert _call(subscribed, "put", "/charges/missing", {"charge": {"min_amount_cents": 1}}) == (
        404, {**NOT_FOUND, "code": "charge_not_found"})
    assert _call(subscribed, "delete", "/charges/storage/filters/5eb02857-a71e-4ea2-bcf9-57d3a41bc6ba") == (
        404, {**NOT_FOUND, "code": "charge_filter_not_found"})
    assert Plan.objects.count() == 1  # nothing copied for a request that failed

"""A plan's charges and their filters one at a time (issue 21): Lago 1.51's /plans/{code}/charges and
/plans/{code}/charges/{charge_code}/filters, checked as POST /plans checks charges, per service."""
from __future__ import annotations

import pytest
import time_machine

from apps.catalog.models import Charge, ChargeFilter
from apps.invoicing.close import periods_close
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db

ALL = "__ALL_FILTER_VALUES__"
NOT_FOUND = {"status": 404, "error": "Not Found"}


@pytest.fixture
def plan(cloud):
    """Lago's guide's storage metric (region × provider filters), a count metric, and a plan with one charge."""
    gb = cloud.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb",
        "filters": [{"key": "region", "values": ["africa", "europe", "us"]},
                    {"key": "provider", "values": ["aws", "gcp"]}]}}, format="json").json()["billable_metric"]
    calls = cloud.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").json()["billable_metric"]
    response = cloud.post("/api/v1/plans", {"plan": {
        "name": "Standard plan", "code": "standard_plan", "interval": "monthly", "amount_cents": 1000,
        "amount_currency": "CAD", "charges": [{"billable_metric_id": gb["lago_id"], "code": "storage",
                                               "charge_model": "standard", "properties": {"amount": "2"}}]}},
        format="json")
    assert response.status_code == 200, response.json()
    cloud.metrics = {"gb": gb, "calls": calls}
    return cloud


def _call(client, method, path, body=None):
    response = getattr(client, method)(f"/api/v1/plans/standard_plan{path}", body, format="json")
    return response.status_code, response.json()


def test_charges_are_listed_created_read_updated_and_deleted_as_lago(plan):
    status, body = _call(plan, "get", "/charges")
    assert status == 200 and [item["code"] for item in body["charges"]] == ["storage"]
    assert body["meta"] == {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1,
                            "total_count": 1}

    created = {"charge": {"billable_metric_id": plan.metrics["calls"]["lago_id"], "code": "api_calls",
                          "charge_model": "package", "invoice_display_name": "API calls",
                          "properties": {"amount": "5", "package_size": 100, "free_units": 0}}}
    status, body = _call(plan, "post", "/charges", created)
    assert status == 200, body
    charge = body["charge"]
    assert (charge["code"], charge["billable_metric_code"], charge["charge_model"], charge["invoice_display_name"],
            charge["properties"]) == ("api_calls", "calls", "package", "API calls",
                                      {"amount": "5", "package_size": 100, "free_units": 0})
    assert _call(plan, "get", "/charges/api_calls") == (200, {"charge": charge})
    assert [item["code"] for item in _call(plan, "get", "")[1]["plan"]["charges"]] == ["storage", "api_calls"]
    assert [item["code"] for item in _call(plan, "get", "/charges")[1]["charges"]] == ["api_calls", "storage"]
    assert _call(plan, "get", "/charges", {"per_page": 1, "page": 2})[1]["meta"]["total_pages"] == 2

    # PUT changes what it names; the rest, the identity and the filters stay.
    plan.post("/api/v1/plans/standard_plan/charges/storage/filters", {"filter": {
        "values": {"region": ["africa"]}, "properties": {"amount": "1"}}}, format="json")
    status, body = _call(plan, "put", "/charges/storage", {"charge": {"properties": {"amount": "3"},
                                                                       "invoice_display_name": "Storage"}})
    assert status == 200, body
    assert (body["charge"]["properties"], body["charge"]["invoice_display_name"], body["charge"]["charge_model"],
            [item["values"] for item in body["charge"]["filters"]]) == (
        {"amount": "3"}, "Storage", "standard", [{"region": ["africa"]}])
    assert Charge.objects.filter(code="storage").count() == 1

    status, body = _call(plan, "delete", "/charges/api_calls")
    assert (status, body) == (200, {"charge": charge})
    assert [item["code"] for item in _call(plan, "get", "/charges")[1]["charges"]] == ["storage"]
    assert _call(plan, "get", "/charges/api_calls") == (404, {**NOT_FOUND, "code": "charge_not_found"})


def test_a_charge_is_checked_as_post_plans_checks_it(plan):
    calls = plan.metrics["calls"]["lago_id"]
    cases = [
        ({"billable_metric_id": calls, "charge_model": "standard", "properties": {"amount": "-1"}},
         {"amount": ["invalid_amount"]}),
        ({"billable_metric_id": calls, "charge_model": "dynamic"}, {"charge_model": ["invalid_aggregation_type_or_charge_model"]}),
        ({"billable_metric_id": calls, "code": "storage", "charge_model": "standard", "properties": {"amount": "1"}},
         {"code": ["value_already_exist"]}),
        ({"billable_metric_id": plan.metrics["gb"]["lago_id"], "charge_model": "standard",
          "properties": {"amount": "1"}, "filters": [{"values": {"region": ["mars"]}, "properties": {"amount": "1"}}]},
         {"filters.0.values": ["value_is_invalid"]}),
    ]
    for charge, details in cases:
        status, body = _call(plan, "post", "/charges", {"charge": charge})
        assert (status, body.get("error_details")) == (422, details), charge
    status, body = _call(plan, "put", "/charges/storage", {"charge": {"charge_model": "graduated"}})
    assert status == 422 and "graduated_ranges" in body["error_details"]
    assert _call(plan, "post", "/charges", {"charge": {"billable_metric_id": "5eb02857-a71e-4ea2-bcf9-57d3a41bc6ba",
                                                       "charge_model": "standard", "properties": {"amount": "1"}}})[1]["code"] == \
        "billable_metric_not_found"
    assert _call(plan, "post", "/charges", {})[0] == 400
    assert Charge.objects.count() == 1


def test_a_charge_fees_billed_is_not_deleted(plan, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                 "state": "ON"}}, format="json")
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        assert plan.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "standard_plan", "external_id": "s1"}},
            format="json").status_code == 200
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    status, body = _call(plan, "delete", "/charges/storage")
    assert (status, body["code"]) == (405, "charge_already_billed")
    assert _call(plan, "get", "/charges/storage")[0] == 200


def test_filters_are_listed_created_read_updated_and_deleted_as_lago(plan):
    base = "/charges/storage/filters"
    assert _call(plan, "get", base)[1]["filters"] == []
    # Lago's guide, "Charges with filters": $1 for Africa & AWS, $0.50 for the other combinations.
    status, africa = _call(plan, "post", base, {"filter": {
        "values": {"region": ["africa"], "provider": ["aws"]}, "invoice_display_name": "Africa & AWS",
        "properties": {"amount": "1"}}})
    assert status == 200, africa
    status, other = _call(plan, "post", base, {"filter": {
        "values": {"region": [ALL], "provider": [ALL]}, "properties": {"amount": "0.5"}}})
    assert status == 200, other
    stored = ChargeFilter.objects.get(invoice_display_name="Africa & AWS")
    assert africa == {"filter": {"lago_id": str(stored.lago_id), "charge_code": "storage",
                                 "invoice_display_name": "Africa & AWS", "properties": {"amount": "1"},
                                 "values": {"region": ["africa"], "provider": ["aws"]}}}
    assert other["filter"]["invoice_display_name"] is None
    status, body = _call(plan, "get", base)
    assert status == 200 and body["filters"] == [africa["filter"], other["filter"]]
    assert body["meta"]["total_count"] == 2
    assert _call(plan, "get", f"{base}/{stored.lago_id}") == (200, africa)
    # The plan's charge shows them as POST /plans made them.
    assert [item["values"] for item in _call(plan, "get", "")[1]["plan"]["charges"][0]["filters"]] == [
        {"region": ["africa"], "provider": ["aws"]}, {"region": [ALL], "provider": [ALL]}]

    # A change takes a new price and name; the values stay (Lago's update ignores them), and so does the identity.
    status, body = _call(plan, "put", f"{base}/{stored.lago_id}", {"filter": {
        "properties": {"amount": "1.5"}, "values": {"region": ["us"]}}})
    assert status == 200, body
    assert body == {"filter": {**africa["filter"], "properties": {"amount": "1.5"}}}
    status, body = _call(plan, "put", f"{base}/{stored.lago_id}", {"filter": {"invoice_display_name": None}})
    assert (status, body["filter"]["invoice_display_name"], body["filter"]["properties"]) == (200, None,
                                                                                               {"amount": "1.5"})
    status, us = _call(plan, "post", base, {"filter": {"values": {"region": ["us"]}, "properties": {"amount": "3"}}})
    assert status == 200, us
    assert [item["lago_id"] for item in _call(plan, "get", base)[1]["filters"]] == [
        str(stored.lago_id), other["filter"]["lago_id"], us["filter"]["lago_id"]]
    us = us["filter"]["lago_id"]

    status, body = _call(plan, "delete", f"{base}/{us}")
    assert status == 200 and body["filter"]["values"] == {"region": ["us"]}
    assert ChargeFilter.objects.get(lago_id=us).deleted_at is not None  # soft: fees may point to it
    assert [item["lago_id"] for item in _call(plan, "get", base)[1]["filters"]] == [
        str(stored.lago_id), other["filter"]["lago_id"]]
    assert _call(plan, "get", f"{base}/{us}") == (404, {**NOT_FOUND, "code": "charge_filter_not_found"})
    assert _call(plan, "get", f"{base}/not-a-uuid")[1]["code"] == "charge_filter_not_found"


def test_a_filter_is_checked_as_post_plans_checks_it(plan):
    base = "/charges/storage/filters"
    assert _call(plan, "post", base, {"filter": {"values": {"region": ["us"]}, "properties": {"amount": "1"}}})[0] == 200
    cases = [
        ({"values": {"zone": ["a"]}, "properties": {"amount": "1"}}, {"values": ["value_is_invalid"]}),
        ({"values": {"region": ["mars"]}, "properties": {"amount": "1"}}, {"values": ["value_is_invalid"]}),
        ({"values": {"region": ["us"]}, "properties": {"amount": "1"}}, {"values": ["value_already_exist"]}),
        ({"values": {"region": ["europe"]}, "properties": {"amount": "-1"}}, {"properties.amount": ["invalid_amount"]}),
    ]
    for item, details in cases:
        status, body = _call(plan, "post", base, {"filter": item})
        assert (status, body.get("error_details")) == (422, details), item
    assert ChargeFilter.objects.count() == 1


def test_another_services_key_gets_lagos_404(plan, desk):
    charge_filter = plan.post("/api/v1/plans/standard_plan/charges/storage/filters", {"filter": {
        "values": {"region": ["us"]}, "properties": {"amount": "1"}}}, format="json").json()["filter"]
    calls = plan.metrics["calls"]["lago_id"]
    requests = [
        ("get", "/charges", None), ("post", "/charges", {"charge": {"billable_metric_id": calls,
                                                                    "charge_model": "standard"}}),
        ("get", "/charges/storage", None), ("put", "/charges/storage", {"charge": {"properties": {"amount": "9"}}}),
        ("delete", "/charges/storage", None), ("get", "/charges/storage/filters", None),
        ("post", "/charges/storage/filters", {"filter": {"values": {"region": ["eu"]}, "properties": {}}}),
        ("get", f"/charges/storage/filters/{charge_filter['lago_id']}", None),
        ("put", f"/charges/storage/filters/{charge_filter['lago_id']}", {"filter": {"properties": {"amount": "9"}}}),
        ("delete", f"/charges/storage/filters/{charge_filter['lago_id']}", None),
    ]
    for method, path, body in requests:
        assert _call(desk, method, path, body) == (404, {**NOT_FOUND, "code": "plan_not_found"}), (method, path)
    assert _call(plan, "get", "/charges/missing") == (404, {**NOT_FOUND, "code": "charge_not_found"})
    assert _call(plan, "get", "/charges/missing/filters") == (404, {**NOT_FOUND, "code": "charge_not_found"})
    assert Charge.objects.get().properties == {"amount": "2"} and ChargeFilter.objects.get().deleted_at is None


def test_a_plan_update_leaving_out_a_billed_charge_is_refused_and_writes_nothing(plan, settings):
    """PUT /plans with a charges list that drops a charge fees billed: Lago's 405 `charge_already_billed`, as the
    charge's own DELETE answers, and neither the plan's fields nor its charges change (it was a 500)."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                 "state": "ON"}}, format="json")
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        assert plan.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "standard_plan", "external_id": "s1"}},
            format="json").status_code == 200
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    calls = plan.metrics["calls"]["lago_id"]
    response = plan.put("/api/v1/plans/standard_plan", {"plan": {"name": "Renamed", "charges": [
        {"billable_metric_id": calls, "code": "calls", "charge_model": "standard", "properties": {"amount": "1"}}]}},
        format="json")
    assert (response.status_code, response.json()["code"]) == (405, "charge_already_billed")
    body = plan.get("/api/v1/plans/standard_plan").json()["plan"]
    assert body["name"] == "Standard plan" and [charge["code"] for charge in body["charges"]] == ["storage"]

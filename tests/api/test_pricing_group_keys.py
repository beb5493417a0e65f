"""Pricing group keys through the API (issue 21): Lago's charge properties `pricing_group_keys` (and the deprecated
`grouped_by`), its 422 on bad keys, `grouped_usage` in current/projected/past usage, and one fee per group with
Lago's `item.grouped_by`.

Expected values: Lago's guide, "Group keys": $1 per GB (sum of gb) grouped by region, 10 GB in EU and 15 GB in US:
two fees, $10.00 and $15.00.
"""
from __future__ import annotations

import pytest
import time_machine

from apps.catalog.models import Charge
from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


def _metric(client, filters=None):
    body = {"billable_metric": {"name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb",
                                **({"filters": filters} if filters else {})}}
    response = client.post("/api/v1/billable_metrics", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["billable_metric"]


def _plan_body(metric, properties, filters=None):
    return {"plan": {"name": "Storage plan", "code": "storage", "interval": "monthly", "amount_cents": 0,
                     "amount_currency": "CAD", "charges": [
                         {"billable_metric_id": metric["lago_id"], "charge_model": "standard",
                          "properties": properties, **({"filters": filters} if filters else {})}]}}


@pytest.fixture
def grouped(cloud, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    metric = _metric(cloud)
    response = cloud.post("/api/v1/plans", _plan_body(metric, {"amount": "1", "pricing_group_keys": ["region"]}),
                          format="json")
    assert response.status_code == 200, response.json()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        response = cloud.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "storage", "external_id": "s1"}}, format="json")
    assert response.status_code == 200, response.json()
    with time_machine.travel(at(2026, 3, 10), tick=False):
        for index, props in enumerate([{"region": "EU", "gb": "4"}, {"region": "US", "gb": "15"},
                                       {"region": "EU", "gb": "6"}]):
            response = cloud.post("/api/v1/events", {"event": {
                "transaction_id": f"t{index}", "external_subscription_id": "s1", "code": "gb",
                "timestamp": int(at(2026, 3, 2 + index).timestamp()), "properties": props}}, format="json")
            assert response.status_code == 200, response.json()
    return cloud


def test_the_plan_returns_the_keys_under_both_of_lagos_names(grouped):
    charge = grouped.get("/api/v1/plans/storage").json()["plan"]["charges"][0]
    assert charge["properties"] == {"amount": "1", "pricing_group_keys": ["region"], "grouped_by": ["region"]}
    stored = Charge.objects.get()
    assert stored.properties == {"amount": "1", "pricing_group_keys": ["region"]}


def test_the_deprecated_grouped_by_is_accepted_and_stored_as_pricing_group_keys(cloud):
    metric = _metric(cloud)
    response = cloud.post("/api/v1/plans", _plan_body(metric, {"amount": "1", "grouped_by": ["region"]}),
                          format="json")
    assert response.status_code == 200, response.json()
    properties = response.json()["plan"]["charges"][0]["properties"]
    assert properties["pricing_group_keys"] == properties["grouped_by"] == ["region"]
    assert Charge.objects.get().properties == {"amount": "1", "pricing_group_keys": ["region"]}


@pytest.mark.parametrize(("properties", "details"), [
    ({"amount": "1", "pricing_group_keys": "region"}, {"charges.0.pricing_group_keys": ["invalid_type"]}),
    ({"amount": "1", "pricing_group_keys": ["region", 3]},
     {"charges.0.pricing_group_keys": ["invalid_type"]}),
    ({"amount": "1", "pricing_group_keys": [""]}, {"charges.0.pricing_group_keys": ["invalid_type"]}),
    ({"amount": "1", "grouped_by": {"region": "EU"}}, {"charges.0.grouped_by": ["invalid_type"]}),
], ids=["a string", "a number", "an empty key", "grouped_by an object"])
def test_bad_keys_are_lagos_422_and_write_nothing(cloud, properties, details):
    metric = _metric(cloud)
    response = cloud.post("/api/v1/plans", _plan_body(metric, properties), format="json")
    assert response.status_code == 422, response.json()
    assert response.json()["error_details"] == details
    assert not Charge.objects.exists()


def test_a_filters_own_keys_are_validated_and_returned(cloud):
    metric = _metric(cloud, filters=[{"key": "region", "values": ["eu", "us"]}])
    bad = [{"values": {"region": ["eu"]}, "properties": {"amount": "2", "pricing_group_keys": [None]}}]
    response = cloud.post("/api/v1/plans", _plan_body(metric, {"amount": "1"}, bad), format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"charges.0.filters.0.properties.pricing_group_keys": ["invalid_type"]}
    good = [{"values": {"region": ["eu"]}, "properties": {"amount": "2", "grouped_by": ["cloud"]}}]
    response = cloud.post("/api/v1/plans", _plan_body(metric, {"amount": "1"}, good), format="json")
    assert response.status_code == 200, response.json()
    item = response.json()["plan"]["charges"][0]["filters"][0]
    assert item["properties"] == {"amount": "2", "pricing_group_keys": ["cloud"], "grouped_by": ["cloud"]}


def test_current_and_projected_usage_fill_grouped_usage_as_lago_does(grouped):
    with time_machine.travel(at(2026, 3, 20), tick=False):
        usage = grouped.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "s1"})
        projected = grouped.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "s1"})
    assert usage.status_code == 200, usage.json()
    charge = usage.json()["customer_usage"]["charges_usage"][0]
    assert (charge["units"], charge["amount_cents"], charge["events_count"]) == ("25", 2500, 3)
    assert charge["filters"] == []
    assert sorted(charge["grouped_usage"], key=lambda item: item["grouped_by"]["region"]) == [
        {"units": "10", "total_aggregated_units": "10", "events_count": 2, "amount_cents": 1000,
         "grouped_by": {"region": "EU"}, "filters": []},
        {"units": "15", "total_aggregated_units": "15", "events_count": 1, "amount_cents": 1500,
         "grouped_by": {"region": "US"}, "filters": []},
    ]
    assert projected.status_code == 200, projected.json()
    groups = projected.json()["customer_projected_usage"]["charges_usage"][0]["grouped_usage"]
    assert sorted((item["grouped_by"]["region"], item["amount_cents"]) for item in groups) == [("EU", 1000),
                                                                                               ("US", 1500)]
    assert all(item["projected_amount_cents"] >= item["amount_cents"] for item in groups)


def test_the_invoice_has_one_fee_per_group_with_lagos_grouped_by_and_past_usage_lists_them(grouped):
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))  # a rerun bills nothing twice
    invoice = grouped.get("/api/v1/invoices").json()["invoices"][0]
    charges = sorted((fee for fee in invoice["fees"] if fee["item"]["type"] == "charge"),
                     key=lambda fee: fee["item"]["grouped_by"]["region"])
    assert [(fee["item"]["grouped_by"], fee["units"], fee["amount_cents"]) for fee in charges] == [
        ({"region": "EU"}, "10", 1000), ({"region": "US"}, "15", 1500)]
    assert Fee.objects.filter(fee_type="charge").count() == 2
    fee = grouped.get(f"/api/v1/fees/{charges[0]['lago_id']}").json()["fee"]
    assert fee["item"]["grouped_by"] == {"region": "EU"}
    past = grouped.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1"}).json()
    billed = past["usage_periods"][0]["charges_usage"][0]
    assert billed["amount_cents"] == 2500
    assert sorted((item["grouped_by"]["region"], item["units"], item["amount_cents"])
                  for item in billed["grouped_usage"]) == [("EU", "10", 1000), ("US", "15", 1500)]


def test_the_invoice_preview_shows_the_group_fees_the_close_then_writes(grouped):
    with time_machine.travel(at(2026, 3, 20), tick=False):
        response = grouped.post("/api/v1/invoices/preview", {"customer": {"external_id": "acme"},
                                                             "subscriptions": {"external_ids": ["s1"]}}, format="json")
    assert response.status_code == 200, response.json()
    assert Fee.objects.count() == 0
    shown = sorted((fee["item"]["grouped_by"]["region"], fee["amount_cents"])
                   for fee in response.json()["invoice"]["fees"] if fee["item"]["type"] == "charge")
    assert shown == [("EU", 1000), ("US", 1500)]
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert sorted((fee.grouped_by["region"], fee.amount_cents) for fee in Fee.objects.filter(fee_type="charge")) == shown


def test_filters_then_groups_in_current_usage(cloud, settings):
    """Lago's grouped_usage entries carry their own per-filter usage; the charge's `filters` sum each filter's
    groups."""
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    metric = _metric(cloud, filters=[{"key": "region", "values": ["eu", "us"]}])
    filters = [{"values": {"region": ["eu"]}, "invoice_display_name": "EU",
                "properties": {"amount": "2", "pricing_group_keys": ["cloud"]}}]
    body = _plan_body(metric, {"amount": "1", "pricing_group_keys": ["cloud"]}, filters)
    assert cloud.post("/api/v1/plans", body, format="json").status_code == 200
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        cloud.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "storage", "external_id": "s1"}}, format="json")
    with time_machine.travel(at(2026, 3, 10), tick=False):
        for index, props in enumerate([{"region": "eu", "cloud": "aws", "gb": "10"},
                                       {"region": "eu", "cloud": "gcp", "gb": "5"},
                                       {"region": "us", "cloud": "aws", "gb": "15"},
                                       {"region": "us", "gb": "1"}]):  # no cloud: Lago's group where it is null
            assert cloud.post("/api/v1/events", {"event": {
                "transaction_id": f"t{index}", "external_subscription_id": "s1", "code": "gb",
                "timestamp": int(at(2026, 3, 2 + index).timestamp()), "properties": props}},
                format="json").status_code == 200
        usage = cloud.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "s1"})
    assert usage.status_code == 200, usage.json()
    charge = usage.json()["customer_usage"]["charges_usage"][0]
    assert charge["amount_cents"] == 2000 + 1000 + 1500 + 100
    assert sorted((item["invoice_display_name"] or "", item["amount_cents"]) for item in charge["filters"]) == [
        ("", 1600), ("EU", 3000)]
    by_cloud = {item["grouped_by"]["cloud"]: item for item in charge["grouped_usage"]}
    assert {key: item["amount_cents"] for key, item in by_cloud.items()} == {"aws": 3500, "gcp": 1000, None: 100}
    assert sorted((item["invoice_display_name"] or "", item["amount_cents"])
                  for item in by_cloud["aws"]["filters"]) == [("", 1500), ("EU", 2000)]


def test_estimate_fees_prices_the_event_on_its_groups_usage_so_far(service_factory, api_client_for):
    """A graduated charge paid in advance, grouped by region, with 90 GB used in EU: 20 GB more in EU cross into
    the second tier (10 × $0.10 + 10 × $0.05), 20 GB in US start from zero (20 × $0.10)."""
    from tests.integration.invoicing.conftest import Billing

    tiers = {"graduated_ranges": [
        {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "0"},
        {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"}],
        "pricing_group_keys": ["region"]}
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    plan = billing.plan(amount_cents=0, charges=[(billing.metric(), "graduated", tiers, {"pay_in_advance": True})])
    billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    from apps.usage.services import usage_events_ingest
    from apps.usage.validation import EventIn

    usage_events_ingest(service=billing.service, now=at(2026, 3, 5, 11), events=[
        EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "90", "region": "EU"})])
    api = api_client_for(issued.raw_key)
    out = {}
    for region in ("EU", "US"):
        with time_machine.travel(at(2026, 3, 20, 12), tick=False):
            response = api.post("/api/v1/events/estimate_fees", {"event": {
                "code": "gb", "external_subscription_id": "s1", "properties": {"gb": 20, "region": region}}},
                format="json")
        assert response.status_code == 200, response.json()
        [fee] = response.json()["fees"]
        out[region] = (fee["item"]["grouped_by"], fee["amount_cents"])
    assert out == {"EU": ({"region": "EU"}, 150), "US": ({"region": "US"}, 200)}

"""Charge filters through the API (issue 21): Lago's plan body with filters, its 422s, current usage per filter and
one fee per filter with Lago's `charge_filter` fields."""
from __future__ import annotations

import pytest
import time_machine

from apps.catalog.models import ChargeFilter
from apps.invoicing.close import periods_close
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db

ALL = "__ALL_FILTER_VALUES__"


def _metric(client):
    body = {"billable_metric": {"name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb",
                                "filters": [{"key": "region", "values": ["africa", "europe", "us"]},
                                            {"key": "provider", "values": ["aws", "gcp"]}]}}
    response = client.post("/api/v1/billable_metrics", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["billable_metric"]


def _plan_body(metric, filters):
    # Lago's guide, "Charges with filters": $2 by default, $1 for Africa & AWS, $0.50 for the other combinations.
    return {"plan": {"name": "Standard plan", "code": "standard_plan", "interval": "monthly", "amount_cents": 1000,
                     "amount_currency": "CAD", "charges": [
                         {"billable_metric_id": metric["lago_id"], "invoice_display_name": None,
                          "charge_model": "standard", "properties": {"amount": "2"}, "filters": filters}]}}


LAGO_FILTERS = [
    {"values": {"region": ["africa"], "provider": ["aws"]}, "invoice_display_name": "Africa & AWS",
     "properties": {"amount": "1"}},
    {"values": {"region": [ALL], "provider": [ALL]}, "invoice_display_name": "Other regions and providers",
     "properties": {"amount": "0.5"}},
]


@pytest.fixture
def filtered(cloud, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    metric = _metric(cloud)
    response = cloud.post("/api/v1/plans", _plan_body(metric, LAGO_FILTERS), format="json")
    assert response.status_code == 200, response.json()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        response = cloud.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "standard_plan", "external_id": "s1"}}, format="json")
    assert response.status_code == 200, response.json()
    with time_machine.travel(at(2026, 3, 10), tick=False):
        for index, props in enumerate([{"region": "africa", "provider": "aws", "gb": "10"},
                                       {"region": "europe", "provider": "gcp", "gb": "4"},
                                       {"region": "africa", "gb": "3"}]):
            response = cloud.post("/api/v1/events", {"event": {
                "transaction_id": f"t{index}", "external_subscription_id": "s1", "code": "gb",
                "timestamp": int(at(2026, 3, 2 + index).timestamp()), "properties": props}}, format="json")
            assert response.status_code == 200, response.json()
    return cloud, metric, response


def test_the_plan_keeps_lagos_filters_and_answers_them(filtered):
    cloud, _, _ = filtered
    charge = cloud.get("/api/v1/plans/standard_plan").json()["plan"]["charges"][0]
    assert charge["filters"] == [
        {"invoice_display_name": "Africa & AWS", "properties": {"amount": "1"},
         "values": {"region": ["africa"], "provider": ["aws"]}},
        {"invoice_display_name": "Other regions and providers", "properties": {"amount": "0.5"},
         "values": {"region": [ALL], "provider": [ALL]}},
    ]


def test_a_plan_update_keeps_a_filter_with_the_same_values_and_retires_the_others(filtered):
    cloud, metric, _ = filtered
    first = ChargeFilter.objects.get(values={"region": ["africa"], "provider": ["aws"]})
    changed = [{**LAGO_FILTERS[0], "properties": {"amount": "1.5"}},
               {"values": {"region": ["us"]}, "properties": {"amount": "3"}}]
    response = cloud.put("/api/v1/plans/standard_plan", _plan_body(metric, changed), format="json")
    assert response.status_code == 200, response.json()
    assert [item["values"] for item in response.json()["plan"]["charges"][0]["filters"]] == [
        {"region": ["africa"], "provider": ["aws"]}, {"region": ["us"]}]
    first.refresh_from_db()
    assert first.properties == {"amount": "1.5"} and first.deleted_at is None
    assert ChargeFilter.objects.filter(deleted_at__isnull=False).count() == 1  # kept for the fees that billed it


@pytest.mark.parametrize(("filters", "details"), [
    ([{"values": {"zone": ["a"]}, "properties": {"amount": "1"}}], {"charges.0.filters.0.values": ["value_is_invalid"]}),
    ([{"values": {"region": ["mars"]}, "properties": {"amount": "1"}}],
     {"charges.0.filters.0.values": ["value_is_invalid"]}),
    ([{"values": {"region": ["us"]}, "properties": {"amount": "-1"}}],
     {"charges.0.filters.0.properties.amount": ["invalid_amount"]}),
    ([{"values": {}, "properties": {"amount": "1"}}], {"charges.0.filters.0.values": ["value_is_mandatory"]}),
], ids=["unknown key", "unlisted value", "bad price", "no values"])
def test_filters_the_metric_does_not_offer_are_422(cloud, filters, details):
    metric = _metric(cloud)
    response = cloud.post("/api/v1/plans", _plan_body(metric, filters), format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == details


def test_current_usage_and_the_invoice_show_each_filter_as_lago_does(filtered):
    cloud, _, _ = filtered
    with time_machine.travel(at(2026, 3, 20), tick=False):
        usage = cloud.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "s1"}).json()
        projected = cloud.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "s1"}).json()
    projected_filters = projected["customer_projected_usage"]["charges_usage"][0]["filters"]
    assert [(item["values"], item["amount_cents"]) for item in projected_filters] == [
        ({"region": ["africa"], "provider": ["aws"]}, 1000), ({"region": [ALL], "provider": [ALL]}, 200), (None, 600)]
    assert all(item["projected_amount_cents"] > item["amount_cents"] for item in projected_filters)
    charge = usage["customer_usage"]["charges_usage"][0]
    # 10 × $1 + 4 × $0.50 + 3 × $2 (Africa without a provider: the charge's own price)
    assert (charge["units"], charge["amount_cents"], charge["events_count"]) == ("17", 1800, 3)
    assert [(item["invoice_display_name"], item["values"], item["units"], item["amount_cents"])
            for item in charge["filters"]] == [
        ("Africa & AWS", {"region": ["africa"], "provider": ["aws"]}, "10", 1000),
        ("Other regions and providers", {"region": [ALL], "provider": [ALL]}, "4", 200),
        (None, None, "3", 600),
    ]

    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = cloud.get("/api/v1/invoices").json()["invoices"][0]
    charges = [fee for fee in invoice["fees"] if fee["item"]["type"] == "charge"]
    by_name = {fee["item"]["filter_invoice_display_name"]: fee for fee in charges}
    assert {name: fee["amount_cents"] for name, fee in by_name.items()} == {
        "Africa & AWS": 1000, "Other regions and providers": 200, None: 600}
    africa = by_name["Africa & AWS"]
    stored = ChargeFilter.objects.get(invoice_display_name="Africa & AWS")
    assert africa["lago_charge_filter_id"] == str(stored.lago_id)
    assert africa["item"]["filters"] == {"region": ["africa"], "provider": ["aws"]}
    assert by_name[None]["lago_charge_filter_id"] is None and by_name[None]["item"]["filters"] is None
    fee = cloud.get(f"/api/v1/fees/{africa['lago_id']}").json()["fee"]
    assert fee["lago_charge_filter_id"] == str(stored.lago_id)
    past = cloud.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1"}).json()
    billed = past["usage_periods"][0]["charges_usage"][0]
    assert billed["amount_cents"] == 1800 and [(item["invoice_display_name"], item["units"], item["amount_cents"])
                                              for item in billed["filters"]] == [
        ("Africa & AWS", "10", 1000), ("Other regions and providers", "4", 200), (None, "3", 600)]


def test_plan_overrides_keep_the_charges_filters_and_may_replace_them_billed_through_the_close(cloud, settings):
    """A subscription on its own copy of a filtered plan (`plan_overrides`) bills per filter like the plan; an
    override naming `filters` replaces them on its copy only."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    metric = _metric(cloud)
    plan = cloud.post("/api/v1/plans", _plan_body(metric, LAGO_FILTERS), format="json").json()["plan"]
    charge_id = plan["charges"][0]["lago_id"]
    overrides = {
        "s1": {"amount_cents": 500},  # filters copied as they are
        "s2": {"charges": [{"id": charge_id, "filters": [
            {"values": {"region": ["africa"], "provider": ["aws"]}, "invoice_display_name": "Africa & AWS",
             "properties": {"amount": "0.25"}}]}]},
    }
    for external_id, override in overrides.items():
        with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
            response = cloud.post("/api/v1/subscriptions", {"subscription": {
                "external_customer_id": "acme", "plan_code": "standard_plan", "external_id": external_id,
                "plan_overrides": override}}, format="json")
        assert response.status_code == 200, response.json()
        with time_machine.travel(at(2026, 3, 10), tick=False):
            for index, props in enumerate([{"region": "africa", "provider": "aws", "gb": "10"},
                                           {"region": "europe", "provider": "gcp", "gb": "4"}]):
                assert cloud.post("/api/v1/events", {"event": {
                    "transaction_id": f"{external_id}-{index}", "external_subscription_id": external_id, "code": "gb",
                    "timestamp": int(at(2026, 3, 2 + index).timestamp()), "properties": props}},
                    format="json").status_code == 200

    periods_close(as_of=at(2026, 4, 1, 1, 0))

    fees: dict[str, dict] = {}
    for invoice in cloud.get("/api/v1/invoices").json()["invoices"]:
        for fee in invoice["fees"]:
            if fee["item"]["type"] == "charge":
                sub = fee["external_subscription_id"]
                fees.setdefault(sub, {})[fee["item"]["filter_invoice_display_name"]] = fee["amount_cents"]
    # s1: the plan's filters: 10 × $1 + 4 × $0.50; s2: Africa & AWS at $0.25, Europe at the charge's own $2.
    assert fees["s1"] == {"Africa & AWS": 1000, "Other regions and providers": 200, None: 0}
    assert fees["s2"] == {"Africa & AWS": 250, None: 800}
    assert len(ChargeFilter.objects.filter(charge__plan__code="standard_plan", charge__plan__parent__isnull=True,
                                           deleted_at__isnull=True)) == 2  # the catalog's plan is unchanged

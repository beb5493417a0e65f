"""graduated_percentage and dynamic charges through the API (issue 21): Lago's bodies and 422s."""
from __future__ import annotations

import pytest
import time_machine

from apps.invoicing.close import periods_close
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db

TIERS = [{"from_value": 0, "to_value": 1000, "rate": "1", "flat_amount": "200"},
         {"from_value": 1001, "to_value": None, "rate": "2", "flat_amount": "300"}]


def _metric(client, code, aggregation_type="sum_agg"):
    body = {"billable_metric": {"name": code, "code": code, "aggregation_type": aggregation_type,
                                "field_name": None if aggregation_type == "count_agg" else code}}
    response = client.post("/api/v1/billable_metrics", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["billable_metric"]


def _plan(client, charges):
    return client.post("/api/v1/plans", {"plan": {"name": "Fin", "code": "fin", "interval": "monthly",
                                                  "amount_cents": 0, "amount_currency": "CAD", "charges": charges}},
                       format="json")


@pytest.mark.parametrize(("aggregation", "model", "properties", "details"), [
    ("count_agg", "dynamic", {}, {"charges.0.charge_model": ["invalid_aggregation_type_or_charge_model"]}),
    ("latest_agg", "graduated_percentage", {"graduated_percentage_ranges": TIERS},
     {"charges.0.billable_metric": ["invalid_value"]}),
    ("sum_agg", "graduated_percentage", {},
     {"charges.0.graduated_percentage_ranges": ["missing_graduated_percentage_ranges"]}),
], ids=["dynamic needs a sum", "no latest", "no tiers"])
def test_lagos_422s(cloud, aggregation, model, properties, details):
    metric = _metric(cloud, "m", aggregation)
    response = _plan(cloud, [{"billable_metric_id": metric["lago_id"], "charge_model": model, "properties": properties}])
    assert response.status_code == 422
    assert response.json()["error_details"] == details


def test_both_models_bill_and_answer_in_lagos_bodies(cloud, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    volume, tokens = _metric(cloud, "volume"), _metric(cloud, "tokens")
    response = _plan(cloud, [
        {"billable_metric_id": volume["lago_id"], "charge_model": "graduated_percentage",
         "properties": {"graduated_percentage_ranges": TIERS}},
        {"billable_metric_id": tokens["lago_id"], "charge_model": "dynamic", "properties": {}},
    ])
    assert response.status_code == 200, response.json()
    assert [charge["charge_model"] for charge in response.json()["plan"]["charges"]] == ["graduated_percentage",
                                                                                       "dynamic"]
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        assert cloud.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "acme", "plan_code": "fin", "external_id": "s1"}}, format="json").status_code == 200
    with time_machine.travel(at(2026, 3, 10), tick=False):
        sent = cloud.post("/api/v1/events/batch", {"events": [
            {"transaction_id": "v1", "external_subscription_id": "s1", "code": "volume",
             "timestamp": int(at(2026, 3, 2).timestamp()), "properties": {"volume": "1050"}},
            {"transaction_id": "k1", "external_subscription_id": "s1", "code": "tokens",
             "timestamp": int(at(2026, 3, 2).timestamp()), "properties": {"tokens": "7"},
             "precise_total_amount_cents": "250.5"},
        ]}, format="json")
        assert sent.status_code == 200, sent.json()
        bad = cloud.post("/api/v1/events", {"event": {
            "transaction_id": "k2", "external_subscription_id": "s1", "code": "tokens",
            "timestamp": int(at(2026, 3, 2).timestamp()), "properties": {"tokens": "1"},
            "precise_total_amount_cents": "lots"}}, format="json")
    assert bad.status_code == 422
    assert cloud.get("/api/v1/events/k1").json()["event"]["precise_total_amount_cents"] == "250.5"
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = {fee["item"]["code"]: fee for fee in cloud.get("/api/v1/invoices").json()["invoices"][0]["fees"]}
    # 1,000 × 1 % + $200, 50 × 2 % + $300 = $511; 250.5 cents rounds half-up to 251
    assert (fees["volume"]["amount_cents"], fees["tokens"]["amount_cents"]) == (51100, 251)
    assert fees["volume"]["amount_details"]["graduated_percentage_ranges"][1] == {
        "units": "50", "from_value": 1001, "to_value": None, "flat_unit_amount": "300", "rate": "2",
        "per_unit_total_amount": "1", "total_with_flat_amount": "301"}

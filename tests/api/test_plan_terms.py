"""Plan bodies carry Lago's `minimum_commitment` (and validate against Lago 1.51's Plan schema)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

PLAN = {"code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD"}


def test_plan_created_with_a_minimum_commitment_returns_it(cloud):
    body = {**PLAN, "minimum_commitment": {"amount_cents": 100000, "invoice_display_name": "Minimum", "tax_codes": []}}
    response = cloud.post("/api/v1/plans", {"plan": body}, format="json")
    assert response.status_code == 200, response.json()
    commitment = response.json()["plan"]["minimum_commitment"]
    assert commitment["amount_cents"] == 100000 and commitment["invoice_display_name"] == "Minimum"
    assert commitment["plan_code"] == "pro" and commitment["interval"] == "monthly"
    assert cloud.get("/api/v1/plans/pro").json()["plan"]["minimum_commitment"]["lago_id"] == commitment["lago_id"]


def test_plan_update_changes_keeps_or_removes_the_commitment(cloud):
    cloud.post("/api/v1/plans", {"plan": {**PLAN, "minimum_commitment": {"amount_cents": 5000}}}, format="json")

    changed = cloud.put("/api/v1/plans/pro", {"plan": {"minimum_commitment": {"amount_cents": 7000}}}, format="json")
    assert changed.json()["plan"]["minimum_commitment"]["amount_cents"] == 7000
    kept = cloud.put("/api/v1/plans/pro", {"plan": {"name": "Pro 2", "minimum_commitment": None}}, format="json")
    assert kept.json()["plan"]["minimum_commitment"]["amount_cents"] == 7000
    removed = cloud.put("/api/v1/plans/pro", {"plan": {"minimum_commitment": {}}}, format="json")
    assert removed.json()["plan"]["minimum_commitment"] is None


def test_a_negative_commitment_is_refused_with_lago_validation_errors(cloud):
    body = {**PLAN, "minimum_commitment": {"amount_cents": -1}}
    response = cloud.post("/api/v1/plans", {"plan": body}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"minimum_commitment.amount_cents": ["value_is_out_of_range"]}
    assert cloud.get("/api/v1/plans/pro").status_code == 404


def test_plan_usage_thresholds_are_set_kept_and_replaced(cloud):
    thresholds = [{"amount_cents": 500, "threshold_display_name": "First"}, {"amount_cents": 2000},
                  {"amount_cents": 50000, "recurring": True}]
    created = cloud.post("/api/v1/plans", {"plan": {**PLAN, "usage_thresholds": thresholds}}, format="json")
    assert created.status_code == 200, created.json()
    body = created.json()["plan"]["usage_thresholds"]
    assert [(t["amount_cents"], t["recurring"], t["threshold_display_name"]) for t in body] == [
        (500, False, "First"), (2000, False, None), (50000, True, None)]
    first_id = body[0]["lago_id"]

    updated = cloud.put("/api/v1/plans/pro", {"plan": {"usage_thresholds": [{"amount_cents": 500}]}}, format="json")
    [kept] = updated.json()["plan"]["usage_thresholds"]
    assert kept["lago_id"] == first_id and kept["threshold_display_name"] is None


def test_two_recurring_thresholds_are_refused(cloud):
    thresholds = [{"amount_cents": 500, "recurring": True}, {"amount_cents": 900, "recurring": True}]
    response = cloud.post("/api/v1/plans", {"plan": {**PLAN, "usage_thresholds": thresholds}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"usage_thresholds": ["only_one_recurring_threshold"]}

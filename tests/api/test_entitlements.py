"""Lago's features and entitlements: /features, /plans/{code}/entitlements, /subscriptions/{id}/entitlements."""
from __future__ import annotations

import pytest

from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db

SEATS = {"code": "seats", "name": "Seats", "description": "Users per account", "privileges": [
    {"code": "max", "name": "Maximum", "value_type": "integer"},
    {"code": "root", "value_type": "boolean"},
    {"code": "provider", "value_type": "select", "config": {"select_options": ["okta", "google"]}}]}


@pytest.fixture
def featured(cloud):
    billing = Billing(cloud.service)
    billing.plan("pro")
    billing.customer()
    billing.subscribe("s1", billing.plan("pro2"), when=at(2026, 3, 1, 0, 0))
    created = cloud.post("/api/v1/features", {"feature": SEATS}, format="json")
    assert created.status_code == 200, created.json()
    return cloud


def test_feature_crud(featured):
    cloud = featured
    body = cloud.get("/api/v1/features/seats").json()["feature"]
    assert [(p["code"], p["value_type"]) for p in body["privileges"]] == [
        ("max", "integer"), ("root", "boolean"), ("provider", "select")]
    assert cloud.post("/api/v1/features", {"feature": SEATS}, format="json").json()["error_details"] == {
        "code": ["value_already_exist"]}
    updated = cloud.put("/api/v1/features/seats", {"feature": {"name": "Users", "privileges": [
        {"code": "provider", "config": {"select_options": ["azure"]}}]}}, format="json").json()["feature"]
    assert updated["name"] == "Users"
    assert updated["privileges"][2]["config"] == {"select_options": ["okta", "google", "azure"]}
    after = cloud.delete("/api/v1/features/seats/privileges/root").json()["feature"]
    assert [p["code"] for p in after["privileges"]] == ["max", "provider"]
    assert [f["code"] for f in cloud.get("/api/v1/features").json()["features"]] == ["seats"]
    assert cloud.delete("/api/v1/features/seats").json()["feature"]["code"] == "seats"
    assert cloud.get("/api/v1/features/seats").status_code == 404


def test_plan_entitlements_replace_merge_and_type_values(featured):
    cloud = featured
    posted = cloud.post("/api/v1/plans/pro/entitlements",
                        {"entitlements": {"seats": {"max": 10, "root": True}}}, format="json")
    assert posted.status_code == 200, posted.json()
    [entitlement] = posted.json()["entitlements"]
    assert {p["code"]: p["value"] for p in entitlement["privileges"]} == {"max": 10, "root": True}

    patched = cloud.patch("/api/v1/plans/pro/entitlements",
                          {"entitlements": {"seats": {"provider": "okta"}}}, format="json").json()["entitlements"]
    assert {p["code"]: p["value"] for p in patched[0]["privileges"]} == {"max": 10, "root": True, "provider": "okta"}

    replaced = cloud.post("/api/v1/plans/pro/entitlements",
                          {"entitlements": {"seats": {"max": "25"}}}, format="json").json()["entitlements"]
    assert {p["code"]: p["value"] for p in replaced[0]["privileges"]} == {"max": 25}

    bad = cloud.patch("/api/v1/plans/pro/entitlements", {"entitlements": {"seats": {"provider": "ldap"}}},
                      format="json")
    assert bad.status_code == 422 and bad.json()["error_details"] == {"privilege.value": ["value_is_invalid"]}
    unknown = cloud.patch("/api/v1/plans/pro/entitlements", {"entitlements": {"nope": {}}}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "feature_not_found"

    assert cloud.get("/api/v1/plans/pro/entitlements/seats").json()["entitlement"]["code"] == "seats"
    removed = cloud.delete("/api/v1/plans/pro/entitlements/seats/privileges/max").json()["entitlement"]
    assert removed["privileges"] == []
    assert cloud.delete("/api/v1/plans/pro/entitlements/seats").status_code == 200
    assert cloud.get("/api/v1/plans/pro/entitlements").json()["entitlements"] == []


def test_subscription_entitlements_override_and_remove_plan_values(featured):
    cloud = featured
    cloud.post("/api/v1/plans/pro2/entitlements", {"entitlements": {"seats": {"max": 10, "root": False}}},
               format="json")
    patched = cloud.patch("/api/v1/subscriptions/s1/entitlements", {"entitlements": {"seats": {"max": 50}}},
                          format="json")
    assert patched.status_code == 200, patched.json()
    [seats] = patched.json()["entitlements"]
    values = {p["code"]: (p["value"], p["plan_value"], p["override_value"]) for p in seats["privileges"]}
    assert values == {"max": (50, 10, 50), "root": (False, False, None)}
    assert seats["overrides"] == {"max": 50}

    back = cloud.delete("/api/v1/subscriptions/s1/entitlements/seats/privileges/max").json()["entitlement"]
    assert back["overrides"] == {}
    cloud.delete("/api/v1/subscriptions/s1/entitlements/seats")
    assert cloud.get("/api/v1/subscriptions/s1/entitlements").json()["entitlements"] == []


def test_another_service_sees_no_features_or_entitlements(featured, desk):
    assert desk.get("/api/v1/features/seats").status_code == 404
    assert desk.get("/api/v1/features").json()["features"] == []
    assert desk.get("/api/v1/plans/pro/entitlements").status_code == 404
    assert desk.get("/api/v1/subscriptions/s1/entitlements").status_code == 404

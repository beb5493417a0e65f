"""Coupons (`/coupons`) and applied coupons (`/applied_coupons`) with Lago's bodies and errors (issue 20)."""
from __future__ import annotations

import pytest

from apps.catalog.models import AppliedCoupon

pytestmark = pytest.mark.django_db

STARTUP = {"name": "Startup Deal", "code": "startup_deal", "coupon_type": "fixed_amount", "amount_cents": 5000,
           "amount_currency": "CAD", "frequency": "recurring", "frequency_duration": 6, "reusable": True,
           "expiration": "time_limit", "expiration_at": "2099-08-08T23:59:59Z"}
PERCENT = {"name": "Ten", "code": "ten", "coupon_type": "percentage", "percentage_rate": "10.5", "frequency": "forever",
           "expiration": "no_expiration"}


def _create(client, body):
    return client.post("/api/v1/coupons", {"coupon": body}, format="json")


@pytest.fixture
def plan(cloud_catalog):
    return cloud_catalog


def test_coupon_crud_with_lago_s_bodies(plan):
    cloud = plan
    created = _create(cloud, {**STARTUP, "applies_to": {"plan_codes": ["pro"]}})
    assert created.status_code == 200, created.json()
    body = created.json()["coupon"]
    assert {k: body[k] for k in ("code", "coupon_type", "amount_cents", "amount_currency", "percentage_rate",
                                 "frequency", "frequency_duration", "reusable", "limited_plans", "plan_codes",
                                 "limited_billable_metrics", "billable_metric_codes", "expiration", "expiration_at",
                                 "terminated_at")} == {
        "code": "startup_deal", "coupon_type": "fixed_amount", "amount_cents": 5000, "amount_currency": "CAD",
        "percentage_rate": None, "frequency": "recurring", "frequency_duration": 6, "reusable": True,
        "limited_plans": True, "plan_codes": ["pro"], "limited_billable_metrics": False, "billable_metric_codes": [],
        "expiration": "time_limit", "expiration_at": "2099-08-08T23:59:59Z", "terminated_at": None}
    percent = _create(cloud, {**PERCENT, "applies_to": {"billable_metric_codes": ["hours"]}}).json()["coupon"]
    assert (percent["percentage_rate"], percent["amount_cents"], percent["billable_metric_codes"]) == ("10.5", None,
                                                                                                        ["hours"])
    assert cloud.get("/api/v1/coupons/ten").json()["coupon"]["lago_id"] == percent["lago_id"]
    renamed = cloud.put("/api/v1/coupons/ten", {"coupon": {"name": "Ten and a half", "percentage_rate": "12"}},
                        format="json").json()["coupon"]
    assert (renamed["name"], renamed["percentage_rate"]) == ("Ten and a half", "12")
    listed = cloud.get("/api/v1/coupons").json()
    assert [c["code"] for c in listed["coupons"]] == ["ten", "startup_deal"] and listed["meta"]["total_count"] == 2
    deleted = cloud.delete("/api/v1/coupons/ten")
    assert deleted.status_code == 200 and deleted.json()["coupon"]["terminated_at"] is not None
    assert cloud.get("/api/v1/coupons/ten").json() == {"status": 404, "error": "Not Found", "code": "coupon_not_found"}


def test_coupon_errors(plan):
    cloud = plan
    assert _create(cloud, STARTUP).status_code == 200
    assert _create(cloud, STARTUP).json()["error_details"] == {"code": ["value_already_exist"]}
    missing = _create(cloud, {**STARTUP, "code": "x", "amount_cents": None, "frequency_duration": None,
                              "expiration_at": None})
    assert missing.status_code == 422
    assert missing.json()["error_details"] == {"amount_cents": ["value_is_mandatory"],
                                               "frequency_duration": ["value_is_mandatory"],
                                               "expiration_at": ["value_is_mandatory"]}
    past = _create(cloud, {**STARTUP, "code": "y", "expiration_at": "2020-01-01T00:00:00Z"})
    assert past.json()["error_details"] == {"expiration_at": ["invalid_date"]}
    bad = _create(cloud, {**PERCENT, "percentage_rate": "101", "frequency": "sometimes"})
    assert set(bad.json()["error_details"]) == {"percentage_rate", "frequency"}
    unknown_plan = _create(cloud, {**PERCENT, "applies_to": {"plan_codes": ["nope"]}})
    assert (unknown_plan.status_code, unknown_plan.json()["code"]) == (404, "plan_not_found")
    both = _create(cloud, {**PERCENT, "applies_to": {"plan_codes": ["pro"], "billable_metric_codes": ["hours"]}})
    assert (both.status_code, both.json()["code"]) == (405, "only_one_limitation_type_per_coupon_allowed")
    assert cloud.post("/api/v1/coupons", {"coupons": STARTUP}, format="json").status_code == 400


def _apply(client, **body):
    return client.post("/api/v1/applied_coupons", {"applied_coupon": {"external_customer_id": "acme", **body}},
                       format="json")


def test_apply_list_and_remove_with_lago_s_bodies(plan):
    cloud = plan
    _create(cloud, STARTUP)
    _create(cloud, {**PERCENT, "reusable": False})
    applied = _apply(cloud, coupon_code="startup_deal", amount_cents=6000, frequency_duration=3)
    assert applied.status_code == 200, applied.json()
    body = applied.json()["applied_coupon"]
    assert {k: body[k] for k in ("coupon_code", "coupon_name", "external_customer_id", "status", "amount_cents",
                                 "amount_cents_remaining", "amount_currency", "frequency", "frequency_duration",
                                 "frequency_duration_remaining", "expiration_at", "terminated_at")} == {
        "coupon_code": "startup_deal", "coupon_name": "Startup Deal", "external_customer_id": "acme",
        "status": "active", "amount_cents": 6000, "amount_cents_remaining": None, "amount_currency": "CAD",
        "frequency": "recurring", "frequency_duration": 3, "frequency_duration_remaining": 3,
        "expiration_at": "2099-08-08T23:59:59Z", "terminated_at": None}
    customer = cloud.get("/api/v1/customers/acme").json()["customer"]
    assert body["lago_customer_id"] == customer["lago_id"]

    once = _apply(cloud, coupon_code="ten")
    assert once.status_code == 200 and once.json()["applied_coupon"]["percentage_rate"] == "10.5"
    again = _apply(cloud, coupon_code="ten")
    assert (again.status_code, again.json()["error_details"]) == (422, {"coupon": ["coupon_is_not_reusable"]})
    assert _apply(cloud, coupon_code="nope").json()["code"] == "coupon_not_found"
    assert _apply(cloud, coupon_code="ten", external_customer_id="nobody").json()["code"] == "customer_not_found"

    listed = cloud.get("/api/v1/applied_coupons", {"external_customer_id": "acme"}).json()
    assert [a["coupon_code"] for a in listed["applied_coupons"]] == ["ten", "startup_deal"]
    assert cloud.get("/api/v1/applied_coupons", {"coupon_code[]": "ten"}).json()["meta"]["total_count"] == 1
    assert cloud.get("/api/v1/customers/acme/applied_coupons").json()["meta"]["total_count"] == 2

    removed = cloud.delete(f"/api/v1/customers/acme/applied_coupons/{body['lago_id']}")
    assert removed.status_code == 200
    assert removed.json()["applied_coupon"]["status"] == "terminated"
    assert removed.json()["applied_coupon"]["terminated_at"] is not None
    assert cloud.get("/api/v1/applied_coupons", {"status": "active"}).json()["meta"]["total_count"] == 1
    gone = cloud.delete("/api/v1/customers/acme/applied_coupons/00000000-0000-0000-0000-000000000000")
    assert gone.json() == {"status": 404, "error": "Not Found", "code": "applied_coupon_not_found"}

    # Deleting a coupon terminates its applications still active (Lago).
    cloud.delete("/api/v1/coupons/ten")
    assert set(AppliedCoupon.objects.values_list("status", flat=True)) == {"terminated"}


def test_a_fixed_coupon_in_another_currency_than_the_customer_s_is_refused(plan):
    cloud = plan
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "currency": "CAD"}}, format="json")
    _create(cloud, {**STARTUP, "amount_currency": "USD"})
    refused = _apply(cloud, coupon_code="startup_deal")
    assert refused.json()["error_details"] == {"currency": ["currencies_does_not_match"]}
    assert _apply(cloud, coupon_code="startup_deal", amount_currency="CAD").status_code == 200


def test_each_service_sees_and_applies_only_its_own_coupons(plan, desk):
    cloud = plan
    _create(cloud, STARTUP)
    applied = _apply(cloud, coupon_code="startup_deal").json()["applied_coupon"]
    desk.post("/api/v1/customers", {"customer": {"external_id": "acme"}}, format="json")
    assert desk.get("/api/v1/coupons").json()["meta"]["total_count"] == 0
    assert desk.get("/api/v1/coupons/startup_deal").status_code == 404
    assert _apply(desk, coupon_code="startup_deal").json()["code"] == "coupon_not_found"
    assert desk.get("/api/v1/applied_coupons").json()["meta"]["total_count"] == 0
    assert desk.delete(f"/api/v1/customers/acme/applied_coupons/{applied['lago_id']}").status_code == 404
    assert _create(desk, STARTUP).status_code == 200  # the same code in another service's catalog

"""POST and PUT /subscriptions with Lago's `plan_overrides`: the subscription is billed on its own copy of the plan,
through the close, and the plan itself is unchanged for everyone else."""
from __future__ import annotations

import pytest

from apps.catalog.models import Plan
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.subscriptions.models import Subscription
from tests.integration.invoicing.conftest import at, fake_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(cloud):
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    metric = cloud.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "GB", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb"}}, format="json").json()
    plan = cloud.post("/api/v1/plans", {"plan": {
        "code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 10000, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric["billable_metric"]["lago_id"], "charge_model": "standard",
                     "properties": {"amount": "1"}}]}}, format="json").json()["plan"]
    return plan


def _subscribe(cloud, plan, overrides, external_id="s1"):
    body = {"external_customer_id": "acme", "plan_code": "pro", "external_id": external_id,
            "subscription_at": "2026-03-01T05:00:00Z", "plan_overrides": overrides}
    return cloud.post("/api/v1/subscriptions", {"subscription": body}, format="json")


def test_overrides_bill_through_the_close_and_leave_the_plan_as_it_was(cloud, catalog, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    charge_id = catalog["charges"][0]["lago_id"]
    overrides = {"amount_cents": 5000, "name": "Pro for Acme", "minimum_commitment": {"amount_cents": 9000},
                 "charges": [{"id": charge_id, "properties": {"amount": "0.5"}}],
                 "usage_thresholds": [{"amount_cents": 100000}]}
    response = _subscribe(cloud, catalog, overrides)
    assert response.status_code == 200, response.json()
    plan = response.json()["subscription"]["plan"]
    assert (plan["code"], plan["amount_cents"], plan["name"]) == ("pro", 5000, "Pro for Acme")
    assert plan["minimum_commitment"]["amount_cents"] == 9000
    assert plan["charges"][0]["properties"] == {"amount": "0.5"}
    assert [t["amount_cents"] for t in plan["usage_thresholds"]] == [100000]
    # The catalog's plan is unchanged and listed once.
    assert cloud.get("/api/v1/plans/pro").json()["plan"]["amount_cents"] == 10000
    assert [p["code"] for p in cloud.get("/api/v1/plans").json()["plans"]] == ["pro"]

    subscription = Subscription.objects.get(external_id="s1")
    metric_id = subscription.plan.charges.get().billable_metric_id
    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=fake_usage({(subscription.pk, metric_id): ("20", 2)}))

    fees = {fee.fee_type: fee.amount_cents for fee in Invoice.objects.get().fees.all()}
    # base 50.00 + 20 GB × 0.50 = 10.00 = 60.00, under the 90.00 commitment -> 30.00 true-up
    assert fees == {"subscription": 5000, "charge": 1000, "commitment": 3000}


def test_retrying_the_post_keeps_the_subscription_and_its_plan(cloud, catalog):
    first = _subscribe(cloud, catalog, {"amount_cents": 5000}).json()["subscription"]
    again = _subscribe(cloud, catalog, {"amount_cents": 5000}).json()["subscription"]
    plain = _subscribe(cloud, catalog, None).json()["subscription"]
    assert first["lago_id"] == again["lago_id"] == plain["lago_id"]
    assert Plan.objects.filter(code="pro").count() == 2  # the plan and the subscription's copy


def test_put_overrides_change_the_subscriptions_copy_in_place(cloud, catalog):
    charge_id = catalog["charges"][0]["lago_id"]
    created = _subscribe(cloud, catalog, {"amount_cents": 5000}).json()["subscription"]["plan"]
    body = {"plan_overrides": {"amount_cents": 7000, "charges": [{"id": charge_id, "min_amount_cents": 1500}]}}
    updated = cloud.put("/api/v1/subscriptions/s1", {"subscription": body}, format="json")
    assert updated.status_code == 200, updated.json()
    plan = updated.json()["subscription"]["plan"]
    assert plan["lago_id"] == created["lago_id"] and plan["amount_cents"] == 7000
    assert plan["charges"][0]["min_amount_cents"] == 1500


def test_put_overrides_move_a_plain_subscription_to_its_own_copy(cloud, catalog):
    _subscribe(cloud, catalog, None)
    updated = cloud.put("/api/v1/subscriptions/s1", {"subscription": {"plan_overrides": {"amount_cents": 100}}},
                        format="json").json()["subscription"]
    assert updated["plan"]["amount_cents"] == 100 and updated["plan"]["lago_id"] != catalog["lago_id"]
    assert cloud.get("/api/v1/plans/pro").json()["plan"]["amount_cents"] == 10000


def test_invalid_overrides_are_refused_before_anything_is_written(cloud, catalog):
    response = _subscribe(cloud, catalog, {"amount_cents": -1})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"plan_overrides.amount_cents": ["value_is_out_of_range"]}
    assert Subscription.objects.count() == 0 and Plan.objects.count() == 1

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
import time_machine

from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_activate_due

pytestmark = pytest.mark.django_db


def _plan(client, code, amount_cents, interval="monthly"):
    body = {"plan": {"code": code, "name": code, "interval": interval, "amount_cents": amount_cents, "amount_currency": "CAD"}}
    assert client.post("/api/v1/plans", body, format="json").status_code == 200


def _subscribe(client, plan_code, **extra):
    body = {"subscription": {"external_customer_id": "acme", "plan_code": plan_code, "external_id": "sub", **extra}}
    return client.post("/api/v1/subscriptions", body, format="json")


@time_machine.travel(datetime(2026, 3, 10, 15, tzinfo=dt_timezone.utc), tick=False)
def test_create_is_idempotent_and_creates_unknown_customer(cloud):
    _plan(cloud, "basic", 1000)
    first = _subscribe(cloud, "basic").json()["subscription"]
    second = _subscribe(cloud, "basic").json()["subscription"]
    assert first["lago_id"] == second["lago_id"]
    assert first["status"] == "active"
    assert first["plan"]["code"] == "basic"
    assert first["current_billing_period_started_at"] == "2026-03-01T05:00:00Z"  # Toronto midnight
    assert first["current_billing_period_ending_at"] == "2026-04-01T04:00:00Z"
    assert cloud.get("/api/v1/customers/acme").status_code == 200


@time_machine.travel(datetime(2026, 3, 10, 15, tzinfo=dt_timezone.utc), tick=False)
def test_upgrade_applies_at_once(cloud):
    _plan(cloud, "basic", 1000)
    _plan(cloud, "pro", 5000)
    old = _subscribe(cloud, "basic").json()["subscription"]
    new = _subscribe(cloud, "pro").json()["subscription"]
    assert new["lago_id"] != old["lago_id"]
    assert new["status"] == "active"
    assert new["previous_plan_code"] == "basic"
    previous = Subscription.objects.get(lago_id=old["lago_id"])
    assert previous.status == "terminated"


def test_downgrade_waits_for_period_end(cloud):
    with time_machine.travel(datetime(2026, 3, 10, 15, tzinfo=dt_timezone.utc), tick=False):
        _plan(cloud, "basic", 1000)
        _plan(cloud, "pro", 5000)
        _subscribe(cloud, "pro", billing_time="calendar")
        pending = _subscribe(cloud, "basic").json()["subscription"]
        assert pending["status"] == "pending"
        current = cloud.get("/api/v1/subscriptions/sub").json()["subscription"]
        assert current["plan_code"] == "pro"
        assert current["next_plan_code"] == "basic"
        assert current["downgrade_plan_date"] == "2026-04-01"
        assert subscription_activate_due() == 0
    with time_machine.travel(datetime(2026, 4, 1, 4, 0, 1, tzinfo=dt_timezone.utc), tick=False):
        assert subscription_activate_due() == 1
        current = cloud.get("/api/v1/subscriptions/sub").json()["subscription"]
        assert current["plan_code"] == "basic"
        assert current["previous_plan_code"] == "pro"
    statuses = sorted(Subscription.objects.values_list("plan__code", "status"))
    assert statuses == [("basic", "active"), ("pro", "terminated")]


def test_future_start_is_pending_and_can_be_canceled(cloud):
    _plan(cloud, "basic", 1000)
    response = _subscribe(cloud, "basic", subscription_at="2099-01-01T00:00:00Z").json()["subscription"]
    assert response["status"] == "pending"
    assert cloud.get("/api/v1/subscriptions/sub").status_code == 404  # Lago looks up active by default
    assert cloud.get("/api/v1/subscriptions/sub?status=pending").status_code == 200
    canceled = cloud.delete("/api/v1/subscriptions/sub?status=pending").json()["subscription"]
    assert canceled["status"] == "canceled"


def test_terminate_twice_is_404_the_second_time(cloud):
    _plan(cloud, "basic", 1000)
    _subscribe(cloud, "basic")
    assert cloud.delete("/api/v1/subscriptions/sub").json()["subscription"]["status"] == "terminated"
    assert cloud.delete("/api/v1/subscriptions/sub").status_code == 404


def test_list_filters(cloud):
    _plan(cloud, "basic", 1000)
    _subscribe(cloud, "basic")
    assert len(cloud.get("/api/v1/subscriptions?external_customer_id=acme").json()["subscriptions"]) == 1
    assert cloud.get("/api/v1/subscriptions?external_customer_id=other").json()["subscriptions"] == []
    assert cloud.get("/api/v1/subscriptions?plan_code=none").json()["meta"]["total_count"] == 0
    cloud.delete("/api/v1/subscriptions/sub")
    assert cloud.get("/api/v1/subscriptions").json()["subscriptions"] == []
    assert len(cloud.get("/api/v1/subscriptions?status[]=terminated").json()["subscriptions"]) == 1
    assert cloud.get("/api/v1/subscriptions?status[]=bogus").status_code == 422


def test_deleting_a_customer_terminates_its_subscriptions(cloud):
    _plan(cloud, "basic", 1000)
    _subscribe(cloud, "basic")
    assert cloud.delete("/api/v1/customers/acme").status_code == 200
    assert Subscription.objects.get().status == "terminated"
    assert cloud.get("/api/v1/customers/acme").status_code == 404


@time_machine.travel(datetime(2026, 3, 10, 15, tzinfo=dt_timezone.utc), tick=False)
def test_terminate_takes_lagos_on_termination_credit_note_and_refuses_other_values(cloud):
    _plan(cloud, "basic", 1000)
    _subscribe(cloud, "basic")
    bad = cloud.delete("/api/v1/subscriptions/sub?on_termination_credit_note=cash")
    assert bad.status_code == 422 and bad.json()["error_details"] == {"on_termination_credit_note": ["value_is_invalid"]}
    assert Subscription.objects.get().status == "active"  # nothing written
    body = cloud.delete("/api/v1/subscriptions/sub?on_termination_credit_note=refund").json()["subscription"]
    assert (body["status"], body["on_termination_credit_note"]) == ("terminated", "refund")


@time_machine.travel(datetime(2026, 3, 10, 15, tzinfo=dt_timezone.utc), tick=False)
def test_upgrade_while_a_downgrade_is_pending_cancels_the_downgrade(cloud):
    """Found by the billing state machine: the canceled downgrade kept its link to the subscription being
    upgraded, and the upgrade's successor could not take that (one-to-one) link: a 422 that wrote nothing."""
    _plan(cloud, "basic", 1000)
    _plan(cloud, "plus", 2000)
    _plan(cloud, "pro", 5000)
    _subscribe(cloud, "plus")
    assert _subscribe(cloud, "basic").json()["subscription"]["status"] == "pending"

    response = _subscribe(cloud, "pro")
    assert response.status_code == 200, response.json()
    upgraded = response.json()["subscription"]
    assert (upgraded["status"], upgraded["plan_code"], upgraded["previous_plan_code"]) == ("active", "pro", "plus")
    assert sorted(Subscription.objects.values_list("plan__code", "status")) == [
        ("basic", "canceled"), ("plus", "terminated"), ("pro", "active")]
    plus = Subscription.objects.get(plan__code="plus")
    assert plus.next_subscription.plan.code == "pro"

"""/subscriptions/{external_id}/alerts and the `alert.triggered` webhook (Lago's usage monitoring)."""
from __future__ import annotations

import pytest
import time_machine

from apps.invoicing.models import TriggeredAlert
from apps.invoicing.usage_checks import usage_check_run
from apps.subscriptions.models import Subscription
from apps.usage.models import UsageCheck
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from apps.webhooks.models import WebhookEvent
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db

ALERT = {"alert_type": "current_usage_amount", "code": "usage", "name": "Usage",
         "thresholds": [{"code": "warn", "value": 1000}, {"code": "alert", "value": "2000"},
                        {"code": "every", "value": 1000, "recurring": True}]}


@pytest.fixture
def subscribed(cloud):
    billing = Billing(cloud.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    return cloud


def _ingest(cloud, tx, day, gb):
    usage_events_ingest(service=cloud.service, now=at(2026, 3, day), events=[EventIn(
        transaction_id=tx, external_subscription_id="s1", code="gb", timestamp=int(at(2026, 3, day).timestamp()),
        properties={"gb": gb})])


def _run(day):
    with time_machine.travel(at(2026, 3, day, 11), tick=False):
        usage_check_run(subscription_id=Subscription.objects.get(external_id="s1").pk)


def test_alert_crud(subscribed):
    cloud = subscribed
    created = cloud.post("/api/v1/subscriptions/s1/alerts", {"alert": ALERT}, format="json")
    assert created.status_code == 200, created.json()
    alert = created.json()["alert"]
    assert (alert["alert_type"], alert["code"], alert["external_subscription_id"]) == ("current_usage_amount", "usage", "s1")
    assert [(t["code"], t["value"], t["recurring"]) for t in alert["thresholds"]] == [
        ("warn", "1000", False), ("alert", "2000", False), ("every", "1000", True)]
    assert cloud.get("/api/v1/subscriptions/s1/alerts/usage").json()["alert"]["lago_id"] == alert["lago_id"]
    assert [a["code"] for a in cloud.get("/api/v1/subscriptions/s1/alerts").json()["alerts"]] == ["usage"]

    again = cloud.post("/api/v1/subscriptions/s1/alerts", {"alert": ALERT}, format="json")
    assert again.status_code == 422 and again.json()["error_details"] == {"code": ["value_already_exist"]}

    updated = cloud.put("/api/v1/subscriptions/s1/alerts/usage", {"alert": {
        "name": "Spend", "thresholds": [{"value": 500}]}}, format="json").json()["alert"]
    assert updated["name"] == "Spend" and [t["value"] for t in updated["thresholds"]] == ["500"]

    batch = cloud.post("/api/v1/subscriptions/s1/alerts", {"alerts": [
        {"alert_type": "billable_metric_current_usage_units", "code": "gb", "billable_metric_code": "gb",
         "thresholds": [{"value": "10.5"}]},
        {"alert_type": "lifetime_usage_amount", "code": "life", "thresholds": [{"value": 100000}]}]}, format="json")
    assert batch.status_code == 200, batch.json()
    assert [a["billable_metric"] and a["billable_metric"]["code"] for a in batch.json()["alerts"]] == ["gb", None]

    assert cloud.delete("/api/v1/subscriptions/s1/alerts/usage").json()["alert"]["code"] == "usage"
    assert cloud.get("/api/v1/subscriptions/s1/alerts/usage").status_code == 404
    assert cloud.delete("/api/v1/subscriptions/s1/alerts").status_code == 200
    assert cloud.get("/api/v1/subscriptions/s1/alerts").json()["alerts"] == []


def test_a_metric_alert_needs_a_known_metric(subscribed):
    body = {"alert_type": "billable_metric_current_usage_amount", "code": "x", "thresholds": [{"value": 1}]}
    missing = subscribed.post("/api/v1/subscriptions/s1/alerts", {"alert": body}, format="json")
    assert missing.status_code == 422 and missing.json()["error_details"] == {"billable_metric": ["value_is_mandatory"]}
    unknown = subscribed.post("/api/v1/subscriptions/s1/alerts",
                              {"alert": {**body, "billable_metric_code": "nope"}}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "billable_metric_not_found"


def test_alerts_trigger_once_per_crossing_with_the_webhook(subscribed, django_capture_on_commit_callbacks):
    cloud = subscribed
    cloud.post("/api/v1/subscriptions/s1/alerts", {"alert": ALERT}, format="json")
    with django_capture_on_commit_callbacks(execute=False):
        _ingest(cloud, "t1", 5, "12")  # $12: past $10
    assert UsageCheck.objects.count() == 1  # ingest asked for a check of the watched subscription
    _run(5)
    _run(5)  # nothing new: once per crossing
    _ingest(cloud, "t2", 6, "20")  # $32: past $20, and the recurring $30 past it
    _run(6)

    rows = list(TriggeredAlert.objects.order_by("id"))
    assert [[t["value"] for t in row.crossed_thresholds] for row in rows] == [["1000"], ["2000", "3000"]]
    bodies = [e.payload["triggered_alert"] for e in WebhookEvent.objects.filter(event_type="alert.triggered").order_by("id")]
    assert [(b["previous_value"], b["current_value"]) for b in bodies] == [(0, 1200), (1200, 3200)]
    assert bodies[1]["crossed_thresholds"][1] == {"code": "every", "value": "3000", "recurring": True}
    assert bodies[0]["external_customer_id"] == "acme" and bodies[0]["alert_code"] == "usage"


def test_another_services_subscription_alerts_are_not_found(subscribed, desk):
    assert desk.get("/api/v1/subscriptions/s1/alerts").status_code == 404
    assert desk.post("/api/v1/subscriptions/s1/alerts", {"alert": ALERT}, format="json").status_code == 404

"""GET and PUT /subscriptions/{external_id}/lifetime_usage (Lago's progressive billing)."""
from __future__ import annotations

import pytest
import time_machine

from apps.catalog.models import UsageThreshold
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db


def test_lifetime_usage_reads_current_usage_and_takes_historical_usage(cloud):
    billing = Billing(cloud.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    UsageThreshold.objects.create(plan=plan, amount_cents=1000)
    UsageThreshold.objects.create(plan=plan, amount_cents=5000)
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=cloud.service, now=at(2026, 3, 5), events=[EventIn(
        transaction_id="t1", external_subscription_id="s1", code="gb", timestamp=int(at(2026, 3, 5).timestamp()),
        properties={"gb": "3"})])

    with time_machine.travel(at(2026, 3, 6), tick=False):
        got = cloud.get("/api/v1/subscriptions/s1/lifetime_usage")
        assert got.status_code == 200, got.json()
        body = got.json()["lifetime_usage"]
        assert (body["external_historical_usage_amount_cents"], body["invoiced_usage_amount_cents"],
                body["current_usage_amount_cents"]) == (0, 0, 300)
        assert [t["completion_ratio"] for t in body["usage_thresholds"]] == [0.3, 0.0]

        put = cloud.put("/api/v1/subscriptions/s1/lifetime_usage",
                        {"lifetime_usage": {"external_historical_usage_amount_cents": 2000}}, format="json")
        body = put.json()["lifetime_usage"]
        assert body["external_historical_usage_amount_cents"] == 2000 and body["lago_id"] == got.json()["lifetime_usage"]["lago_id"]
        # $23 of $10 and $50: the first reached, the second 13 of its 40
        assert [t["completion_ratio"] for t in body["usage_thresholds"]] == [1.0, 0.325]


def test_lifetime_usage_of_another_services_subscription_is_not_found(cloud, desk):
    billing = Billing(cloud.service)
    billing.customer()
    billing.subscribe("s1", billing.plan(), when=at(2026, 3, 1, 0, 0))
    assert desk.get("/api/v1/subscriptions/s1/lifetime_usage").status_code == 404
    response = desk.put("/api/v1/subscriptions/s1/lifetime_usage",
                        {"lifetime_usage": {"external_historical_usage_amount_cents": 1}}, format="json")
    assert response.status_code == 404


def test_a_progressive_billing_invoice_shows_the_thresholds_it_was_issued_for(cloud):
    from apps.invoicing.progressive import progressive_billing_check

    billing = Billing(cloud.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    UsageThreshold.objects.create(plan=plan, amount_cents=500, threshold_display_name="First")
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=cloud.service, now=at(2026, 3, 5), events=[EventIn(
        transaction_id="t1", external_subscription_id="s1", code="gb", timestamp=int(at(2026, 3, 5).timestamp()),
        properties={"gb": "7"})])
    with time_machine.travel(at(2026, 3, 5, 11), tick=False):
        invoice = progressive_billing_check(subscription_id=sub.pk, at=at(2026, 3, 5, 11))

    body = cloud.get(f"/api/v1/invoices/{invoice.lago_id}").json()["invoice"]
    assert body["invoice_type"] == "progressive_billing" and body["fees_amount_cents"] == 700
    [applied] = body["applied_usage_thresholds"]
    assert applied["lifetime_usage_amount_cents"] == 700
    assert (applied["usage_threshold"]["amount_cents"], applied["usage_threshold"]["threshold_display_name"]) == (
        500, "First")
    assert body["billing_periods"][0]["invoicing_reason"] == "progressive_billing"

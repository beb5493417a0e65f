"""Wallets' ongoing balance from current usage (issue 20): `ongoing_usage_balance_cents` is the wallet's share of
the customer's unbilled usage (the current-usage engine, tax included) and draft invoices, spread over the wallets
in consumption order as Lago's AllocateOngoingUsageByWalletsService does; the depletion check reads the same."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
import time_machine

from apps.invoicing.top_ups import wallet_balance_check
from apps.invoicing.wallets import wallet_create
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from apps.webhooks.models import WebhookEvent
from tests.integration.invoicing.conftest import Billing, at

NOW = datetime(2026, 3, 16, 12, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.django_db


def test_current_usage_lowers_the_ongoing_balances_in_consumption_order(service_factory, api_client_for):
    """125 GB at 0.10 so far this month: 12.50 + HST 1.63 = 14.13 unbilled. The first wallet (10.00) would pay
    10.00 of it, the second (the last that may) the other 4.13; an unrestricted wallet of another currency none."""
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=2500, charges=[(metric, "standard", {"amount": "0.10"}, {})])
    link = billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, events=[
        EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "125"})], now=at(2026, 3, 5, 11))
    with time_machine.travel(at(2026, 3, 10), tick=False):
        first, _ = wallet_create(service=billing.service, link=link, values={
            "currency": "CAD", "rate_amount": Decimal("1"), "granted_credits": Decimal("10"), "priority": 1})
        second, _ = wallet_create(service=billing.service, link=link, values={
            "currency": "CAD", "rate_amount": Decimal("0.5"), "granted_credits": Decimal("100"), "priority": 2})
    api = api_client_for(issued.raw_key)
    with time_machine.travel(NOW, tick=False):
        one = api.get(f"/api/v1/wallets/{first.lago_id}").json()["wallet"]
        listed = {w["lago_id"]: w for w in api.get("/api/v1/customers/acme/wallets").json()["wallets"]}
        assert wallet_balance_check(wallet_id=first.pk) == []
    assert (one["balance_cents"], one["ongoing_usage_balance_cents"], one["ongoing_balance_cents"],
            one["credits_ongoing_balance"], one["credits_ongoing_usage_balance"]) == (1000, 1000, 0, "0", "10")
    other = listed[str(second.lago_id)]
    assert (other["balance_cents"], other["ongoing_usage_balance_cents"], other["ongoing_balance_cents"],
            other["credits_ongoing_balance"]) == (5000, 413, 4587, "91.74")
    assert listed[str(first.lago_id)] == one
    [event] = WebhookEvent.objects.filter(event_type="wallet.depleted_ongoing_balance")
    assert event.object_id == str(first.lago_id) and event.payload["wallet"]["ongoing_balance_cents"] == 0

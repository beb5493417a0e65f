"""GET /customers/{external_id}/projected_usage (issue 21): the current period carried to its end at its pace so far."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import time_machine
from lago_python_client.client import Client

from apps.invoicing.projection import projection_ratio
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at

# Toronto's March 2026: 05:00Z on the 1st to 04:00Z on April 1 (EDT from the 8th), 743 hours; halfway is 371.5 h.
START = datetime(2026, 3, 1, 5, 0, tzinfo=timezone.utc)
HALFWAY = START + timedelta(hours=371.5)


def _world(service_factory, *, model="standard", properties=None):
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=2500, charges=[(metric, model, properties or {"amount": "0.10"}, {})])
    billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, events=[
        EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "125"})], now=at(2026, 3, 5, 11))
    return issued


def test_the_ratio_is_the_period_over_the_time_used():
    assert projection_ratio(started=START, period_end=START + timedelta(hours=743), now=HALFWAY) == Decimal(2)
    assert projection_ratio(started=START, period_end=START + timedelta(hours=10), now=START) == 1  # nothing used yet
    assert projection_ratio(started=START, period_end=START + timedelta(hours=10), now=START + timedelta(days=9)) == 1


@pytest.mark.django_db
def test_halfway_through_the_month_the_usage_doubles_priced_by_the_charge(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    with time_machine.travel(HALFWAY, tick=False):
        response = api.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "s1"})
    assert response.status_code == 200, response.json()
    usage = response.json()["customer_projected_usage"]
    assert (usage["from_datetime"], usage["to_datetime"]) == ("2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z")
    # 125 GB so far at 0.10 = 12.50 (HST 1.63); 250 GB by the month's end = 25.00
    assert (usage["amount_cents"], usage["taxes_amount_cents"], usage["total_amount_cents"]) == (1250, 163, 1413)
    assert usage["projected_amount_cents"] == 2500
    [charge] = usage["charges_usage"]
    assert (charge["units"], charge["projected_units"], charge["amount_cents"], charge["projected_amount_cents"]) == (
        "125", "250", 1250, 2500)
    with time_machine.travel(HALFWAY, tick=False):
        untaxed = api.get("/api/v1/customers/acme/projected_usage",
                          {"external_subscription_id": "s1", "apply_taxes": "false"}).json()["customer_projected_usage"]
    assert (untaxed["taxes_amount_cents"], untaxed["total_amount_cents"]) == (0, 1250)


@pytest.mark.django_db
def test_a_graduated_charge_prices_the_projected_units_by_its_tiers(service_factory, api_client_for):
    tiers = {"graduated_ranges": [{"from_value": 0, "to_value": 200, "per_unit_amount": "0.10", "flat_amount": "0"},
                                  {"from_value": 201, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "1"}]}
    api = api_client_for(_world(service_factory, model="graduated", properties=tiers).raw_key)
    with time_machine.travel(HALFWAY, tick=False):
        usage = api.get("/api/v1/customers/acme/projected_usage",
                        {"external_subscription_id": "s1"}).json()["customer_projected_usage"]
    # 250 GB: 200 x 0.10 + 1.00 + 50 x 0.05 = 23.50, not twice 12.50
    assert (usage["amount_cents"], usage["projected_amount_cents"]) == (1250, 2350)


@pytest.mark.django_db
def test_lagos_errors_and_isolation(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    missing = api.get("/api/v1/customers/acme/projected_usage")
    assert (missing.status_code, missing.json()["error_details"]) == (422, {"external_subscription_id": ["value_is_mandatory"]})
    bad = api.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "s1", "apply_taxes": "maybe"})
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"apply_taxes": ["value_is_invalid"]})
    none = api.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "other"})
    assert (none.status_code, none.json()["code"]) == (405, "no_active_subscription")
    assert api.get("/api/v1/customers/nobody/projected_usage", {"external_subscription_id": "s1"}).status_code == 404
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert desk.get("/api/v1/customers/acme/projected_usage", {"external_subscription_id": "s1"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_reads_projected_usage(live_server, service_factory):
    issued = _world(service_factory)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    with time_machine.travel(HALFWAY, tick=True):
        usage = lago.customers.projected_usage("acme", "s1")
    assert usage.amount_cents == 1250
    assert usage.charges_usage[0].billable_metric.code == "gb"
    assert 2450 <= usage.projected_amount_cents <= 2500  # the clock ticked a little past halfway

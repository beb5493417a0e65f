"""GET /customers/{external_id}/past_usage (issue 21): a subscription's billed periods, as its invoices billed them."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at


def _event(tx, day, gb):
    return EventIn(transaction_id=tx, external_subscription_id="s1", code="gb",
                   timestamp=int(at(2026, 3 if day < 32 else 4, day if day < 32 else day - 31).timestamp()),
                   properties={"gb": gb})


def _two_billed_months(service_factory, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=2500, charges=[(metric, "standard", {"amount": "0.10"}, {})])
    billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, events=[_event("t1", 5, "125")], now=at(2026, 3, 5, 11))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    usage_events_ingest(service=billing.service, events=[_event("t2", 31 + 3, "40")], now=at(2026, 4, 3, 11))
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    return issued


@pytest.fixture
def billed(service_factory, settings):
    return _two_billed_months(service_factory, settings)


@pytest.mark.django_db
def test_each_billed_period_newest_first_with_its_charges(billed, api_client_for):
    api = api_client_for(billed.raw_key)
    response = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1"})
    assert response.status_code == 200, response.json()
    body = response.json()
    periods = body["usage_periods"]
    # Months in the customer's time zone (Toronto: EST, then EDT from March 8), as the invoices' billing periods
    assert [(p["from_datetime"], p["to_datetime"]) for p in periods] == [
        ("2026-04-01T04:00:00Z", "2026-05-01T04:00:00Z"), ("2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z")]
    april, march = periods
    # 125 GB at 0.10 = 12.50; ON HST 13 % = 1.63 (half-up once per line)
    assert (march["amount_cents"], march["taxes_amount_cents"], march["total_amount_cents"]) == (1250, 163, 1413)
    assert (april["amount_cents"], april["taxes_amount_cents"]) == (400, 52)
    assert [(c["units"], c["events_count"], c["amount_cents"], c["billable_metric"]["code"]) for c in march["charges_usage"]] == [
        ("125", 1, 1250, "gb")]
    invoices = {str(i.lago_id): i for i in Invoice.objects.all()}
    assert invoices[march["lago_invoice_id"]].issuing_date.isoformat() == march["issuing_date"] == "2026-04-01"
    assert body["meta"]["total_count"] == 2

    latest = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1", "periods_count": 1}).json()
    assert [p["from_datetime"] for p in latest["usage_periods"]] == ["2026-04-01T04:00:00Z"]
    paged = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1", "per_page": 1, "page": 2}).json()
    assert [p["from_datetime"] for p in paged["usage_periods"]] == ["2026-03-01T05:00:00Z"]
    other_metric = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1",
                                                                  "billable_metric_code": "nope"}).json()
    assert [p["charges_usage"] for p in other_metric["usage_periods"]] == [[], []]


@pytest.mark.django_db
def test_lagos_errors_and_isolation(billed, api_client_for, service_factory):
    api = api_client_for(billed.raw_key)
    missing = api.get("/api/v1/customers/acme/past_usage")
    assert (missing.status_code, missing.json()["error_details"]) == (422, {"external_subscription_id": ["value_is_mandatory"]})
    bad = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1", "periods_count": "0"})
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"periods_count": ["value_is_out_of_range"]})
    unknown = api.get("/api/v1/customers/nobody/past_usage", {"external_subscription_id": "s1"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "customer_not_found")
    none = api.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "other"}).json()
    assert none["usage_periods"] == [] and none["meta"]["total_count"] == 0
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert desk.get("/api/v1/customers/acme/past_usage", {"external_subscription_id": "s1"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_reads_past_usage(live_server, service_factory, settings):
    issued = _two_billed_months(service_factory, settings)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    result = lago.customers.past_usage("acme", "s1")
    periods = result["usage_periods"]
    assert [p.amount_cents for p in periods] == [400, 1250]
    assert periods[1].charges_usage[0].billable_metric.code == "gb"

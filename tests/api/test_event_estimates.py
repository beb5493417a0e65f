"""POST /events/estimate_fees, /events/estimate_instant_fees and /events/batch_estimate_instant_fees (issue 21):
pay-in-advance charges priced for an event not sent, with Lago's bodies and errors; nothing stored."""
from __future__ import annotations

import pytest
import time_machine
from lago_python_client.client import Client
from lago_python_client.models.event import Event

from apps.invoicing.models import Fee, Invoice
from apps.usage.models import UsageEvent
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at

NOW = at(2026, 3, 20, 12)
TIERS = {"graduated_ranges": [{"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "0"},
                              {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"}]}


def _world(service_factory):
    """In Ontario (HST 13 %): a graduated GB charge paid in advance with 90 GB used this month, a standard
    $0.25 per call and a 2 % + $0.30 percentage (min $0.50) on payments, both in advance; an in-arrears GB charge."""
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    gb = billing.metric()
    calls = billing.metric("calls", aggregation_type="count_agg")
    paid = billing.metric("paid", field_name="amount")
    plan = billing.plan(amount_cents=0, charges=[
        (gb, "graduated", TIERS, {"pay_in_advance": True}),
        (calls, "standard", {"amount": "0.25"}, {"pay_in_advance": True}),
        (paid, "percentage", {"rate": "2", "fixed_amount": "0.30", "per_transaction_min_amount": "0.50"},
         {"pay_in_advance": True}),
        (gb, "standard", {"amount": "1"}, {}),
    ])
    billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, now=at(2026, 3, 5, 11), events=[
        EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "90"})])
    return issued


def _post(api, path, body):
    with time_machine.travel(NOW, tick=False):
        return api.post(f"/api/v1/events/{path}", body, format="json")


def _stored():
    return UsageEvent.objects.count(), Invoice.objects.count(), Fee.objects.count()


@pytest.mark.django_db
def test_estimate_fees_prices_the_event_on_top_of_the_usage_so_far_and_taxes_it(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    before = _stored()
    response = _post(api, "estimate_fees", {"event": {"code": "gb", "external_subscription_id": "s1",
                                                      "properties": {"gb": 20}}})
    assert response.status_code == 200, response.json()
    assert _stored() == before
    [fee] = response.json()["fees"]  # the in-arrears GB charge is not estimated
    # 90 GB so far cost 9.00; 110 GB cost 100 × 0.10 + 10 × 0.05 = 10.50: the event adds 1.50, HST 0.20.
    assert (fee["lago_id"], fee["lago_invoice_id"], fee["pay_in_advance"], fee["units"]) == (None, None, True, "20")
    assert (fee["amount_cents"], fee["taxes_amount_cents"], fee["total_amount_cents"]) == (150, 20, 170)
    assert (fee["item"]["code"], fee["external_subscription_id"], fee["payment_status"]) == ("gb", "s1", "pending")
    assert [(tax["tax_rate"], tax["amount_cents"]) for tax in fee["applied_taxes"]] == [(13.0, 20)]


@pytest.mark.django_db
def test_instant_estimates_price_the_event_alone_untaxed(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    before = _stored()
    [call] = _post(api, "estimate_instant_fees", {"event": {"code": "calls", "external_subscription_id": "s1",
                                                            "transaction_id": "tx-9"}}).json()["fees"]
    assert (call["amount_cents"], call["taxes_amount_cents"], call["units"], call["event_transaction_id"]) == (
        25, 0, "1", "tx-9")
    # 2 % of 10.00 + 0.30 = 0.50; of 5.00 + 0.30 = 0.40, raised to the 0.50 minimum; of 100.00 + 0.30 = 2.30
    batch = _post(api, "batch_estimate_instant_fees", {"events": [
        {"code": "paid", "external_subscription_id": "s1", "properties": {"amount": "10"}},
        {"code": "paid", "external_subscription_id": "s1", "properties": {"amount": "5"}},
        {"code": "paid", "external_subscription_id": "s1", "properties": {"amount": "100"}},
        {"code": "gb", "external_subscription_id": "s1", "properties": {"gb": "3"}}]})  # graduated: not instant
    assert batch.status_code == 200, batch.json()
    assert [(fee["item"]["code"], fee["amount_cents"]) for fee in batch.json()["fees"]] == [
        ("paid", 50), ("paid", 50), ("paid", 230)]
    assert _stored() == before


@pytest.mark.django_db
def test_lagos_errors_and_isolation(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    for path in ("estimate_fees", "estimate_instant_fees"):
        missing = _post(api, path, {"event": {"code": "gb"}})
        assert (missing.status_code, missing.json()["error_details"]) == (
            422, {"external_subscription_id": ["value_is_mandatory"]})
        unknown = _post(api, path, {"event": {"code": "gb", "external_subscription_id": "nope"}})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "subscription_not_found")
        arrears = _post(api, path, {"event": {"code": "nothing", "external_subscription_id": "s1"}})
        assert (arrears.status_code, arrears.json()["error_details"]) == (
            422, {"code": ["does_not_match_an_instant_charge"]})
        assert _post(api, path, {}).status_code == 400
    graduated = _post(api, "estimate_instant_fees", {"event": {"code": "gb", "external_subscription_id": "s1"}})
    assert graduated.json()["error_details"] == {"code": ["does_not_match_an_instant_charge"]}
    assert _post(api, "batch_estimate_instant_fees", {"events": []}).json()["error_details"] == {"events": ["no_events"]}
    bad = _post(api, "batch_estimate_instant_fees", {"events": [{"code": "calls"}]})
    assert bad.json()["error_details"] == {"0.external_subscription_id": ["value_is_mandatory"]}
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert _post(desk, "estimate_fees", {"event": {"code": "gb", "external_subscription_id": "s1"}}).status_code == 404
    assert _post(desk, "batch_estimate_instant_fees", {"events": [
        {"code": "calls", "external_subscription_id": "s1"}]}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_estimates_fees(live_server, service_factory):
    issued = _world(service_factory)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    with time_machine.travel(NOW, tick=True):
        fees = lago.events.estimate_fees(Event(transaction_id="tx-1", code="gb", external_subscription_id="s1",
                                               properties={"gb": 20}))
    [fee] = fees["fees"]
    assert (fee.amount_cents, fee.taxes_amount_cents) == (150, 20)

"""The Lago stand-in answers with Lago's shapes, errors and event idempotency, and its fault knobs work."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.lago_standin import LagoStandIn
from tests.lago_standin.fixtures import nexacloud_org


@pytest.fixture
def standin():
    with LagoStandIn(org=nexacloud_org()) as server:
        yield server


def call(standin: LagoStandIn, method: str, path: str, body: dict | None = None, key: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(standin.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {key or standin.api_key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_lists_are_paginated_with_lagos_meta(standin):
    status, first = call(standin, "GET", "/api/v1/billable_metrics?page=1&per_page=2")
    assert status == 200
    assert [metric["code"] for metric in first["billable_metrics"]] == ["compute_hours", "api_calls"]
    assert first["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 2, "total_count": 3}
    _, second = call(standin, "GET", "/api/v1/billable_metrics?page=2&per_page=2")
    assert second["meta"] == {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 3}
    assert second["billable_metrics"][0]["filters"] == []
    assert first["billable_metrics"][0]["filters"] == [{"key": "region", "values": ["ca-east", "ca-west"]}]


def test_an_empty_list_has_lagos_zero_page_meta(standin):
    _, body = call(standin, "GET", "/api/v1/invoices?external_customer_id=nobody")
    assert body == {"invoices": [], "meta": {"current_page": 0, "next_page": None, "prev_page": None,
                                             "total_pages": 0, "total_count": 0}}


def test_subscriptions_default_to_active_and_filter_on_status(standin):
    _, active = call(standin, "GET", "/api/v1/subscriptions")
    assert {sub["status"] for sub in active["subscriptions"]} == {"active"}
    _, both = call(standin, "GET", "/api/v1/subscriptions?status[]=active&status[]=pending")
    assert len(both["subscriptions"]) == 4


def test_invoice_list_omits_fees_that_the_invoice_shows(standin):
    _, listed = call(standin, "GET", "/api/v1/invoices?statuses[]=finalized")
    assert "fees" not in listed["invoices"][0]
    _, shown = call(standin, "GET", f"/api/v1/invoices/{listed['invoices'][0]['lago_id']}")
    assert len(shown["invoice"]["fees"]) == 3
    assert shown["invoice"]["billing_periods"][0]["charges_to_datetime"].endswith("03:59:59Z")


def test_errors_have_lagos_bodies(standin):
    assert call(standin, "GET", "/api/v1/customers", key="wrong") == (401, {"status": 401, "error": "Unauthorized"})
    assert call(standin, "GET", "/api/v1/customers/nobody") == (
        404, {"status": 404, "error": "Not Found", "code": "customer_not_found"})
    status, body = call(standin, "POST", "/api/v1/events", {"nope": {}})
    assert status == 400 and body["error"].startswith("BadRequest: param is missing")


def test_a_known_transaction_id_is_refused_with_422(standin):
    event = {"transaction_id": "tx-1", "external_subscription_id": "sub-acme-1", "code": "api_calls",
             "timestamp": 1790000000}
    assert call(standin, "POST", "/api/v1/events", {"event": event})[0] == 200
    assert call(standin, "POST", "/api/v1/events", {"event": event}) == (422, {
        "status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
        "error_details": {"transaction_id": ["value_already_exist"]}})
    assert standin.event_ids() == ["tx-1"]


def test_a_batch_with_one_duplicate_is_refused_whole(standin):
    events = [{"transaction_id": f"tx-{i}", "external_subscription_id": "sub-acme-1", "code": "api_calls"}
              for i in range(3)]
    assert call(standin, "POST", "/api/v1/events/batch", {"events": events[:1]})[0] == 200
    status, body = call(standin, "POST", "/api/v1/events/batch", {"events": events})
    assert status == 422
    assert body["error_details"] == {"0": {"transaction_id": ["value_already_exist"]}}
    assert standin.event_ids() == ["tx-0"]
    too_many = [{"transaction_id": f"big-{i}", "external_subscription_id": "s", "code": "c"} for i in range(101)]
    assert call(standin, "POST", "/api/v1/events/batch", {"events": too_many})[1]["error_details"] == {
        "events": ["too_many_events"]}


def test_erroring_down_and_restart(standin):
    standin.erroring(1)
    assert call(standin, "GET", "/api/v1/taxes") == (500, {"status": 500, "error": "Internal Server Error"})
    assert call(standin, "GET", "/api/v1/taxes")[0] == 200
    port = standin.port
    standin.down()
    with pytest.raises(urllib.error.URLError):
        call(standin, "GET", "/api/v1/taxes")
    standin.restart()
    assert standin.port == port
    assert call(standin, "GET", "/api/v1/taxes")[0] == 200

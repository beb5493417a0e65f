"""POST /events, /events/batch, /usage: Lago bodies, idempotent retries, per-index 422s."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from apps.usage.models import UsageEvent
from tests.integration.usage.conftest import make_world

pytestmark = pytest.mark.django_db
T0 = int(datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def world(service_factory):
    world = make_world(service_factory, "nexacloud")
    world.sub = world.subscription("sub-1")
    return world


@pytest.fixture
def other_world(service_factory):
    return make_world(service_factory, "nexadesk")


@pytest.fixture
def client(world, api_client_for):
    return api_client_for(world.raw_key)


def post(client, path, body):
    return client.post(f"/api/v1/{path}", data=json.dumps(body), content_type="application/json")


def event(tx, code="storage", sub="sub-1", **props):
    return {"transaction_id": tx, "external_subscription_id": sub, "code": code, "timestamp": T0, "properties": props}


def test_single_event_is_stored_and_echoed_in_lagos_shape(client, world):
    response = post(client, "events", {"event": event("tx-1", gb="2.5")})
    assert response.status_code == 200
    out = response.json()["event"]
    assert out["transaction_id"] == "tx-1"
    assert out["external_subscription_id"] == "sub-1"
    assert out["lago_subscription_id"] == str(world.sub.lago_id)
    assert out["timestamp"] == "2026-01-10T00:00:00.000Z"
    assert out["duplicate"] is False
    row = UsageEvent.objects.get()
    assert (row.value, row.subscription_id, row.billable_metric_id) == (Decimal("2.5"), world.sub.pk, world.metrics["storage"].pk)


def test_a_retried_event_answers_200_duplicate_and_is_stored_once(client):
    assert post(client, "events", {"event": event("tx-1", gb="1")}).json()["event"]["duplicate"] is False
    again = post(client, "events", {"event": event("tx-1", gb="1")})
    assert again.status_code == 200
    assert again.json()["event"]["duplicate"] is True
    assert UsageEvent.objects.count() == 1


def test_duplicates_within_and_across_batches_are_stored_once(client):
    first = post(client, "events/batch", {"events": [event("a", gb="1"), event("b", gb="2"), event("a", gb="9")]})
    assert first.status_code == 200
    assert [e["duplicate"] for e in first.json()["events"]] == [False, False, True]
    second = post(client, "events/batch", {"events": [event("b", gb="2"), event("c", gb="3")]})
    assert [e["duplicate"] for e in second.json()["events"]] == [True, False]
    assert sorted(UsageEvent.objects.values_list("transaction_id", "value")) == [
        ("a", Decimal(1)), ("b", Decimal(2)), ("c", Decimal(3))
    ]


@pytest.mark.parametrize(
    "bad, details",
    [
        (event("x", code="nope"), {"code": ["value_is_invalid"]}),
        (event("x", sub="unknown-sub", gb="1"), {"external_subscription_id": ["value_is_invalid"]}),
        (event("x"), {"properties": ["value_is_mandatory"]}),
        (event("x", code="peak"), {"properties": ["value_is_mandatory"]}),
        (event("x", code="seats"), {"properties": ["value_is_mandatory"]}),
        (event("x", gb="lots"), {"properties": ["value_is_invalid"]}),
        ({**event("x", gb="1"), "timestamp": T0 + 3 * 86400 + 10**9}, {"timestamp": ["value_is_out_of_range"]}),
        ({**event("x", gb="1"), "timestamp": "2026-01-10T00:00:00Z"}, {"timestamp": ["invalid_format"]}),
        (event("x", gb="1E1000000"), {"properties": ["value_is_out_of_range"]}),  # was a 500 (decimal.Overflow)
        ({**event("x", gb="1"), "timestamp": "1E1000000"}, {"timestamp": ["value_is_out_of_range"]}),
        ({k: v for k, v in event("x", gb="1").items() if k != "code"}, {"code": ["value_is_mandatory"]}),
        ({**event("x", gb="1"), "transaction_id": 12}, {"transaction_id": ["value_is_invalid"]}),
    ],
)
def test_a_batch_with_one_bad_item_writes_nothing_and_names_it(client, bad, details):
    response = post(client, "events/batch", {"events": [event("ok-1", gb="1"), bad, event("ok-2", gb="1")]})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_errors"
    assert body["error_details"] == {"1": details}
    assert UsageEvent.objects.count() == 0


def test_every_bad_item_is_named(client):
    response = post(client, "events/batch", {"events": [event("a", code="nope"), event("b", gb="1"), event("c", gb="x")]})
    assert response.json()["error_details"] == {"0": {"code": ["value_is_invalid"]}, "2": {"properties": ["value_is_invalid"]}}


def test_another_services_subscription_is_refused(client, other_world, world):
    other_world.subscription("desk-sub")
    response = post(client, "events", {"event": event("x", sub="desk-sub", gb="1")})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"external_subscription_id": ["value_is_invalid"]}
    assert UsageEvent.objects.count() == 0


def test_same_transaction_id_in_two_services_is_two_rows(client, other_world, api_client_for):
    other_world.subscription("sub-1")
    other = api_client_for(other_world.raw_key)
    assert post(client, "events", {"event": event("tx", gb="1")}).status_code == 200
    assert post(other, "events", {"event": event("tx", gb="1")}).json()["event"]["duplicate"] is False
    assert UsageEvent.objects.count() == 2


def test_late_events_are_kept_and_flagged(client, world):
    world.sub.usage_billed_until = datetime(2026, 2, 1, tzinfo=timezone.utc)
    world.sub.save(update_fields=["usage_billed_until"])
    late = event("late", gb="4")
    fresh = {**event("fresh", gb="5"), "timestamp": int(datetime(2026, 2, 2, tzinfo=timezone.utc).timestamp())}
    assert post(client, "events/batch", {"events": [late, fresh]}).status_code == 200
    assert dict(UsageEvent.objects.values_list("transaction_id", "is_late")) == {"late": True, "fresh": False}


def test_terminated_subscription_takes_usage_inside_its_life_only(client, world):
    from apps.subscriptions.services import subscription_terminate

    subscription_terminate(subscription_id=world.sub.pk, at=datetime(2026, 1, 20, tzinfo=timezone.utc))
    inside = post(client, "events", {"event": event("in", gb="1")})
    assert inside.status_code == 200
    after = {**event("after", gb="1"), "timestamp": int(datetime(2026, 1, 25, tzinfo=timezone.utc).timestamp())}
    assert post(client, "events", {"event": after}).status_code == 422


def test_decimal_timestamps_and_numeric_properties(client):
    body = {"event": {**event("t", gb=1.25), "timestamp": "1768003200.123"}}
    out = post(client, "events", body).json()["event"]
    assert out["timestamp"] == "2026-01-10T00:00:00.123Z"
    assert UsageEvent.objects.get().value == Decimal("1.25")


def test_batch_size_limits(client):
    assert post(client, "events/batch", {"events": []}).json()["error_details"] == {"events": ["no_events"]}
    many = {"events": [event(f"t{i}", gb="1") for i in range(1001)]}
    assert post(client, "events/batch", many).json()["error_details"] == {"events": ["too_many_events"]}


def test_counters_answer_202_with_accepted_and_duplicates(client, world):
    counters = [
        {"idempotency_key": "k1", "external_subscription_id": "sub-1", "code": "calls", "quantity": 40, "timestamp": T0},
        {"idempotency_key": "k2", "external_subscription_id": "sub-1", "code": "storage", "quantity": "2.5",
         "period_from": T0, "period_to": T0 + 3600},
    ]
    first = post(client, "usage", {"usage": counters})
    assert (first.status_code, first.json()) == (202, {"accepted": 2, "duplicates": 0})
    again = post(client, "usage", {"usage": counters + [{**counters[0], "idempotency_key": "k3"}]})
    assert (again.status_code, again.json()) == (202, {"accepted": 1, "duplicates": 2})
    from apps.usage.aggregation import usage_totals

    totals = usage_totals(
        subscription_ids=[world.sub.pk],
        from_datetime=datetime(2026, 1, 1, tzinfo=timezone.utc),
        to_datetime=datetime(2026, 2, 1, tzinfo=timezone.utc),
    )
    assert totals[(world.sub.pk, world.metrics["calls"].pk)].units == Decimal(80)
    assert totals[(world.sub.pk, world.metrics["storage"].pk)].units == Decimal("2.5")


def test_bad_counters_are_named_by_index(client):
    counters = [
        {"idempotency_key": "k1", "external_subscription_id": "sub-1", "code": "calls", "quantity": "ten"},
        {"idempotency_key": "k2", "external_subscription_id": "sub-1", "code": "seats", "quantity": 1},
    ]
    response = post(client, "usage", {"usage": counters})
    assert response.status_code == 422
    assert response.json()["error_details"] == {
        "0": {"quantity": ["value_is_invalid"]}, "1": {"code": ["invalid_aggregation_type"]}
    }
    assert UsageEvent.objects.count() == 0


def test_requests_without_a_key_are_refused(world, client):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/events", data="{}", content_type="application/json")
    assert response.status_code == 401


def test_the_largest_value_numeric_30_12_holds_is_stored_exactly(client):
    response = post(client, "events/batch", {"events": [event("big", gb="999999999999999999.999999999999")]})
    assert response.status_code == 200
    assert UsageEvent.objects.get().value == Decimal("999999999999999999.999999999999")

"""GET /events/{transaction_id} and GET /events (issue 21): a service reads back its own events, as Lago lists them."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError

from tests.integration.usage.conftest import make_world

T0 = int(datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp())
DAY = 86400


@pytest.fixture
def world(service_factory):
    world = make_world(service_factory, "nexacloud")
    world.sub = world.subscription("sub-1")
    world.sub2 = world.subscription("sub-2", customer="cust-2")
    return world


@pytest.fixture
def client(world, api_client_for):
    return api_client_for(world.raw_key)


@pytest.fixture
def desk(service_factory, api_client_for):
    other = make_world(service_factory, "nexadesk")
    other.subscription("sub-1")
    return other, api_client_for(other.raw_key)


def send(client, tx, *, code="storage", sub="sub-1", at=T0, **props):
    if code == "storage" and not props:
        props = {"gb": "1"}
    body = {"event": {"transaction_id": tx, "external_subscription_id": sub, "code": code, "timestamp": at,
                      "properties": props}}
    response = client.post("/api/v1/events", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.json()


def transaction_ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [event["transaction_id"] for event in response.json()["events"]]


@pytest.mark.django_db
def test_an_event_is_read_back_by_transaction_id(client, world):
    send(client, "tx-1", gb="2.5")
    response = client.get("/api/v1/events/tx-1")
    assert response.status_code == 200
    event = response.json()["event"]
    assert event == {
        "lago_id": None, "transaction_id": "tx-1", "lago_customer_id": str(world.sub.account_link.lago_id),
        "lago_subscription_id": str(world.sub.lago_id), "external_subscription_id": "sub-1", "code": "storage",
        "timestamp": "2026-01-10T00:00:00.000Z", "properties": {"gb": "2.5"}, "precise_total_amount_cents": None,
        "created_at": event["created_at"],
    }


@pytest.mark.django_db
def test_another_services_event_and_an_unknown_one_are_not_found(client, desk):
    other_world, other = desk
    send(other, "theirs")
    for path in ("/api/v1/events/theirs", "/api/v1/events/nope"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found", "code": "event_not_found"}
    assert transaction_ids(client.get("/api/v1/events")) == []
    assert transaction_ids(other.get("/api/v1/events")) == ["theirs"]


@pytest.mark.django_db
def test_a_pre_aggregated_counter_is_not_an_event(client):
    body = {"usage": [{"idempotency_key": "k-1", "external_subscription_id": "sub-1", "code": "calls",
                       "timestamp": T0, "quantity": 3}]}
    response = client.post("/api/v1/usage", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.json()
    assert client.get("/api/v1/events/k-1").status_code == 404
    assert transaction_ids(client.get("/api/v1/events")) == []


@pytest.mark.django_db
def test_the_list_filters_as_lago_does_newest_first(client, world):
    send(client, "a", at=T0)
    send(client, "b", code="calls", at=T0 + DAY)
    send(client, "c", sub="sub-2", at=T0 + 2 * DAY)
    send(client, "d", at=T0 + 3 * DAY)
    assert transaction_ids(client.get("/api/v1/events")) == ["d", "c", "b", "a"]
    assert transaction_ids(client.get("/api/v1/events", {"external_subscription_id": "sub-1"})) == ["d", "b", "a"]
    assert transaction_ids(client.get("/api/v1/events", {"code": "calls"})) == ["b"]
    assert transaction_ids(client.get("/api/v1/events", {"timestamp_from": "2026-01-11T00:00:00Z"})) == ["d", "c", "b"]
    assert transaction_ids(client.get("/api/v1/events", {"timestamp_to": "2026-01-11T00:00:00Z"})) == ["b", "a"]
    assert transaction_ids(client.get("/api/v1/events", {
        "timestamp_from": "2026-01-11T00:00:00+00:00", "timestamp_to": "2026-01-12"})) == ["c", "b"]
    assert transaction_ids(client.get("/api/v1/events", {"external_subscription_id": "nobody"})) == []


@pytest.mark.django_db
def test_timestamp_from_started_at_reads_from_the_subscriptions_start(client, world):
    send(client, "before", at=T0)
    # The subscription's start moved after the event (an edited start date): the filter reads the current one.
    world.sub.started_at = datetime(2026, 1, 11, tzinfo=timezone.utc)
    world.sub.save(update_fields=["started_at"])
    send(client, "after", at=T0 + 2 * DAY)
    query = {"external_subscription_id": "sub-1", "timestamp_from_started_at": "true"}
    assert transaction_ids(client.get("/api/v1/events", query)) == ["after"]
    query["timestamp_from_started_at"] = "false"
    assert transaction_ids(client.get("/api/v1/events", query)) == ["after", "before"]


@pytest.mark.django_db
def test_pages_and_bad_filters(client):
    for index in range(5):
        send(client, f"p-{index}")
    page = client.get("/api/v1/events", {"per_page": 2, "page": 2}).json()
    assert [event["transaction_id"] for event in page["events"]] == ["p-2", "p-1"]
    assert page["meta"] == {"current_page": 2, "next_page": 3, "prev_page": 1, "total_pages": 3, "total_count": 5}
    for query, field in (({"timestamp_from": "yesterday"}, "timestamp_from"), ({"timestamp_to": "2026-13-01"}, "timestamp_to"),
                         ({"timestamp_from_started_at": "maybe"}, "timestamp_from_started_at"), ({"page": "x"}, "page")):
        response = client.get("/api/v1/events", query)
        assert response.status_code == 422, query
        assert response.json()["error_details"] == {field: [response.json()["error_details"][field][0]]}


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_finds_an_event(live_server, service_factory):
    world = make_world(service_factory, "nexacloud")
    world.subscription("sub-1")
    lago = Client(api_key=world.raw_key, api_url=live_server.url)
    from lago_python_client.models import Event

    lago.events.create(Event(transaction_id="tx-9", external_subscription_id="sub-1", code="storage", timestamp=T0,
                             properties={"gb": "3"}))
    found = lago.events.find("tx-9")
    assert (found.transaction_id, found.code, found.external_subscription_id) == ("tx-9", "storage", "sub-1")
    assert found.properties == {"gb": "3"}
    with pytest.raises(LagoApiError) as error:
        lago.events.find("missing")
    assert error.value.status_code == 404

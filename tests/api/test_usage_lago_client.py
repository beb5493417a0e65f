"""lago-python-client's event calls against a live hub on 127.0.0.1."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, Event

from apps.usage.models import UsageEvent
from tests.integration.usage.conftest import make_world

pytestmark = pytest.mark.django_db(transaction=True)
T0 = int(datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def cloud(live_server, service_factory):
    world = make_world(service_factory, "nexacloud")
    world.subscription("sub-1")
    return world, Client(api_key=world.raw_key, api_url=live_server.url)


def test_event_create_and_retry_through_the_client(cloud):
    world, client = cloud
    event = Event(transaction_id="tx-1", external_subscription_id="sub-1", code="storage", timestamp=T0, properties={"gb": "1.5"})
    created = client.events.create(event)
    assert created.transaction_id == "tx-1"
    assert created.timestamp == "2026-01-10T00:00:00.000Z"
    client.events.create(event)  # a retry after a timeout: accepted, not stored twice
    assert list(UsageEvent.objects.values_list("transaction_id", "value")) == [("tx-1", Decimal("1.5"))]


def test_batch_create_and_its_errors_through_the_client(cloud):
    world, client = cloud
    events = [
        Event(transaction_id=f"b-{i}", external_subscription_id="sub-1", code="calls", timestamp=T0, properties={})
        for i in range(3)
    ]
    client.events.batch_create(BatchEvent(events=events))
    client.events.batch_create(BatchEvent(events=events))
    assert UsageEvent.objects.count() == 3
    bad = events + [Event(transaction_id="b-x", external_subscription_id="sub-1", code="nope", timestamp=T0, properties={})]
    with pytest.raises(LagoApiError) as caught:
        client.events.batch_create(BatchEvent(events=bad))
    assert caught.value.status_code == 422
    assert caught.value.response["error_details"] == {"3": {"code": ["value_is_invalid"]}}
    assert UsageEvent.objects.count() == 3

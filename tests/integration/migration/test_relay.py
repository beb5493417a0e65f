"""The event relay of a dual run: every usage row accepted during it reaches Lago exactly once, across Lago
being down, erroring, slow and restarted; nothing accepted before or after it is relayed."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.migration.lago_client import LagoClient
from apps.migration.models import RelayFailure, RelayStream
from apps.migration.selectors import relay_status
from apps.migration.services import phase_switch, relay_deliver, relay_due
from apps.usage import validation
from apps.usage.services import usage_counters_ingest, usage_events_ingest

pytestmark = pytest.mark.django_db


def send(service, ids, *, code="api_calls", properties=None):
    now = int(timezone.now().timestamp()) - 60
    body = {"events": [{"transaction_id": tx, "external_subscription_id": "sub-acme-1", "code": code,
                        "timestamp": now, "properties": properties or {}} for tx in ids]}
    usage_events_ingest(service=service, events=validation.decode_events(json.dumps(body).encode()))


@pytest.fixture
def dual_run(run_import, nexacloud):
    run_import()
    send(nexacloud, ["before-1"])  # accepted before the dual run: Lago got it from the app itself
    phase_switch(service=nexacloud, to_phase="dual_run", reason="pilot", actor="test")
    return RelayStream.objects.get(service=nexacloud)


def test_events_accepted_during_the_dual_run_reach_lago_once_in_order(dual_run, nexacloud, lago):
    ids = [f"tx-{n:03d}" for n in range(250)]
    send(nexacloud, ids[:120])
    send(nexacloud, ids[120:])
    result = relay_deliver(stream_id=dual_run.pk)
    assert result.delivered == 250 and not result.error
    assert lago.event_ids() == ids  # batches of at most 100, id order, "before-1" not relayed
    assert lago.requests_to("POST", "/api/v1/events/batch") == 3
    assert relay_deliver(stream_id=dual_run.pk).delivered == 0  # nothing twice
    assert relay_status(nexacloud.pk).backlog == 0
    event = lago.events[0]
    assert (event["external_subscription_id"], event["code"]) == ("sub-acme-1", "api_calls")


def test_nothing_is_dropped_while_lago_is_down_erroring_or_restarted(dual_run, nexacloud, lago):
    send(nexacloud, ["a1", "a2"])
    lago.down()
    result = relay_deliver(stream_id=dual_run.pk)
    assert result.delivered == 0 and "unreachable" in result.error
    stream = RelayStream.objects.get(pk=dual_run.pk)
    assert stream.attempts == 1 and stream.next_attempt_at > timezone.now() and "unreachable" in stream.last_error
    status = relay_status(nexacloud.pk)
    assert status.backlog == 2 and status.lag_seconds is not None
    send(nexacloud, ["a3"])
    assert relay_due() == []  # not due before its retry time
    lago.restart()
    lago.erroring(1)
    assert relay_due(now=stream.next_attempt_at + timedelta(seconds=1)) == [dual_run.pk]
    assert lago.event_ids() == []  # answered 500: still held
    assert RelayStream.objects.get(pk=dual_run.pk).attempts == 2
    relay_deliver(stream_id=dual_run.pk)
    send(nexacloud, ["a4"])
    relay_deliver(stream_id=dual_run.pk)
    assert lago.event_ids() == ["a1", "a2", "a3", "a4"]
    stream.refresh_from_db()
    assert (stream.attempts, stream.last_error, stream.events_delivered) == (0, "", 4)


def test_a_transaction_id_lago_already_knows_counts_as_delivered(dual_run, nexacloud, lago):
    send(nexacloud, ["k1", "k2", "k3"])
    lago.events.append({"transaction_id": "k2", "external_subscription_id": "sub-acme-1", "code": "api_calls"})
    result = relay_deliver(stream_id=dual_run.pk)
    assert (result.delivered, result.duplicates, result.failed) == (3, 1, 0)
    assert sorted(lago.event_ids()) == ["k1", "k2", "k3"]


def test_a_batch_lost_to_a_timeout_is_delivered_once_on_the_retry(dual_run, nexacloud, lago):
    send(nexacloud, ["t1", "t2"])
    lago.slow(0.5)  # Lago stores the batch after the hub stopped waiting
    impatient = LagoClient(api_url=lago.url, api_key=lago.api_key, timeout=0.1)
    assert relay_deliver(stream_id=dual_run.pk, client=impatient).error
    lago.slow(0)
    for _ in range(200):  # the stand-in finishes the timed-out request (bounded wait, not a timing assertion)
        if len(lago.event_ids()) == 2:
            break
        time.sleep(0.05)
    result = relay_deliver(stream_id=dual_run.pk)
    assert (result.delivered, result.duplicates) == (2, 2)
    assert lago.event_ids() == ["t1", "t2"]


def test_counters_are_relayed_as_events_and_what_cannot_be_is_kept_as_a_failure(dual_run, nexacloud, lago):
    counters = [{"idempotency_key": "c-hours", "external_subscription_id": "sub-acme-1", "code": "compute_hours",
                 "quantity": "12.5"},
                {"idempotency_key": "c-calls", "external_subscription_id": "sub-acme-1", "code": "api_calls",
                 "quantity": 3},
                {"idempotency_key": "c-many", "external_subscription_id": "sub-acme-1", "code": "api_calls",
                 "quantity": 250}]
    usage_counters_ingest(service=nexacloud, counters=validation.decode_counters(json.dumps({"usage": counters}).encode()))
    result = relay_deliver(stream_id=dual_run.pk)
    assert (result.delivered, result.failed) == (4, 1)
    assert lago.event_ids() == ["c-calls#1", "c-calls#2", "c-calls#3", "c-hours"]  # stored in key order
    assert lago.events[3]["properties"] == {"hours": "12.5"}
    failure = RelayFailure.objects.get()
    assert failure.transaction_id == "c-many" and "cannot be relayed" in failure.error


def test_leaving_the_dual_run_stops_the_stream_after_draining_it(dual_run, nexacloud, lago):
    send(nexacloud, ["d1"])
    phase_switch(service=nexacloud, to_phase="lago", reason="abort", actor="test")
    send(nexacloud, ["after-1"])  # the apps talk to Lago again: not the relay's
    relay_deliver(stream_id=dual_run.pk)
    assert lago.event_ids() == ["d1"]
    assert RelayStream.objects.get(pk=dual_run.pk).closed_at is not None
    assert relay_due() == []


def test_the_admin_shows_the_relay_and_switches_phases_with_a_reason(admin_client, dual_run, nexacloud, lago):
    from apps.migration.models import PhaseChange, ServicePhase

    send(nexacloud, ["v1"])
    page = admin_client.get("/admin/migration/relaystream/")
    assert page.status_code == 200 and b"nexacloud" in page.content.lower()
    phase = ServicePhase.objects.get(service=nexacloud)
    assert b"backlog 1" in admin_client.get(f"/admin/migration/servicephase/{phase.pk}/change/").content
    form = admin_client.post(f"/admin/migration/servicephase/{phase.pk}/switch/", {"to_phase": "lago", "reason": ""})
    assert form.status_code == 200 and not PhaseChange.objects.filter(to_phase="lago").exists()
    admin_client.post(f"/admin/migration/servicephase/{phase.pk}/switch/", {"to_phase": "lago", "reason": "abort"})
    change = PhaseChange.objects.get(to_phase="lago")
    assert (change.actor, change.reason) == ("admin:admin", "abort")

"""Ingestion services: concurrent retries, late usage billed once, retried batches are idempotent."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.usage.aggregation import usage_totals
from apps.usage.models import UsageEvent
from apps.usage.selectors import late_usage_unbilled
from apps.usage.services import late_usage_mark_billed, usage_events_ingest, usage_ingest_fence
from apps.usage.validation import EventIn

T0 = datetime(2026, 1, 10, tzinfo=timezone.utc)
PERIOD = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc))


def ev(tx: str, *, code="storage", sub="sub-1", at=T0, **props) -> EventIn:
    return EventIn(transaction_id=tx, external_subscription_id=sub, code=code, timestamp=int(at.timestamp()), properties=props)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_the_same_ids_store_one_row_each(world):
    from django.db import connection

    world.subscription("sub-1")
    # Overlapping id sets in opposite orders: unsorted inserts would deadlock here.
    batch_a = [ev(f"tx-{i}", gb="1") for i in range(200)]
    batch_b = [ev(f"tx-{i}", gb="1") for i in reversed(range(100, 300))]
    barrier, results, errors = threading.Barrier(2), {}, []

    def run(name, batch):
        try:
            barrier.wait(timeout=10)
            results[name] = usage_events_ingest(service=world.service, events=batch)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, b)) for n, b in (("a", batch_a), ("b", batch_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert UsageEvent.objects.count() == 300
    assert results["a"].accepted + results["b"].accepted == 300
    assert results["a"].duplicates + results["b"].duplicates == 100


@pytest.mark.django_db
def test_late_usage_is_totalled_apart_and_billed_once(world):
    sub = world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("on-time", gb="1")])
    sub.usage_billed_until = PERIOD[1]
    sub.save(update_fields=["usage_billed_until"])
    usage_ingest_fence()
    usage_events_ingest(service=world.service, events=[ev("late-1", gb="2"), ev("late-2", gb="3"), ev("late-p", code="peak", cpu="7")])

    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=PERIOD[0], to_datetime=PERIOD[1])
    assert totals[(sub.pk, world.metrics["storage"].pk)].units == Decimal(1)
    late = late_usage_unbilled(subscription_ids=[sub.pk])
    storage = late[(sub.pk, world.metrics["storage"].pk)]
    assert (storage.units, storage.events_count) == (Decimal(5), 2)
    assert late[(sub.pk, world.metrics["peak"].pk)].units == Decimal(7)

    assert late_usage_mark_billed(event_ids=list(storage.event_ids)) == 2
    assert late_usage_mark_billed(event_ids=list(storage.event_ids)) == 0
    assert set(late_usage_unbilled(subscription_ids=[sub.pk])) == {(sub.pk, world.metrics["peak"].pk)}


# Each example: a clean set of events, delivered as overlapping retried batches in any order.
_event = st.tuples(
    st.sampled_from(["storage", "calls", "peak", "seats"]),
    st.integers(min_value=0, max_value=20),  # value / key
    st.integers(min_value=0, max_value=30 * 24),  # hour of the period
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(_event, min_size=1, max_size=12),
    deliveries=st.lists(st.lists(st.integers(min_value=0, max_value=11), min_size=1, max_size=8), min_size=1, max_size=5),
    data=st.data(),
)
@pytest.mark.django_db
def test_any_interleaving_of_retried_batches_stores_the_clean_totals(world, events, deliveries, data):
    from apps.customers.models import Service  # noqa: F401  (world is reused across examples)
    from apps.usage.models import UsageEventKey

    def forget_usage():  # rows and their dedupe keys (a separate table since usage is partitioned)
        UsageEvent.objects.all().delete()
        UsageEventKey.objects.all().delete()

    forget_usage()
    sub = world.subscription("sub-1")

    def build(i):
        code, number, hour = events[i]
        props = {"storage": {"gb": str(number)}, "calls": {}, "peak": {"cpu": number}, "seats": {"user_id": f"u{number}"}}[code]
        return ev(f"tx-{i}", code=code, at=PERIOD[0] + timedelta(hours=hour), **props)

    clean = [build(i) for i in range(len(events))]
    # Retried, overlapping batches in any order; then the batch that finally "got through".
    batches = [[build(i % len(events)) for i in batch] for batch in deliveries]
    batches.append(data.draw(st.permutations(clean)))
    for batch in data.draw(st.permutations(batches)):
        usage_events_ingest(service=world.service, events=batch)
    retried = usage_totals(subscription_ids=[sub.pk], from_datetime=PERIOD[0], to_datetime=PERIOD[1])

    forget_usage()
    usage_events_ingest(service=world.service, events=clean)
    once = usage_totals(subscription_ids=[sub.pk], from_datetime=PERIOD[0], to_datetime=PERIOD[1])
    assert retried == once
    assert UsageEvent.objects.count() == len(events)


@pytest.mark.django_db
def test_rollup_task_folds_new_rows_once(world):
    from apps.usage.models import UsageDaily, UsageRollupState
    from apps.usage.tasks import usage_rollup_advance_task

    sub = world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("a", gb="2"), ev("b", gb="3")])
    usage_rollup_advance_task()
    usage_rollup_advance_task()  # nothing new: no double counting
    (daily,) = UsageDaily.objects.filter(subscription=sub)
    assert (daily.events_count, daily.value_sum) == (2, Decimal(5))
    assert UsageRollupState.objects.get(pk=1).last_event_id == UsageEvent.objects.latest("id").pk


@pytest.mark.django_db(transaction=True)
def test_rollup_matches_raw_after_advancing_during_concurrent_ingest(world):
    from django.db import connection
    from django.db.models import Sum

    from apps.usage.models import UsageDaily
    from apps.usage.services import usage_rollup_advance

    sub = world.subscription("sub-1")
    stop, errors = threading.Event(), []

    def ingest(prefix):
        try:
            for b in range(15):
                usage_events_ingest(service=world.service, events=[ev(f"{prefix}-{b}-{i}", gb=str(i)) for i in range(40)])
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    def advance():
        try:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:  # bounded in time
                usage_rollup_advance(chunk=25)
                time.sleep(0.001)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    roller = threading.Thread(target=advance)
    writers = [threading.Thread(target=ingest, args=(p,)) for p in ("a", "b")]
    roller.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    stop.set()
    roller.join(timeout=60)
    assert errors == []
    usage_rollup_advance()
    rolled = UsageDaily.objects.filter(subscription=sub).aggregate(n=Sum("events_count"), s=Sum("value_sum"))
    raw = UsageEvent.objects.filter(subscription=sub).aggregate(s=Sum("value"))
    assert (rolled["n"], rolled["s"]) == (2 * 15 * 40, raw["s"])
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=PERIOD[0], to_datetime=PERIOD[1])
    assert (totals[(sub.pk, world.metrics["storage"].pk)].units, totals[(sub.pk, world.metrics["storage"].pk)].events_count) == (
        raw["s"], 1200
    )


@pytest.mark.django_db
def test_repeated_property_values_are_checked_and_stored_per_item(world):
    """The per-batch value cache: a bad value repeated is named at every index; adds and removes stay apart."""
    from apps.core.exceptions import ValidationFailed

    world.subscription("sub-1")
    with pytest.raises(ValidationFailed) as raised:
        usage_events_ingest(service=world.service, events=[ev("a", gb="x"), ev("b", gb="2"), ev("c", gb="x")])
    assert raised.value.details == {"0": {"properties": ["value_is_invalid"]}, "2": {"properties": ["value_is_invalid"]}}
    assert UsageEvent.objects.count() == 0

    usage_events_ingest(service=world.service, events=[
        ev("s1", gb="2.5"), ev("s2", gb="2.5"), ev("s3", gb=7),
        ev("u1", code="seats", user_id="u-1"), ev("u2", code="seats", user_id="u-1", operation_type="remove"),
        ev("u3", code="seats", user_id="u-1"),
    ])
    values = dict(UsageEvent.objects.values_list("transaction_id", "value"))
    assert values == {"s1": Decimal("2.5"), "s2": Decimal("2.5"), "s3": Decimal(7),
                      "u1": Decimal(1), "u2": Decimal(-1), "u3": Decimal(1)}


def test_property_values_are_stored_as_the_numbers_written(world):
    """Plain decimal texts go to PostgreSQL as written, other forms through Decimal: the same numbers."""
    world.subscription("sub-1")
    written = {"lead": "007.50", "exp": "1e2", "spaced": " 2.5 ", "int": 7, "tiny": "-0.000000000001",
               "wide": "99999999999999999.999999999", "big": 999_999_999_999_999_999}
    usage_events_ingest(service=world.service, events=[ev(tx, gb=raw) for tx, raw in written.items()])
    stored = dict(UsageEvent.objects.values_list("transaction_id", "value"))
    expected = {"lead": "7.50", "exp": "100", "spaced": "2.5", "int": "7", "tiny": "-0.000000000001",
                "wide": "99999999999999999.999999999", "big": "999999999999999999"}
    assert stored == {tx: Decimal(text) for tx, text in expected.items()}


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_victim_batch_is_retried_and_stored_once(monkeypatch):
    import psycopg

    from apps.usage import services as usage_services
    from apps.usage.models import UsageEvent

    world = _deadlock_world()
    real_ingest = usage_services._ingest
    calls = {"n": 0}

    def deadlock_once(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real_ingest(**kwargs)

    monkeypatch.setattr(usage_services, "_ingest", deadlock_once)
    result = usage_services.usage_events_ingest(service=world["service"], events=world["events"])
    assert calls["n"] == 2
    assert [item.duplicate for item in result.items] == [False] * len(world["events"])
    assert UsageEvent.objects.count() == len(world["events"])


@pytest.mark.django_db(transaction=True)
def test_other_database_errors_are_not_retried(monkeypatch):
    import psycopg

    from apps.usage import services as usage_services

    world = _deadlock_world()
    calls = {"n": 0}

    def fails(**kwargs):
        calls["n"] += 1
        raise psycopg.errors.SerializationFailure("no")

    monkeypatch.setattr(usage_services, "_ingest", fails)
    with pytest.raises(psycopg.errors.SerializationFailure):
        usage_services.usage_events_ingest(service=world["service"], events=world["events"])
    assert calls["n"] == 1


def _deadlock_world():
    from apps.catalog.services import billable_metric_create, plan_create
    from apps.customers.services import service_create
    from apps.subscriptions.services import SubscriptionRequest, subscription_create
    from apps.usage.validation import EventIn

    service = service_create(code="dl", name="Deadlock").service
    metric = billable_metric_create(service=service, values={"code": "calls", "name": "Calls", "aggregation_type": "count_agg"})
    plan = plan_create(
        service=service,
        values={"code": "p", "name": "P", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD"},
        charges=[{"billable_metric_id": str(metric.lago_id), "charge_model": "standard", "properties": {"amount": "1"}}],
    )
    subscription_create(service=service, request=SubscriptionRequest(external_id="s", external_customer_id="c", plan=plan))
    events = [EventIn(transaction_id=f"t{i}", external_subscription_id="s", code="calls") for i in range(5)]
    return {"service": service, "events": events}

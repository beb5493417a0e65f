"""Ingest's per-worker subscription lookups: reused while nothing changed, never stale once something did."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.core.exceptions import ValidationFailed
from apps.invoicing.close import usage_cutoffs_advance
from apps.subscriptions.models import Subscription, SubscriptionChange, SubscriptionChangeHorizon
from apps.subscriptions.services import SUBSCRIPTION_LOOKUP_TTL_SECONDS, subscription_changes_prune
from apps.usage import subscription_cache
from apps.usage.aggregation import usage_totals
from apps.usage.models import UsageEvent
from apps.usage.services import usage_events_ingest, usage_ingest_fence
from apps.usage.validation import EventIn

# Committed transactions: the cache is only used by a batch that is its own transaction.
pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 1, 10, tzinfo=timezone.utc)
PERIOD_END = datetime(2026, 2, 1, tzinfo=timezone.utc)


def ev(tx: str, *, sub="sub-1", at=T0) -> EventIn:
    return EventIn(transaction_id=tx, external_subscription_id=sub, code="storage", timestamp=int(at.timestamp()),
                   properties={"gb": "1"})


@pytest.fixture(autouse=True)
def empty_cache():
    subscription_cache.forget()
    yield
    subscription_cache.forget()


def _latest_change_xid() -> int:
    return SubscriptionChange.objects.order_by("-xid").values_list("xid", flat=True).first()


def test_each_transaction_writing_what_ingest_reads_leaves_one_change_row(world):
    before = SubscriptionChange.objects.count()
    with transaction.atomic():
        sub = world.subscription("sub-1")
        Subscription.objects.filter(pk=sub.pk).update(usage_billed_until=PERIOD_END)
    assert SubscriptionChange.objects.count() == before + 1

    Subscription.objects.filter(pk=sub.pk).update(name="renamed")  # ingest never reads the name
    assert SubscriptionChange.objects.count() == before + 1

    with pytest.raises(RuntimeError), transaction.atomic():
        Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.TERMINATED)
        raise RuntimeError("rolled back: no change happened")
    assert SubscriptionChange.objects.count() == before + 1

    with connection.cursor() as cursor:  # raw SQL is recorded too: the trigger, not the ORM, writes the log
        cursor.execute("UPDATE subscriptions_subscription SET terminated_at = now() WHERE id = %s", [sub.pk])
    assert SubscriptionChange.objects.count() == before + 2


def test_batches_reuse_the_lookups_while_no_subscription_changes(world):
    world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("a")])
    lookups = subscription_cache.cached(world.service.pk)
    assert lookups is not None and lookups.known == {"sub-1"}

    usage_events_ingest(service=world.service, events=[ev("b")])
    assert subscription_cache.cached(world.service.pk) is lookups
    assert UsageEvent.objects.filter(subscription__external_id="sub-1").count() == 2


def test_a_close_committed_after_the_lookups_makes_the_next_event_late(world):
    sub = world.subscription("sub-1")
    first = usage_events_ingest(service=world.service, events=[ev("on-time")])
    assert not first.items[0].is_late
    cached = subscription_cache.cached(world.service.pk)

    usage_cutoffs_advance({sub.pk: PERIOD_END})  # committed (autocommit), then fenced, as the close does
    usage_ingest_fence()
    second = usage_events_ingest(service=world.service, events=[ev("late")])

    assert second.items[0].is_late
    assert UsageEvent.objects.get(transaction_id="late").is_late
    assert subscription_cache.cached(world.service.pk) is not cached


def test_a_replacement_subscription_takes_the_events_after_it(world):
    old = world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("before")])
    Subscription.objects.filter(pk=old.pk).update(
        status=Subscription.Status.TERMINATED, terminated_at=T0 + timedelta(days=1)
    )
    new = world.subscription("sub-1", at=T0 + timedelta(days=1))

    usage_events_ingest(service=world.service, events=[ev("after", at=T0 + timedelta(days=2))])

    assert UsageEvent.objects.get(transaction_id="before").subscription_id == old.pk
    assert UsageEvent.objects.get(transaction_id="after").subscription_id == new.pk


def test_an_unknown_subscription_is_accepted_once_created(world):
    world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("a")])
    with pytest.raises(ValidationFailed) as refused:
        usage_events_ingest(service=world.service, events=[ev("b"), ev("c", sub="sub-2")])
    assert refused.value.details == {"1": {"external_subscription_id": ["value_is_invalid"]}}

    world.subscription("sub-2")
    result = usage_events_ingest(service=world.service, events=[ev("b"), ev("c", sub="sub-2")])
    assert result.accepted == 2


def test_a_batch_inside_a_callers_transaction_neither_uses_nor_keeps_lookups(world):
    world.subscription("sub-1")
    with transaction.atomic():
        usage_events_ingest(service=world.service, events=[ev("a")])
    assert subscription_cache.cached(world.service.pk) is None


def test_lookups_older_than_the_pruning_allows_are_dropped(world, monkeypatch):
    world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[ev("a")])
    lookups = subscription_cache.cached(world.service.pk)
    assert lookups.expires_at - SUBSCRIPTION_LOOKUP_TTL_SECONDS <= subscription_cache.time.monotonic()

    monkeypatch.setattr(subscription_cache.time, "monotonic", lambda: lookups.expires_at + 1)
    assert subscription_cache.cached(world.service.pk) is None


def test_prune_keeps_every_change_a_live_cache_could_still_miss(world):
    ttl = timedelta(seconds=SUBSCRIPTION_LOOKUP_TTL_SECONDS)
    world.subscription("sub-1")
    older = _latest_change_xid()
    start = datetime.now(timezone.utc)
    assert subscription_changes_prune(now=start) == 0  # keeps a horizon above `older`
    world.subscription("sub-2")
    newer = _latest_change_xid()

    subscription_changes_prune(now=start + ttl)  # the first horizon is not two lifetimes old yet
    assert SubscriptionChange.objects.filter(xid__in=[older, newer]).count() == 2

    # The first horizon is the oldest transaction still open anywhere on the server when it was taken (xids are
    # the whole cluster's): `older` goes unless another database's transaction was open since before it (a
    # shared test server), and `newer`, written after the horizon, always stays.
    horizon = SubscriptionChangeHorizon.objects.order_by("taken_at").values_list("horizon_xid", flat=True).first()
    below = SubscriptionChange.objects.filter(xid__lt=horizon).count()
    assert subscription_changes_prune(now=start + 2 * ttl) == below
    kept = set(SubscriptionChange.objects.filter(xid__in=[older, newer]).values_list("xid", flat=True))
    assert kept == {xid for xid in (older, newer) if xid >= horizon} and newer in kept


def test_every_event_of_a_close_racing_with_ingest_is_billed_or_late(world):
    """The close's guarantee, with lookups cached in the ingesting thread across the close."""
    sub = world.subscription("sub-1")
    period_start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    usage_events_ingest(service=world.service, events=[ev("warm")])  # the writer thread caches its own
    started, closed, errors, sent = threading.Event(), threading.Event(), [], []

    def ingest():
        try:
            after_close = 0
            for batch in range(400):  # bounded; stops 5 batches after the close has read
                events = [ev(f"w-{batch}-{i}") for i in range(25)]
                usage_events_ingest(service=world.service, events=events)
                sent.extend(events)
                started.set()
                after_close += closed.is_set()
                if after_close >= 5:
                    break
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            started.set()
            connection.close()

    writer = threading.Thread(target=ingest)
    writer.start()
    assert started.wait(timeout=30)
    time.sleep(0.05)  # a few batches in, with the writer's lookups cached
    usage_cutoffs_advance({sub.pk: PERIOD_END})
    usage_ingest_fence()
    billed = usage_totals(subscription_ids=[sub.pk], from_datetime=period_start, to_datetime=PERIOD_END)
    closed.set()
    writer.join(timeout=60)
    assert errors == []

    billed_units = billed[(sub.pk, world.metrics["storage"].pk)].units
    on_time = UsageEvent.objects.filter(subscription=sub, is_late=False).count()
    late = UsageEvent.objects.filter(subscription=sub, is_late=True).count()
    assert billed_units == Decimal(on_time)  # nothing unflagged arrived after the close read
    assert on_time + late == 1 + len(sent)
    assert late >= 5 * 25  # the batches after the close's read were flagged


def test_the_change_log_is_pruned_on_a_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["subscriptions-changes-prune"]
    assert entry["task"] == "apps.subscriptions.tasks.subscription_changes_prune_task"
    assert entry["schedule"] <= SUBSCRIPTION_LOOKUP_TTL_SECONDS

"""Monthly usage partitions: created ahead (idempotent), DEFAULT rows moved out, dedupe across months, archive refusals."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection

from apps.usage.aggregation import usage_totals
from apps.usage.models import UsageEvent
from apps.usage.partitions import (
    UsageArchiveRefused, usage_month_archive, usage_partitions_ensure, usage_partitions_list,
)
from apps.usage.selectors import late_usage_unbilled
from apps.usage.services import late_usage_mark_billed, usage_events_ingest, usage_ingest_fence, usage_rollup_advance
from apps.usage.validation import EventIn

pytestmark = pytest.mark.django_db
UTC = timezone.utc


def ev(tx: str, when: datetime, *, gb="1", sub="sub-1") -> EventIn:
    return EventIn(transaction_id=tx, external_subscription_id=sub, code="storage", timestamp=int(when.timestamp()),
                   properties={"gb": gb})


def partition_of(tx: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM usage_usageevent WHERE transaction_id = %s", [tx])
        return cursor.fetchone()[0]


def months(*pairs) -> list[date]:
    return [date(year, month, 1) for year, month in pairs]


def test_partitions_ahead_are_created_once_however_often_the_task_runs():
    now = datetime(2026, 2, 10, tzinfo=UTC)
    first = usage_partitions_ensure(now=now, months_ahead=3)
    assert first.created == months((2026, 2), (2026, 3), (2026, 4), (2026, 5))
    assert usage_partitions_ensure(now=now, months_ahead=3).created == []
    # A month later: only the one new month at the far end.
    assert usage_partitions_ensure(now=datetime(2026, 3, 31, 23, tzinfo=UTC), months_ahead=3).created == months((2026, 6))
    assert set(months((2026, 2), (2026, 3), (2026, 4), (2026, 5), (2026, 6))) <= set(usage_partitions_list())


def test_the_beat_schedules_the_partition_task_and_it_creates_the_coming_months(settings):
    from apps.usage.tasks import usage_partitions_ensure_task

    entry = django_settings.CELERY_BEAT_SCHEDULE["usage-partitions-ahead"]
    assert entry["task"] == "apps.usage.tasks.usage_partitions_ensure_task"
    settings.USAGE_PARTITIONS_AHEAD_MONTHS = 2
    with time_machine.travel(datetime(2026, 1, 20, tzinfo=UTC), tick=False):
        usage_partitions_ensure_task.delay()
        usage_partitions_ensure_task.delay()  # a second run (a duplicate message, an overlap) changes nothing
    assert set(months((2026, 1), (2026, 2), (2026, 3))) <= set(usage_partitions_list())


def test_rows_in_default_move_to_their_month_when_its_partition_is_created(world):
    world.subscription("sub-1")
    usage_events_ingest(service=world.service, events=[
        ev("a", datetime(2026, 3, 5, tzinfo=UTC), gb="2"), ev("b", datetime(2026, 3, 20, tzinfo=UTC), gb="3"),
        ev("c", datetime(2026, 4, 2, tzinfo=UTC), gb="4")])
    assert {partition_of(tx) for tx in "abc"} == {"usage_usageevent_default"}
    march = dict(from_datetime=datetime(2026, 3, 1, tzinfo=UTC), to_datetime=datetime(2026, 4, 1, tzinfo=UTC))
    before = usage_totals(subscription_ids=[world.service.subscriptions.get().pk], **march)

    # PostgreSQL refuses a partition whose range matches rows in DEFAULT: they are moved into it.
    result = usage_partitions_ensure(now=datetime(2026, 3, 1, tzinfo=UTC), months_ahead=0)

    assert result.created == months((2026, 3)) and result.moved_from_default == 2
    assert partition_of("a") == partition_of("b") == "usage_usageevent_p2026_03"
    assert partition_of("c") == "usage_usageevent_default"
    assert usage_totals(subscription_ids=[world.service.subscriptions.get().pk], **march) == before
    again = usage_events_ingest(service=world.service, events=[
        ev("a", datetime(2026, 3, 5, tzinfo=UTC)), ev("d", datetime(2026, 3, 6, tzinfo=UTC))])
    assert [item.duplicate for item in again.items] == [True, False]
    assert partition_of("d") == "usage_usageevent_p2026_03"
    assert UsageEvent.objects.count() == 4


def test_a_transaction_id_is_refused_again_with_a_timestamp_in_another_month(world):
    world.subscription("sub-1")
    usage_partitions_ensure(now=datetime(2026, 1, 1, tzinfo=UTC), months_ahead=2)
    first = usage_events_ingest(service=world.service, events=[ev("same", datetime(2026, 1, 10, tzinfo=UTC), gb="1")])
    assert not first.items[0].duplicate
    # Another month's partition, then DEFAULT (no partition for 2026-06): the same key is refused both times.
    for when in (datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 6, 10, tzinfo=UTC)):
        again = usage_events_ingest(service=world.service, events=[ev("same", when, gb="5")])
        assert again.items[0].duplicate and again.accepted == 0
    # Within one batch too: the first copy wins, wherever the second would have landed.
    batch = usage_events_ingest(service=world.service, events=[
        ev("pair", datetime(2026, 3, 1, tzinfo=UTC)), ev("pair", datetime(2026, 1, 2, tzinfo=UTC))])
    assert [item.duplicate for item in batch.items] == [False, True]
    assert list(UsageEvent.objects.filter(transaction_id="same").values_list("value", flat=True)) == [1]
    assert partition_of("same") == "usage_usageevent_p2026_01" and partition_of("pair") == "usage_usageevent_p2026_03"
    assert UsageEvent.objects.count() == 2


def test_archive_is_refused_while_any_row_of_the_month_is_unbilled(world, settings, tmp_path):
    settings.USAGE_RAW_RETENTION_MONTHS = 0
    sub = world.subscription("sub-1")
    usage_partitions_ensure(now=datetime(2026, 1, 1, tzinfo=UTC), months_ahead=1)
    usage_events_ingest(service=world.service, events=[ev("on-time", datetime(2026, 1, 10, tzinfo=UTC), gb="2")])
    january, out = date(2026, 1, 1), tmp_path / "jan.csv.gz"

    with pytest.raises(UsageArchiveRefused, match="1 rows in a period not yet invoiced; 1 rows not yet in the daily"):
        usage_month_archive(month=january, path=out)
    usage_rollup_advance()
    sub.usage_billed_until = datetime(2026, 2, 1, tzinfo=UTC)  # the close billed January
    sub.save(update_fields=["usage_billed_until"])
    usage_ingest_fence()
    late = usage_events_ingest(service=world.service, events=[ev("late", datetime(2026, 1, 20, tzinfo=UTC), gb="3")])
    assert late.items[0].is_late
    usage_rollup_advance()
    with pytest.raises(UsageArchiveRefused, match="1 late rows not yet billed") as refused:
        usage_month_archive(month=january, path=out)
    assert refused.value.details == {"late rows not yet billed": 1}
    assert not out.exists() and date(2026, 1, 1) in usage_partitions_list()

    settings.USAGE_RAW_RETENTION_MONTHS = 240  # kept for 20 years after billing: too recent by far
    with pytest.raises(UsageArchiveRefused, match="within USAGE_RAW_RETENTION_MONTHS"):
        usage_month_archive(month=january, path=out)
    settings.USAGE_RAW_RETENTION_MONTHS = 0
    ids = late_usage_unbilled(subscription_ids=[sub.pk])[(sub.pk, world.metrics["storage"].pk)].event_ids
    assert late_usage_mark_billed(event_ids=list(ids)) == 1

    done = usage_month_archive(month=january, path=out)

    assert done.rows == 2 and out.exists() and date(2026, 1, 1) not in usage_partitions_list()
    assert not UsageEvent.objects.filter(timestamp__lt=datetime(2026, 2, 1, tzinfo=UTC)).exists()
    # The keys stay: an archived transaction_id re-sent is still refused.
    again = usage_events_ingest(service=world.service, events=[ev("on-time", datetime(2026, 1, 10, tzinfo=UTC))])
    assert again.items[0].duplicate and not UsageEvent.objects.exists()
    with pytest.raises(UsageArchiveRefused, match="has no partition"):
        usage_month_archive(month=january, path=out)


@pytest.mark.django_db(transaction=True)
def test_two_partition_runs_at_once_create_each_month_once():
    import threading

    now, barrier, results, errors = datetime(2030, 1, 15, tzinfo=UTC), threading.Barrier(2), [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(usage_partitions_ensure(now=now, months_ahead=2).created)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(month for created in results for month in created) == months((2030, 1), (2030, 2), (2030, 3))
    finally:  # DDL outlives a transactional test's flush: leave the schema as the migration made it
        with connection.cursor() as cursor:
            for month in months((2030, 1), (2030, 2), (2030, 3)):
                cursor.execute(f"DROP TABLE IF EXISTS usage_usageevent_p{month:%Y_%m}")

"""The admin's usage reads at volume: the summary (subscriptions first), the hourly ingestion counts, the list."""
from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.usage.models import UsageEvent, UsageIngestHourly
from apps.usage.selectors import usage_ingested_by_hour, usage_summary
from apps.usage.services import usage_rollup_advance

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 2, 3, 12, tzinfo=timezone.utc)
_ids = itertools.count(1)


def put(world, sub, code, at, value="1", *, late=False, billed=False, service=None):
    return UsageEvent.objects.create(
        service=service or world.service, transaction_id=f"adm-{next(_ids)}", subscription=sub,
        billable_metric=world.metrics[code], timestamp=at, value=Decimal(value), properties={}, is_late=late,
        late_billed_at=T0 if billed else None)


def naive_summary(*, late_only=False, metric=None, start=None, end=None):
    """Every (subscription, metric) group of the whole table, in the summary's order: the old query's answer."""
    groups = defaultdict(list)
    for row in UsageEvent.objects.select_related("subscription", "billable_metric", "service"):
        if (late_only and not row.is_late) or (metric and row.billable_metric.code != metric) or \
                (start and row.timestamp < start) or (end and row.timestamp >= end):
            continue
        groups[(row.subscription.external_id, row.subscription_id, row.billable_metric.code,
                row.service.code)].append(row)
    out = []
    for (external_id, sub_id, code, service), rows in sorted(groups.items()):
        out.append((sub_id, external_id, service, code, len(rows), sum(r.value for r in rows),
                    max(r.value for r in rows), sum(r.is_late for r in rows),
                    sum(r.is_late and r.late_billed_at is None for r in rows),
                    min(r.timestamp for r in rows), max(r.timestamp for r in rows)))
    return out


def shown(rows):
    return [(r.subscription_id, r.subscription_external_id, r.service_code, r.metric_code, r.events_count,
             r.value_sum, r.value_max, r.late_count, r.late_unbilled_count, r.first_at, r.last_at) for r in rows]


def test_the_summary_reads_the_first_subscriptions_only_and_answers_as_grouping_everything(world, other_world):
    subs = [world.subscription(f"s{i:02d}", customer=f"c{i}") for i in (5, 1, 4, 2, 3)]
    idle = world.subscription("s00", customer="c0")  # no usage: never a row, never takes a place in the limit
    other = other_world.subscription("s01", customer="o1")  # same external id in another service
    for n, sub in enumerate(subs):
        for k in range(n + 1):
            put(world, sub, "calls", T0 + timedelta(hours=k))
            put(world, sub, "storage", T0 + timedelta(days=k), str(k + 2), late=k == 1, billed=k == 1 and n % 2 == 0)
    put(other_world, other, "peak", T0, "7")
    everything = naive_summary()
    assert shown(usage_summary()) == everything and idle.pk not in {row[0] for row in everything}
    # Each subscription has two metrics here: a limit of 3 groups ends inside the second subscription.
    assert shown(usage_summary(limit=3)) == everything[:3]
    assert shown(usage_summary(late_only=True)) == naive_summary(late_only=True)
    assert shown(usage_summary(metric_code="storage", from_datetime=T0 + timedelta(days=1),
                               to_datetime=T0 + timedelta(days=3))) == \
        naive_summary(metric="storage", start=T0 + timedelta(days=1), end=T0 + timedelta(days=3))
    assert [r.service_code for r in usage_summary(service_id=other_world.service.pk)] == [other_world.service.code]
    assert [r.metric_code for r in usage_summary(subscription_external_id="s01")] == ["calls", "storage", "peak"]


def _at(created_at, rows):
    UsageEvent.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=created_at)


def test_ingestion_per_hour_adds_the_folded_hours_and_the_rows_after_the_watermark_once(world, other_world):
    sub, other = world.subscription("s1"), other_world.subscription("o1")
    now = datetime.now(timezone.utc).replace(minute=30, second=0, microsecond=0)
    _at(now - timedelta(hours=30), [put(world, sub, "calls", T0)])  # before the window
    _at(now - timedelta(hours=2), [put(world, sub, "calls", T0) for _ in range(3)] + [put(other_world, other, "peak", T0)])
    _at(now - timedelta(hours=1), [put(world, sub, "calls", T0) for _ in range(2)])
    before = usage_ingested_by_hour(since=now - timedelta(hours=23))  # nothing folded yet: all raw
    hour = now.replace(minute=0)
    assert before == [(hour - timedelta(hours=2), 4), (hour - timedelta(hours=1), 2)]
    usage_rollup_advance(chunk=2)
    assert sorted(UsageIngestHourly.objects.values_list("service_id", "events_count")) == \
        sorted([(world.service.pk, 1), (world.service.pk, 3), (other_world.service.pk, 1), (world.service.pk, 2)])
    _at(now - timedelta(hours=1), [put(world, sub, "calls", T0)])  # arrives after the fold: the raw tail
    assert usage_ingested_by_hour(since=now - timedelta(hours=23)) == [(hour - timedelta(hours=2), 4),
                                                                      (hour - timedelta(hours=1), 3)]
    usage_rollup_advance()
    usage_rollup_advance()  # nothing new: nothing counted twice
    assert usage_ingested_by_hour(since=now - timedelta(hours=23)) == [(hour - timedelta(hours=2), 4),
                                                                      (hour - timedelta(hours=1), 3)]


def test_the_usage_list_counts_at_most_its_cap_then_pages_with_previous_and_next(admin_client, world, monkeypatch):
    from apps.core.admin_kit import BoundedCountPaginator

    sub = world.subscription("s1")
    rows = [put(world, sub, "calls", T0 + timedelta(minutes=i), late=i % 2 == 0) for i in range(7)]
    UsageEvent.objects.bulk_create([UsageEvent(service=world.service, transaction_id=f"bulk-{i}", subscription=sub,
                                               billable_metric=world.metrics["calls"], timestamp=T0 + timedelta(days=1),
                                               value=Decimal(1), properties={}) for i in range(3994)])
    monkeypatch.setattr(BoundedCountPaginator, "cap", 4000)  # shown as "4,000"
    monkeypatch.setattr("apps.usage.admin.UsageEventAdmin.list_per_page", 2)
    url = reverse("admin:usage_usageevent_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200 and "more than 4,000 usage events" in page.content.decode()
    assert page.context["cl"].paginator.capped and "?p=2" in page.content.decode()
    late = admin_client.get(url, {"is_late__exact": "1"})  # 4 rows: under the cap, counted exactly
    assert late.context["cl"].result_count == 4 and "more than" not in late.content.decode()
    by_time = admin_client.get(url, {"o": "3"}).context["cl"]
    assert [r.pk for r in by_time.result_list] == [rows[0].pk, rows[1].pk]
    newest_late = admin_client.get(url, {"o": "-3", "p": "2", "is_late__exact": "1"}).context["cl"]
    assert [r.pk for r in newest_late.result_list] == [rows[2].pk, rows[0].pk]  # late: 6, 4 | 2, 0


def test_sorting_a_column_up_breaks_ties_by_id_up_so_an_index_serves_it(admin_client, world):
    sub = world.subscription("s1")
    put(world, sub, "calls", T0)
    cl = admin_client.get(reverse("admin:usage_usageevent_changelist"), {"o": "3"}).context["cl"]
    assert str(cl.queryset.query).endswith('ORDER BY "usage_usageevent"."timestamp" ASC, "usage_usageevent"."id" ASC')
    cl = admin_client.get(reverse("admin:usage_usageevent_changelist"), {"o": "-3"}).context["cl"]
    assert str(cl.queryset.query).endswith('ORDER BY "usage_usageevent"."timestamp" DESC, "usage_usageevent"."id" DESC')


def test_the_rollup_folds_across_a_gap_in_row_ids(world):
    """Ids have gaps (rolled-back batches, a sequence that never restarts): chunks count rows from the next id, so
    a small chunk still reaches rows far above the watermark (it folded nothing past id 100 in 50 chunks of 2)."""
    from django.db import connection

    from apps.usage.models import UsageDaily

    sub = world.subscription("s1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('usage_usageevent', 'id'), 1000000)")
    rows = [put(world, sub, "calls", T0) for _ in range(3)]
    assert usage_rollup_advance(chunk=2) == max(row.pk for row in rows)
    assert UsageDaily.objects.get(subscription=sub).events_count == 3
    assert sum(UsageIngestHourly.objects.values_list("events_count", flat=True)) == 3

"""Usage reads: late usage awaiting its adjustment, daily totals for the admin chart."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db import connection

from apps.catalog.models import BillableMetric

from .aggregation import (
    COMBINATION_SQL, FILTERED_METRICS_SQL, UsagePart, combination_from_sql, filtered_metrics_params, usage_merge, metrics_for,
)

Agg = BillableMetric.Aggregation
ZERO = Decimal(0)


@dataclass(frozen=True)
class LateUsage:
    units: Decimal  # the metric's aggregation over the late rows alone (weighted_sum: Σ of deltas)
    events_count: int
    event_ids: tuple[int, ...]  # pass to services.late_usage_mark_billed once billed
    aggregation_type: str = field(default="", compare=False)
    prices: Decimal = field(default=Decimal(0), compare=False)  # Σ precise_total_amount_cents (dynamic charges)
    # Metrics with filters: the same per combination of filter values (apps.usage.aggregation.Combination),
    # each part's `usage` carrying what merging needs (latest row, unique keys).
    parts: Mapping[tuple, tuple[UsagePart, tuple[int, ...], Decimal]] = field(default_factory=dict, compare=False)

    def select(self, combinations) -> LateUsage:
        """The late rows carrying one of `combinations` (a charge filter's share)."""
        chosen = [self.parts[key] for key in combinations if key in self.parts]
        merged = usage_merge(self.aggregation_type, [usage for usage, _, _ in chosen])
        ids = tuple(sorted(pk for _, event_ids, _ in chosen for pk in event_ids))
        prices = sum((prices for _, _, prices in chosen), Decimal(0))
        return LateUsage(merged.units, merged.events_count, ids, self.aggregation_type, prices)


def late_usage_unbilled(*, subscription_ids: list[int]) -> dict[tuple[int, int], LateUsage]:
    """Return unbilled late usage per (subscription_id, billable_metric_id).

    Late rows arrived after their period was invoiced (timestamp < usage_billed_until at
    arrival). count/sum/weighted_sum: Σ value; max: largest; latest: most recent;
    unique_count: distinct keys added. Ids come with the totals, so a row that arrives while
    the adjustment is being billed is left for the next invoice, never marked unbilled.
    """
    ids = sorted({int(pk) for pk in subscription_ids})
    if not ids:
        return {}
    metrics = metrics_for(ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.subscription_id, e.billable_metric_id, m.aggregation_type, fm.id IS NOT NULL, {COMBINATION_SQL},
                   count(*), sum(e.value), max(e.value),
                   (array_agg(e.value ORDER BY e.timestamp DESC, e.id DESC))[1],
                   (array_agg(extract(epoch FROM e.timestamp) ORDER BY e.timestamp DESC, e.id DESC))[1],
                   (array_agg(e.id ORDER BY e.timestamp DESC, e.id DESC))[1],
                   array_agg(DISTINCT e.properties ->> m.field_name) FILTER (WHERE e.value > 0),
                   array_agg(e.id ORDER BY e.id), coalesce(sum(e.precise_total_amount_cents), 0)
              FROM usage_usageevent e JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
                   LEFT JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id
             WHERE e.subscription_id = ANY(%(subs)s) AND e.is_late AND e.late_billed_at IS NULL
             GROUP BY 1, 2, 3, 4, 5
            """,
            {"subs": ids, **filtered_metrics_params(metrics)},
        )
        out = {}
        parts: dict[tuple[int, int], dict] = {}
        for (sub, metric, kind, filtered, combination, count, total, maximum, latest, latest_epoch, latest_id, keys,
             event_ids, prices) in cursor.fetchall():
            keys = frozenset(key for key in keys or () if key is not None)
            units = {Agg.MAX: maximum, Agg.LATEST: latest, Agg.UNIQUE_COUNT: Decimal(len(keys))}.get(kind, total)
            if not filtered:
                out[(sub, metric)] = LateUsage(units=units, events_count=count, event_ids=tuple(event_ids),
                                               prices=prices)
                continue
            usage = UsagePart(units, count, (latest_epoch, latest_id), keys)
            parts.setdefault((sub, metric), {})[combination_from_sql(combination)] = (usage, tuple(event_ids), prices)
        for pair, by_combination in parts.items():
            kind = metrics[pair[1]].aggregation_type
            whole = LateUsage(ZERO, 0, (), kind, parts=by_combination).select(by_combination)
            out[pair] = LateUsage(whole.units, whole.events_count, whole.event_ids, kind, whole.prices,
                                  parts=by_combination)
        return out


def late_usage_values(*, event_ids: list[int]) -> dict[tuple[int, int], tuple[Decimal, ...]]:
    """Return the values of these unbilled late rows per (subscription_id, billable_metric_id), in time order.

    Pass the `event_ids` of `late_usage_unbilled`'s totals whose charge is priced per event; one query.
    """
    ids = sorted({int(pk) for pk in event_ids})
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT subscription_id, billable_metric_id, array_agg(value ORDER BY timestamp, id)
              FROM usage_usageevent
             WHERE id = ANY(%s) AND is_late AND late_billed_at IS NULL
             GROUP BY subscription_id, billable_metric_id
            """,
            [ids],
        )
        return {(sub, metric): tuple(values) for sub, metric, values in cursor.fetchall()}


@dataclass(frozen=True)
class DailyUsage:
    day: date  # UTC day
    billable_metric_id: int
    metric_code: str
    units: Decimal  # Σ value that day (count: events; sum-like metrics: the deltas)
    events_count: int


def usage_daily_for_subscription(*, subscription_id: int, days: int = 31) -> list[DailyUsage]:
    """Return per-day, per-metric Σ value and row count for the last `days` days with usage."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (e.timestamp AT TIME ZONE 'UTC')::date AS day, e.billable_metric_id, m.code,
                   sum(e.value), count(*)
              FROM usage_usageevent e JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
             WHERE e.subscription_id = %s
               AND e.timestamp >= (SELECT max(timestamp) FROM usage_usageevent WHERE subscription_id = %s)
                                  - make_interval(days => %s)
             GROUP BY 1, 2, 3 ORDER BY 1, 3
            """,
            [subscription_id, subscription_id, days],
        )
        return [DailyUsage(*row) for row in cursor.fetchall()]


def usage_ingested_by_hour(*, since: datetime) -> list[tuple[datetime, int]]:
    """Return (UTC hour, usage rows accepted) for each hour from the one holding `since`, oldest first.

    Folded hours come from UsageIngestHourly; rows the rollup has not reached yet (the last minute or so) are
    counted raw, through the primary key above the watermark. One statement, so one snapshot: a rollup committing
    meanwhile is seen either whole or not at all, and no row is counted twice or missed.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT hour, sum(n)::bigint FROM (
                SELECT hour, events_count AS n
                  FROM usage_usageingesthourly
                 WHERE hour >= date_trunc('hour', %(since)s, 'UTC')
                UNION ALL
                SELECT date_trunc('hour', created_at, 'UTC'), count(*)
                  FROM usage_usageevent
                 WHERE id > (SELECT coalesce(max(last_event_id), 0) FROM usage_usagerollupstate)
                   AND created_at >= date_trunc('hour', %(since)s, 'UTC')
                 GROUP BY 1
            ) AS counted
             GROUP BY hour ORDER BY hour
            """,
            {"since": since},
        )
        return [(hour, count) for hour, count in cursor.fetchall()]


@dataclass(frozen=True)
class UsageSummaryRow:
    subscription_id: int
    subscription_external_id: str
    service_code: str
    metric_code: str
    aggregation_type: str
    events_count: int
    value_sum: Decimal  # Σ value (count: events; sum: units; others: raw sum of values)
    value_max: Decimal
    late_count: int
    late_unbilled_count: int
    first_at: object
    last_at: object


def usage_summary(
    *,
    service_id: int | None = None,
    subscription_external_id: str = "",
    metric_code: str = "",
    from_datetime=None,
    to_datetime=None,
    late_only: bool = False,
    limit: int = 500,
) -> list[UsageSummaryRow]:
    """Return usage grouped per (subscription, metric) under the given filters (admin view), at most `limit` rows
    in (subscription external id, subscription, metric code) order.

    The subscriptions come first: the first `limit` of them in that order with a row under the filters (each
    gives at least one group, so the first `limit` groups are theirs), found by one probe of the period index
    each; only their rows are aggregated. Grouping the whole table and keeping 500 groups read every row
    (3.5 s at 5M rows, bench/admin.py).
    """
    where, params = ["e.subscription_id = s.id"], []
    subscription_where, subscription_params = ["TRUE"], []
    if service_id:
        where.append("e.service_id = %s")
        params.append(service_id)
    if subscription_external_id:
        subscription_where.append("s.external_id = %s")
        subscription_params.append(subscription_external_id)
    if metric_code:
        where.append("m.code = %s")
        params.append(metric_code)
    if from_datetime:
        where.append("e.timestamp >= %s")
        params.append(from_datetime)
    if to_datetime:
        where.append("e.timestamp < %s")
        params.append(to_datetime)
    if late_only:
        where.append("e.is_late")
    conditions = " AND ".join(where)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH chosen AS MATERIALIZED (
                -- OFFSET 0 keeps the order below the probe, so the LIMIT stops the probes at `limit` hits.
                SELECT s.id, s.external_id
                  FROM (SELECT s.id, s.external_id FROM subscriptions_subscription s
                         WHERE {" AND ".join(subscription_where)} ORDER BY s.external_id, s.id OFFSET 0) AS s
                 WHERE EXISTS (SELECT 1 FROM usage_usageevent e
                                 JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
                                WHERE {conditions})
                 LIMIT %s
            ), grouped AS (
                -- Grouped by ids (a hash of a few hundred groups), named afterwards: sorting 10^5 wide rows by
                -- their names spilled to disk.
                SELECT e.subscription_id, e.service_id, e.billable_metric_id, count(*) AS n, sum(e.value) AS total,
                       max(e.value) AS largest, count(*) FILTER (WHERE e.is_late) AS late,
                       count(*) FILTER (WHERE e.is_late AND e.late_billed_at IS NULL) AS late_unbilled,
                       min(e.timestamp) AS first_at, max(e.timestamp) AS last_at
                  FROM chosen s
                  JOIN usage_usageevent e ON e.subscription_id = s.id
                  JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
                 WHERE {conditions}
                 GROUP BY 1, 2, 3
            )
            SELECT g.subscription_id, s.external_id, svc.code, m.code, m.aggregation_type, g.n, g.total, g.largest,
                   g.late, g.late_unbilled, g.first_at, g.last_at
              FROM grouped g
              JOIN chosen s ON s.id = g.subscription_id
              JOIN catalog_billablemetric m ON m.id = g.billable_metric_id
              JOIN customers_service svc ON svc.id = g.service_id
             ORDER BY 2, 1, 4
             LIMIT %s
            """,
            [*subscription_params, *params, limit, *params, limit],
        )
        return [UsageSummaryRow(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class StoredUsage:
    """One stored usage row as another system would need it again (the migration's relay to Lago)."""

    id: int
    transaction_id: str
    external_subscription_id: str
    code: str  # the metric's code
    aggregation_type: str
    field_name: str
    timestamp_us: int  # epoch microseconds
    value: Decimal  # metric units contributed (see UsageEvent.value)
    properties: dict
    source: int  # UsageEvent.Source
    created_at: datetime  # when the hub accepted it


def usage_rows_after(*, service_id: int, after_id: int, upto_id: int, limit: int) -> list[StoredUsage]:
    """Return a service's usage rows with `after_id < id <= upto_id`, in id order, at most `limit`.

    Ids are assigned in commit-safe order only below a fenced bound (`services.usage_event_watermark`): pass
    that as `upto_id`. Reads the id range through the primary key, so a short range is cheap on a large table.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.transaction_id, s.external_id, m.code, m.aggregation_type, m.field_name,
                   (extract(epoch FROM e.timestamp) * 1000000)::bigint, e.value, e.properties, e.source, e.created_at
              FROM usage_usageevent e
              JOIN subscriptions_subscription s ON s.id = e.subscription_id
              JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
             WHERE e.id > %s AND e.id <= %s AND e.service_id = %s
             ORDER BY e.id
             LIMIT %s
            """,
            [after_id, upto_id, service_id, limit],
        )
        return [
            StoredUsage(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                        json.loads(row[8]) if isinstance(row[8], str) else (row[8] or {}), row[9], row[10])
            for row in cursor.fetchall()
        ]


def usage_event_list(*, service_id: int, external_subscription_id: str | None = None, code: str | None = None,
                     timestamp_from: datetime | None = None, timestamp_to: datetime | None = None,
                     from_started_at: bool = False):
    """A service's events (not its pre-aggregated counters), newest received first, as Lago lists them.

    The order is the primary key's, so a page reads the newest rows off its index instead of sorting every row
    the service ever sent; a subscription's filter uses (subscription, metric, timestamp).
    """
    from apps.subscriptions.models import Subscription

    from .models import UsageEvent

    rows = UsageEvent.objects.filter(service_id=service_id, source=UsageEvent.Source.EVENT)
    if external_subscription_id:
        subscriptions = list(Subscription.objects.filter(service_id=service_id, external_id=external_subscription_id)
                             .values_list("pk", "started_at"))
        rows = rows.filter(subscription_id__in=[pk for pk, _ in subscriptions])
        if from_started_at:
            started = [moment for _, moment in subscriptions if moment is not None]
            if started:
                rows = rows.filter(timestamp__gte=min(started))
    if code:
        rows = rows.filter(billable_metric__code=code)
    if timestamp_from is not None:
        rows = rows.filter(timestamp__gte=timestamp_from)
    if timestamp_to is not None:
        rows = rows.filter(timestamp__lte=timestamp_to)
    return rows.select_related("subscription__account_link", "billable_metric").order_by("-id")


def usage_event_get(*, service_id: int, transaction_id: str):
    """The service's event with this transaction_id, or None (another service's is not seen)."""
    from .models import UsageEvent

    return (UsageEvent.objects.filter(service_id=service_id, transaction_id=transaction_id,
                                      source=UsageEvent.Source.EVENT)
            .select_related("subscription__account_link", "billable_metric").first())

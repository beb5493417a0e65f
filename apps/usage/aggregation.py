"""Period aggregation over stored usage: the contract invoicing calls at period close.

Set-based SQL only (research/perf.md §3): one grouped statement for count/sum/max/latest/
weighted_sum, one two-stage DISTINCT statement for unique_count, one for recurring carry-in.
Semantics match `apps.invoicing.rating.aggregate` (tests/integration/usage/test_aggregation.py
checks both agree on the same rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from apps.catalog.models import BillableMetric

ZERO = Decimal(0)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Agg = BillableMetric.Aggregation
EVENTS = "usage_usageevent"
STATE_ROW_SQL = (
    "INSERT INTO usage_usagerollupstate (id, last_event_id, updated_at) VALUES (1, 0, now()) ON CONFLICT (id) DO NOTHING"
)


def rollup_state_ensure() -> None:
    """Create the rollup watermark row (id 1) if it is missing, in its own transaction when called outside one.

    `usage_totals` inserts the row on first use inside its caller's transaction, and a second transaction
    inserting it meanwhile waits for the first to end. Between a close's batch threads, which also wait for
    each other's turn to take invoice numbers, that wait can close a cycle: a close calls this before it
    starts its threads, so they only ever find the row committed.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(STATE_ROW_SQL)


@dataclass(frozen=True)
class UsageTotal:
    units: Decimal  # metric units for the period, before the metric's rounding
    events_count: int  # stored rows (events or counters) inside the period


@dataclass(frozen=True)
class _Metric:
    aggregation_type: str
    recurring: bool
    field_name: str


def _check_bounds(from_datetime: datetime, to_datetime: datetime) -> None:
    for bound in (from_datetime, to_datetime):
        if not isinstance(bound, datetime) or bound.utcoffset() is None:
            raise TypeError("period bounds must be aware datetimes")
    if to_datetime <= from_datetime:
        raise ValueError("empty aggregation period")


def _metrics_for(subscription_ids: list[int]) -> dict[int, _Metric]:
    rows = BillableMetric.objects.filter(
        service__subscriptions__id__in=subscription_ids
    ).values_list("id", "aggregation_type", "recurring", "field_name").distinct()
    return {pk: _Metric(kind, recurring, field or "") for pk, kind, recurring, field in rows}


def _epoch_us(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch (exact, like the SQL side)."""
    delta = moment - EPOCH
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


_RAW_PART = """
                SELECT subscription_id, billable_metric_id, 1, value, value,
                       ARRAY[extract(epoch FROM timestamp), id::numeric, value],
                       value * round(extract(epoch FROM timestamp) * 1000000)
                  FROM usage_usageevent
                 WHERE subscription_id = ANY(%(subs)s) AND NOT is_late AND {cond}"""


def _day_split(from_datetime: datetime, to_datetime: datetime) -> dict:
    """Split [from, to) into whole UTC days (rollup) and the partial edges (raw rows)."""
    start = from_datetime.astimezone(timezone.utc)
    end = to_datetime.astimezone(timezone.utc)
    floor = start.replace(hour=0, minute=0, second=0, microsecond=0)
    day_from = floor if floor == start else floor + timedelta(days=1)
    day_to = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if day_from >= day_to:  # no whole day: the first edge covers the period
        return {"day_from": day_to.date(), "day_to": day_to.date(), "edge1_to": end, "edge2_from": end,
                "carry_day": floor.date(), "carry_day_ts": floor}
    return {"day_from": day_from.date(), "day_to": day_to.date(), "edge1_to": day_from, "edge2_from": day_to,
            "carry_day": floor.date(), "carry_day_ts": floor}


def usage_totals(
    *, subscription_ids: list[int], from_datetime: datetime, to_datetime: datetime
) -> dict[tuple[int, int], UsageTotal]:
    """Return units per (subscription_id, billable_metric_id) for usage in [from, to).

    - Late rows (`is_late`) are excluded: invoicing bills them through
      `selectors.late_usage_unbilled` as an adjustment.
    - count: Σ value (1 per event, the quantity per counter); sum: Σ value (+ every earlier
      row of the subscription if recurring); max / latest: largest / most recent value
      (ties on timestamp: the row stored last); unique_count: distinct `properties[field_name]`
      added in the period (+ keys still active at `from` if recurring; `operation_type:
      "remove"` rows deactivate a key); weighted_sum: time-weighted level over the period in
      microseconds, starting from the earlier rows' Σ if recurring (Lago weighted_sum_agg).
    - A pair with no usage is absent (zero units), unless a recurring carry makes it non-zero.
    - Before closing a period, call `services.usage_ingest_fence()` after committing the new
      `usage_billed_until`, so no in-flight batch lands unseen and unflagged.
    """
    _check_bounds(from_datetime, to_datetime)
    subscription_ids = sorted({int(pk) for pk in subscription_ids})
    if not subscription_ids:
        return {}
    metrics = _metrics_for(subscription_ids)
    to_us = _epoch_us(to_datetime)
    period_us = to_us - _epoch_us(from_datetime)
    params = {"subs": subscription_ids, "from": from_datetime, "to": to_datetime, "to_us": to_us}

    grouped: dict[tuple[int, int], tuple] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        # Holding the state row FOR SHARE pins the watermark for this transaction: an advancer
        # cannot commit a new one meanwhile, so rollup and raw tail never overlap or miss rows.
        # The row must exist to be locked: without it, a first advance could commit unseen.
        cursor.execute(STATE_ROW_SQL)
        # A close groups ~50,000 (subscription, metric) pairs per call: with the default 4 MB the hash
        # aggregate spills to disk (180 MB at 10M rows). 64 MB keeps it in memory, for this transaction only:
        # 4.4 -> 3.8 s in bench/close.py.
        # JIT off, for this transaction only: these plans pass jit_above_cost, and compiling them cost more than
        # it saved, 7-10% more backend CPU per call (3.5 vs 3.2 s over 10,000 subscriptions, in chunks or whole).
        cursor.execute(
            "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
            [f"{settings.USAGE_AGGREGATE_WORK_MEM_MB}MB"],
        )
        cursor.execute("SELECT last_event_id FROM usage_usagerollupstate WHERE id = 1 FOR SHARE")
        params["w"] = cursor.fetchone()[0]
        params.update(_day_split(from_datetime, to_datetime))
        # Whole UTC days from the rollup; edge days and rows above the watermark from the raw
        # table. "latest" via max over [epoch, id, value] keeps every part a plain aggregate.
        cursor.execute(
            f"""
            WITH parts AS (
                SELECT subscription_id, billable_metric_id, events_count AS n, value_sum AS s, value_max AS mx,
                       latest_key AS lk, moment_sum AS ms
                  FROM usage_usagedaily
                 WHERE subscription_id = ANY(%(subs)s) AND day >= %(day_from)s AND day < %(day_to)s
                   AND events_count > 0
                UNION ALL
                {_RAW_PART.format(cond="timestamp >= %(from)s AND timestamp < %(edge1_to)s AND id <= %(w)s")}
                UNION ALL
                {_RAW_PART.format(cond="timestamp >= %(edge2_from)s AND timestamp < %(to)s AND id <= %(w)s")}
                UNION ALL
                {_RAW_PART.format(cond="id > %(w)s AND timestamp >= %(from)s AND timestamp < %(to)s")}
            )
            SELECT subscription_id, billable_metric_id, sum(n), sum(s), max(mx), (max(lk))[3], sum(ms)
              FROM parts GROUP BY subscription_id, billable_metric_id
            """,
            params,
        )
        for sub, metric, count, total, maximum, latest, moment_sum in cursor.fetchall():
            # Σ v·(to − t) = to·Σv − Σ v·t, all in whole microseconds: exact.
            grouped[(sub, metric)] = (int(count), total, maximum, latest, to_us * total - moment_sum)

        recurring_sums = [pk for pk, m in metrics.items() if m.recurring and m.aggregation_type in (Agg.SUM, Agg.WEIGHTED_SUM)]
        carried: dict[tuple[int, int], Decimal] = {}
        if recurring_sums:
            # Every row before the period, late ones included: they are part of the running level.
            cursor.execute(
                f"""
                SELECT subscription_id, billable_metric_id, sum(total) FROM (
                    SELECT subscription_id, billable_metric_id, total_sum AS total FROM usage_usagedaily
                     WHERE subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND day < %(carry_day)s
                    UNION ALL
                    SELECT subscription_id, billable_metric_id, value FROM {EVENTS}
                     WHERE subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND timestamp >= %(carry_day_ts)s AND timestamp < %(from)s AND id <= %(w)s
                    UNION ALL
                    SELECT subscription_id, billable_metric_id, value FROM {EVENTS}
                     WHERE id > %(w)s AND subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND timestamp < %(from)s
                ) parts
                 GROUP BY subscription_id, billable_metric_id
                """,
                {**params, "metrics": recurring_sums},
            )
            carried = {(sub, metric): total for sub, metric, total in cursor.fetchall()}

        unique: dict[tuple[int, int], int] = {}
        unique_metrics = [pk for pk, m in metrics.items() if m.aggregation_type == Agg.UNIQUE_COUNT]
        if unique_metrics:
            unique = _unique_counts(cursor, params, unique_metrics, metrics)

    out: dict[tuple[int, int], UsageTotal] = {}
    for key in set(grouped) | set(carried) | set(unique):
        metric = metrics.get(key[1])
        if metric is None:
            continue
        count, total, maximum, latest, moment = grouped.get(key, (0, ZERO, ZERO, ZERO, ZERO))
        kind = metric.aggregation_type
        carry = carried.get(key, ZERO) if metric.recurring else ZERO
        if kind == Agg.COUNT:
            units = total
        elif kind == Agg.SUM:
            units = carry + total
        elif kind == Agg.MAX:
            units = maximum
        elif kind == Agg.LATEST:
            units = latest
        elif kind == Agg.UNIQUE_COUNT:
            units = Decimal(unique.get(key, 0))
        else:  # weighted_sum: area = L0·T + Σ v·(to − t); one division, as rating.aggregate does
            units = (carry * period_us + moment) / period_us
        out[key] = UsageTotal(units=units, events_count=count)
    return out


def _unique_counts(cursor, params: dict, unique_metrics: list[int], metrics: dict[int, _Metric]) -> dict:
    """Distinct keys added in the period, plus (recurring) keys whose last earlier row was an add."""
    # The key lives at properties[field_name]; field names differ per metric, so pass pairs.
    metric_ids = unique_metrics
    fields = [metrics[pk].field_name for pk in unique_metrics]
    recurring_ids = [pk for pk in unique_metrics if metrics[pk].recurring]
    cursor.execute(
        f"""
        WITH m(id, field) AS (SELECT * FROM unnest(%(metrics)s::bigint[], %(fields)s::text[])),
        added AS (
            SELECT DISTINCT e.subscription_id, e.billable_metric_id, e.properties ->> m.field AS key
              FROM {EVENTS} e JOIN m ON m.id = e.billable_metric_id
             WHERE e.subscription_id = ANY(%(subs)s) AND e.timestamp >= %(from)s AND e.timestamp < %(to)s
               AND NOT e.is_late AND e.value > 0
        ),
        carried AS (
            SELECT subscription_id, billable_metric_id, key FROM (
                SELECT DISTINCT ON (e.subscription_id, e.billable_metric_id, e.properties ->> m.field)
                       e.subscription_id, e.billable_metric_id, e.properties ->> m.field AS key, e.value
                  FROM {EVENTS} e JOIN m ON m.id = e.billable_metric_id
                 WHERE e.subscription_id = ANY(%(subs)s) AND e.billable_metric_id = ANY(%(recurring)s)
                   AND e.timestamp < %(from)s
                 ORDER BY e.subscription_id, e.billable_metric_id, e.properties ->> m.field,
                          e.timestamp DESC, e.id DESC
            ) last_seen WHERE value > 0
        )
        SELECT subscription_id, billable_metric_id, count(*)
          FROM (SELECT * FROM added UNION SELECT * FROM carried) keys
         GROUP BY subscription_id, billable_metric_id
        """,
        {**params, "metrics": metric_ids, "fields": fields, "recurring": recurring_ids},
    )
    return {(sub, metric): count for sub, metric, count in cursor.fetchall()}


def usage_per_event_values(
    *, subscription_ids: list[int], from_datetime: datetime, to_datetime: datetime
) -> dict[tuple[int, int], tuple[Decimal, ...]]:
    """Return each pair's per-row values in time order (late rows excluded), for per-transaction charges."""
    _check_bounds(from_datetime, to_datetime)
    subscription_ids = sorted({int(pk) for pk in subscription_ids})
    if not subscription_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT subscription_id, billable_metric_id, array_agg(value ORDER BY timestamp, id)
              FROM {EVENTS}
             WHERE subscription_id = ANY(%(subs)s) AND timestamp >= %(from)s AND timestamp < %(to)s
               AND NOT is_late
             GROUP BY subscription_id, billable_metric_id
            """,
            {"subs": subscription_ids, "from": from_datetime, "to": to_datetime},
        )
        return {(sub, metric): tuple(values) for sub, metric, values in cursor.fetchall()}

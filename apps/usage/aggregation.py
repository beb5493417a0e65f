"""Period aggregation over stored usage: the contract invoicing calls at period close.

Set-based SQL only (research/perf.md §3): one grouped statement for count/sum/max/latest/
weighted_sum, one two-stage DISTINCT statement for unique_count, one for recurring carry-in.
Semantics match `apps.invoicing.rating.aggregate` (tests/integration/usage/test_aggregation.py
checks both agree on the same rows).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


# The values an event carries for its metric's filter keys, only where the metric lists the value, and for the
# pricing group keys of its charges (any value, None when the event lacks the key): sorted (key, value) pairs,
# () for none. A charge's filters match events by them (apps/invoicing/filters.py).
Combination = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class UsagePart:
    """A filtered metric's usage for the events carrying one combination of its filter values."""

    units: Decimal  # metric units, before rounding
    events_count: int
    latest: tuple = ()  # latest_agg: (epoch seconds, row id) of the part's most recent row
    keys: frozenset = frozenset()  # unique_count_agg: the keys counted


@dataclass(frozen=True)
class UsageTotal:
    units: Decimal  # metric units for the period, before the metric's rounding
    events_count: int  # stored rows (events or counters) inside the period
    aggregation_type: str = field(default="", compare=False)
    # Metrics with filters: the same usage per combination of filter values (what `select` merges).
    parts: Mapping[Combination, UsagePart] = field(default_factory=dict, compare=False)

    def select(self, combinations: Iterable[Combination]) -> UsageTotal:
        """The usage of the events carrying one of `combinations` (a charge filter's share of the metric)."""
        return usage_merge(self.aggregation_type, [self.parts[key] for key in combinations if key in self.parts])


def usage_merge(kind: str, parts: list[UsagePart]) -> UsageTotal:
    """Fold parts into one total by the metric's aggregation (unique keys are united, not added)."""
    count = sum(part.events_count for part in parts)
    if kind == Agg.MAX:
        units = max((part.units for part in parts), default=ZERO)
    elif kind == Agg.LATEST:
        units = max(parts, key=lambda part: part.latest or (Decimal("-Infinity"),)).units if parts else ZERO
    elif kind == Agg.UNIQUE_COUNT:
        units = Decimal(len(frozenset().union(*(part.keys for part in parts))))
    else:  # count, sum, weighted_sum: each part's units are its own events' (and carried level's) share
        units = sum((part.units for part in parts), ZERO)
    return UsageTotal(units=units, events_count=count, aggregation_type=kind)


@dataclass(frozen=True)
class _Metric:
    aggregation_type: str
    recurring: bool
    field_name: str
    filters: dict  # {key: [values]} the metric lists, {group key: ANY_VALUE} its charges group by; {} for none


def combination_from_sql(raw) -> Combination:
    if raw is None:
        return ()
    values = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(sorted(values.items()))


# The event's filter values the metric lists, as a JSON object ({} for none): `fm` holds each filtered metric's
# {key: [values]}; `?` tests a JSON array for a string.
COMBINATION_SQL = """coalesce((SELECT jsonb_object_agg(k.key, e.properties ->> k.key) FROM jsonb_each(fm.allowed) k
                           WHERE k.value = 'true'::jsonb OR k.value ? (e.properties ->> k.key)), '{}'::jsonb)"""
FILTERED_METRICS_SQL = "unnest(%(fm_ids)s::bigint[], %(fm_allowed)s::jsonb[]) AS fm(id, allowed)"


def _check_bounds(from_datetime: datetime, to_datetime: datetime) -> None:
    for bound in (from_datetime, to_datetime):
        if not isinstance(bound, datetime) or bound.utcoffset() is None:
            raise TypeError("period bounds must be aware datetimes")
    if to_datetime <= from_datetime:
        raise ValueError("empty aggregation period")


def metrics_for(subscription_ids: list[int]) -> dict[int, _Metric]:
    rows = BillableMetric.objects.filter(
        service__subscriptions__id__in=subscription_ids
    ).values_list("id", "aggregation_type", "recurring", "field_name", "filters").distinct()
    metrics = {
        pk: _Metric(kind, recurring, field or "", {item["key"]: list(item["values"]) for item in filters or []})
        for pk, kind, recurring, field, filters in rows
    }
    for pk, keys in group_keys_by_metric(list(metrics)).items():
        # A pricing group key takes any value (ANY_VALUE), also when it is one of the metric's filter keys.
        metrics[pk].filters.update(dict.fromkeys(keys, ANY_VALUE))
    return metrics


# In a metric's {key: [values]}: the key is a charge's pricing group key, every value it takes is kept (an event
# without it: null, Lago's group of events missing the key).
ANY_VALUE = True


def group_keys_by_metric(metric_ids: list[int]) -> dict[int, set[str]]:
    """The pricing group keys (Lago `pricing_group_keys`, formerly `grouped_by`) any charge or charge filter on these
    metrics sets: their usage is split by the values events carry for them, as by filter values (`Combination`).
    Such a metric is read from its raw rows, as a filtered one (the daily rollup keeps no properties)."""
    from django.db.models import Q

    from apps.catalog.models import Charge, ChargeFilter
    from apps.catalog.pricing_groups import pricing_group_keys

    if not metric_ids:
        return {}
    grouped = Q(properties__has_key="pricing_group_keys") | Q(properties__has_key="grouped_by")
    found: dict[int, set[str]] = {}
    rows = list(Charge.objects.filter(grouped, billable_metric_id__in=metric_ids)
                .values_list("billable_metric_id", "properties"))
    rows += ChargeFilter.objects.filter(grouped, charge__billable_metric_id__in=metric_ids, deleted_at=None) \
        .values_list("charge__billable_metric_id", "properties")
    for pk, properties in rows:
        keys = pricing_group_keys(properties)
        if keys:
            found.setdefault(pk, set()).update(keys)
    return found


def filtered_metrics_params(metrics: dict[int, _Metric]) -> dict:
    ids = sorted(pk for pk, metric in metrics.items() if metric.filters)
    return {"fm_ids": ids, "fm_allowed": [json.dumps(metrics[pk].filters) for pk in ids]}


def _epoch_us(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch (exact, like the SQL side)."""
    delta = moment - EPOCH
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


_RAW_PART = """
                SELECT subscription_id, billable_metric_id, NULL::jsonb, 1, value, value,
                       ARRAY[extract(epoch FROM timestamp), id::numeric, value],
                       value * round(extract(epoch FROM timestamp) * 1000000)
                  FROM usage_usageevent
                 WHERE subscription_id = ANY(%(subs)s) AND NOT is_late AND {cond}
                   AND billable_metric_id <> ALL(%(fm_ids)s)"""


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
    - Metrics with filters: `parts` holds the same usage per combination of the filter values the rows carry
      (`UsageTotal.select`). The daily rollup does not keep properties, so these metrics are read from the raw
      rows over the whole period, grouped by combination in SQL (and their recurring carry from every earlier
      raw row): a filter's sums cost an index range scan of its rows, not the rollup's few rows per day.
    - Before closing a period, call `services.usage_ingest_fence()` after committing the new
      `usage_billed_until`, so no in-flight batch lands unseen and unflagged.
    """
    _check_bounds(from_datetime, to_datetime)
    subscription_ids = sorted({int(pk) for pk in subscription_ids})
    if not subscription_ids:
        return {}
    metrics = metrics_for(subscription_ids)
    to_us = _epoch_us(to_datetime)
    period_us = to_us - _epoch_us(from_datetime)
    params = {"subs": subscription_ids, "from": from_datetime, "to": to_datetime, "to_us": to_us,
              **filtered_metrics_params(metrics)}

    grouped: dict[tuple[int, int, Combination], tuple] = {}
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
                SELECT subscription_id, billable_metric_id, NULL::jsonb AS combination, events_count AS n,
                       value_sum AS s, value_max AS mx, latest_key AS lk, moment_sum AS ms
                  FROM usage_usagedaily
                 WHERE subscription_id = ANY(%(subs)s) AND day >= %(day_from)s AND day < %(day_to)s
                   AND events_count > 0 AND billable_metric_id <> ALL(%(fm_ids)s)
                UNION ALL
                {_RAW_PART.format(cond="timestamp >= %(from)s AND timestamp < %(edge1_to)s AND id <= %(w)s")}
                UNION ALL
                {_RAW_PART.format(cond="timestamp >= %(edge2_from)s AND timestamp < %(to)s AND id <= %(w)s")}
                UNION ALL
                {_RAW_PART.format(cond="id > %(w)s AND timestamp >= %(from)s AND timestamp < %(to)s")}
                UNION ALL
                SELECT e.subscription_id, e.billable_metric_id, {COMBINATION_SQL}, 1, e.value, e.value,
                       ARRAY[extract(epoch FROM e.timestamp), e.id::numeric, e.value],
                       e.value * round(extract(epoch FROM e.timestamp) * 1000000)
                  FROM usage_usageevent e JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id
                 WHERE e.subscription_id = ANY(%(subs)s) AND NOT e.is_late
                   AND e.timestamp >= %(from)s AND e.timestamp < %(to)s
            )
            SELECT subscription_id, billable_metric_id, combination, sum(n), sum(s), max(mx), max(lk), sum(ms)
              FROM parts GROUP BY subscription_id, billable_metric_id, combination
            """,
            params,
        )
        for sub, metric, combination, count, total, maximum, latest, moment_sum in cursor.fetchall():
            # Σ v·(to − t) = to·Σv − Σ v·t, all in whole microseconds: exact.
            grouped[(sub, metric, combination_from_sql(combination))] = (
                int(count), total, maximum, latest[2] if latest else None, (latest[0], latest[1]) if latest else (),
                to_us * total - moment_sum
            )

        recurring_sums = [pk for pk, m in metrics.items() if m.recurring and m.aggregation_type in (Agg.SUM, Agg.WEIGHTED_SUM)]
        carried: dict[tuple[int, int, Combination], Decimal] = {}
        if recurring_sums:
            # Every row before the period, late ones included: they are part of the running level.
            cursor.execute(
                f"""
                SELECT subscription_id, billable_metric_id, NULL::jsonb, sum(total) FROM (
                    SELECT subscription_id, billable_metric_id, total_sum AS total FROM usage_usagedaily
                     WHERE subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND day < %(carry_day)s AND billable_metric_id <> ALL(%(fm_ids)s)
                    UNION ALL
                    SELECT subscription_id, billable_metric_id, value FROM {EVENTS}
                     WHERE subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND timestamp >= %(carry_day_ts)s AND timestamp < %(from)s AND id <= %(w)s
                       AND billable_metric_id <> ALL(%(fm_ids)s)
                    UNION ALL
                    SELECT subscription_id, billable_metric_id, value FROM {EVENTS}
                     WHERE id > %(w)s AND subscription_id = ANY(%(subs)s) AND billable_metric_id = ANY(%(metrics)s)
                       AND timestamp < %(from)s AND billable_metric_id <> ALL(%(fm_ids)s)
                ) parts
                 GROUP BY subscription_id, billable_metric_id
                UNION ALL
                SELECT e.subscription_id, e.billable_metric_id, {COMBINATION_SQL}, sum(e.value)
                  FROM {EVENTS} e JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id
                 WHERE e.subscription_id = ANY(%(subs)s) AND e.billable_metric_id = ANY(%(metrics)s)
                   AND e.timestamp < %(from)s
                 GROUP BY 1, 2, 3
                """,
                {**params, "metrics": recurring_sums},
            )
            carried = {(sub, metric, combination_from_sql(combination)): total
                       for sub, metric, combination, total in cursor.fetchall()}

        unique: dict[tuple[int, int, Combination], frozenset | int] = {}
        unique_metrics = [pk for pk, m in metrics.items() if m.aggregation_type == Agg.UNIQUE_COUNT]
        if unique_metrics:
            unique = _unique_counts(cursor, params, unique_metrics, metrics)

    parts: dict[tuple[int, int], dict[Combination, UsagePart]] = {}
    for key in set(grouped) | set(carried) | set(unique):
        metric = metrics.get(key[1])
        if metric is None:
            continue
        count, total, maximum, latest, latest_at, moment = grouped.get(key, (0, ZERO, ZERO, ZERO, (), ZERO))
        kind = metric.aggregation_type
        carry = carried.get(key, ZERO) if metric.recurring else ZERO
        keys: frozenset = frozenset()
        if kind == Agg.COUNT:
            units = total
        elif kind == Agg.SUM:
            units = carry + total
        elif kind == Agg.MAX:
            units = maximum
        elif kind == Agg.LATEST:
            units = latest
        elif kind == Agg.UNIQUE_COUNT:
            found = unique.get(key, 0)
            keys = found if isinstance(found, frozenset) else frozenset()
            units = Decimal(len(keys) if isinstance(found, frozenset) else found)
        else:  # weighted_sum: area = L0·T + Σ v·(to − t); one division, as rating.aggregate does
            units = (carry * period_us + moment) / period_us
        parts.setdefault(key[:2], {})[key[2]] = UsagePart(units, count, latest_at, keys)
    out: dict[tuple[int, int], UsageTotal] = {}
    for pair, by_combination in parts.items():
        kind = metrics[pair[1]].aggregation_type
        if metrics[pair[1]].filters:
            merged = usage_merge(kind, list(by_combination.values()))
            out[pair] = UsageTotal(merged.units, merged.events_count, kind, by_combination)
        else:
            part = by_combination[()]
            out[pair] = UsageTotal(part.units, part.events_count, kind)
    return out


def _unique_counts(cursor, params: dict, unique_metrics: list[int], metrics: dict[int, _Metric]) -> dict:
    """Distinct keys added in the period, plus (recurring) keys whose last earlier row was an add: a count per
    (subscription, metric, ()); for metrics with filters, the keys themselves per combination (a filter's
    share unites several combinations, and a key seen in two of them counts once)."""
    out: dict = {}
    plain = [pk for pk in unique_metrics if not metrics[pk].filters]
    filtered = [pk for pk in unique_metrics if metrics[pk].filters]
    for metric_ids, with_keys in ((plain, False), (filtered, True)):
        if not metric_ids:
            continue
        # The key lives at properties[field_name]; field names differ per metric, so pass pairs.
        fields = [metrics[pk].field_name for pk in metric_ids]
        recurring_ids = [pk for pk in metric_ids if metrics[pk].recurring]
        combination = COMBINATION_SQL if with_keys else "NULL::jsonb"
        join = f"JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id" if with_keys else ""
        result = "array_agg(DISTINCT key)" if with_keys else "count(*)"
        cursor.execute(
            f"""
            WITH m(id, field) AS (SELECT * FROM unnest(%(metrics)s::bigint[], %(fields)s::text[])),
            added AS (
                SELECT DISTINCT e.subscription_id, e.billable_metric_id, {combination} AS combination,
                       e.properties ->> m.field AS key
                  FROM {EVENTS} e JOIN m ON m.id = e.billable_metric_id {join}
                 WHERE e.subscription_id = ANY(%(subs)s) AND e.timestamp >= %(from)s AND e.timestamp < %(to)s
                   AND NOT e.is_late AND e.value > 0
            ),
            carried AS (
                SELECT subscription_id, billable_metric_id, combination, key FROM (
                    SELECT DISTINCT ON (e.subscription_id, e.billable_metric_id, {combination},
                                        e.properties ->> m.field)
                           e.subscription_id, e.billable_metric_id, {combination} AS combination,
                           e.properties ->> m.field AS key, e.value
                      FROM {EVENTS} e JOIN m ON m.id = e.billable_metric_id {join}
                     WHERE e.subscription_id = ANY(%(subs)s) AND e.billable_metric_id = ANY(%(recurring)s)
                       AND e.timestamp < %(from)s
                     ORDER BY e.subscription_id, e.billable_metric_id, {combination}, e.properties ->> m.field,
                              e.timestamp DESC, e.id DESC
                ) last_seen WHERE value > 0
            )
            SELECT subscription_id, billable_metric_id, combination, {result}
              FROM (SELECT * FROM added UNION SELECT * FROM carried) keys
             GROUP BY subscription_id, billable_metric_id, combination
            """,
            {**params, "metrics": metric_ids, "fields": fields, "recurring": recurring_ids},
        )
        for sub, metric, found_in, found in cursor.fetchall():
            out[(sub, metric, combination_from_sql(found_in))] = frozenset(found) if with_keys else found
    return out


def usage_per_event_values(
    *, subscription_ids: list[int], from_datetime: datetime, to_datetime: datetime
) -> dict[tuple, tuple]:
    """Return each pair's per-row values in time order (late rows excluded), for per-transaction charges.

    Metrics with filters also get, per (subscription, metric, combination), their rows' (epoch seconds, id,
    value) in time order: a filter's share merges several combinations back into time order (`values_in_order`).
    """
    _check_bounds(from_datetime, to_datetime)
    subscription_ids = sorted({int(pk) for pk in subscription_ids})
    if not subscription_ids:
        return {}
    params = {"subs": subscription_ids, "from": from_datetime, "to": to_datetime,
              **filtered_metrics_params(metrics_for(subscription_ids))}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.subscription_id, e.billable_metric_id, fm.id IS NOT NULL, {COMBINATION_SQL},
                   array_agg(ARRAY[extract(epoch FROM e.timestamp), e.id::numeric, e.value] ORDER BY e.timestamp, e.id)
              FROM {EVENTS} e LEFT JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id
             WHERE e.subscription_id = ANY(%(subs)s) AND e.timestamp >= %(from)s AND e.timestamp < %(to)s
               AND NOT e.is_late
             GROUP BY 1, 2, 3, 4
            """,
            params,
        )
        out: dict[tuple, tuple] = {}
        filtered: dict[tuple[int, int], list] = {}
        for sub, metric, is_filtered, combination, rows in cursor.fetchall():
            rows = [tuple(row) for row in rows]
            if is_filtered:
                out[(sub, metric, combination_from_sql(combination))] = tuple(rows)
                filtered.setdefault((sub, metric), []).append(rows)
            else:
                out[(sub, metric)] = tuple(row[2] for row in rows)
        for pair, groups in filtered.items():
            out[pair] = values_in_order(groups)
        return out


def values_in_order(groups: Iterable[Iterable[tuple]]) -> tuple[Decimal, ...]:
    """The values of (epoch seconds, id, value) rows from several combinations, in time order (ties by id)."""
    return tuple(row[2] for row in sorted(row for group in groups for row in group))


def usage_event_amounts(
    *, subscription_ids: list[int], from_datetime: datetime, to_datetime: datetime
) -> dict[tuple, Decimal]:
    """Return the Σ of the rows' own prices (`precise_total_amount_cents`, minor units) per (subscription, metric),
    late rows excluded, for `dynamic` charges; metrics with filters also per (subscription, metric, combination).
    Raw rows, one grouped read: only dynamic charges ask, and the daily rollup keeps no prices."""
    _check_bounds(from_datetime, to_datetime)
    subscription_ids = sorted({int(pk) for pk in subscription_ids})
    if not subscription_ids:
        return {}
    params = {"subs": subscription_ids, "from": from_datetime, "to": to_datetime,
              **filtered_metrics_params(metrics_for(subscription_ids))}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.subscription_id, e.billable_metric_id, fm.id IS NOT NULL, {COMBINATION_SQL},
                   sum(e.precise_total_amount_cents)
              FROM {EVENTS} e LEFT JOIN {FILTERED_METRICS_SQL} ON fm.id = e.billable_metric_id
             WHERE e.subscription_id = ANY(%(subs)s) AND e.timestamp >= %(from)s AND e.timestamp < %(to)s
               AND NOT e.is_late AND e.precise_total_amount_cents IS NOT NULL
             GROUP BY 1, 2, 3, 4
            """,
            params,
        )
        out: dict[tuple, Decimal] = {}
        for sub, metric, is_filtered, combination, total in cursor.fetchall():
            out[(sub, metric)] = out.get((sub, metric), ZERO) + total
            if is_filtered:
                out[(sub, metric, combination_from_sql(combination))] = total
        return out

"""Usage writes: idempotent batch ingestion and late-usage billing marks."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

import logging

import psycopg
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from apps.catalog.models import BillableMetric
from apps.core.exceptions import ValidationFailed
from apps.customers.models import Service

from . import subscription_cache, validation
from .aggregation import STATE_ROW_SQL
from .models import UsageEvent
from .subscription_cache import SNAPSHOT_AND_CHANGES_SQL, Sub, SubscriptionLookups
from .validation import CounterIn, EventIn

logger = logging.getLogger(__name__)

Agg = BillableMetric.Aggregation
VALUE_AGGREGATIONS = frozenset({Agg.SUM, Agg.MAX, Agg.LATEST, Agg.WEIGHTED_SUM})
# Ingest holds this advisory lock shared for its whole transaction; usage_ingest_fence takes it
# exclusively, so it returns only once every batch that started before it has committed or failed.
INGEST_FENCE_KEY = 0x75736167  # "usag"

# One statement per batch (research/perf.md §1 "js"): the whole batch as one jsonb parameter.
# The usage table is partitioned by month, so idempotency lives in usage_usageeventkey
# (UsageEvent, UsageEventKey): the keys go in first, ON CONFLICT DO NOTHING, and only the rows
# whose key this statement inserted are stored; one statement, so both or neither commit.
# Rows must reach the key's unique index in conflict-key order, or two concurrent batches sharing
# retried ids deadlock. `_ingest` sorts them in Python (code-point order, i.e. the C collation)
# and the plan is a bare Function Scan feeding a CTE scan, which yields the array in order: an
# ORDER BY here cost ~1 ms of server time per 1,000 rows to re-sort rows that were already sorted
# (bench/ingest.py, README "Performance"). The event rows themselves have no unique key to order.
INSERT_SQL = """
WITH batch AS MATERIALIZED (
    SELECT e->>0 AS transaction_id, (e->>1)::bigint AS subscription_id, (e->>2)::bigint AS billable_metric_id,
           TIMESTAMPTZ 'epoch' + (e->>3)::bigint * INTERVAL '1 microsecond' AS ts, (e->>4)::numeric AS value,
           e->5 AS properties, (e->>6)::boolean AS is_late, (e->>7)::numeric AS precise_total_amount_cents
      FROM jsonb_array_elements(%(batch)s::jsonb) AS e
), keys AS (
    INSERT INTO usage_usageeventkey (service_id, transaction_id, timestamp)
    SELECT %(service)s, transaction_id, ts FROM batch
    ON CONFLICT (service_id, transaction_id) DO NOTHING
    RETURNING transaction_id
)
INSERT INTO usage_usageevent
    (service_id, transaction_id, subscription_id, billable_metric_id, timestamp, value,
     properties, source, is_late, precise_total_amount_cents)
SELECT %(service)s, b.transaction_id, b.subscription_id, b.billable_metric_id, b.ts, b.value,
       b.properties, %(source)s, b.is_late, b.precise_total_amount_cents
  FROM batch b JOIN keys k ON k.transaction_id = b.transaction_id
RETURNING transaction_id
"""


class StoredItem(NamedTuple):
    """One input item after ingestion (in input order). A tuple: a batch makes 1,000 of them."""

    transaction_id: str
    timestamp_us: int  # epoch microseconds
    subscription_lago_id: str
    duplicate: bool  # seen before (earlier request or earlier in this batch): not stored again
    is_late: bool

    @property
    def timestamp(self) -> datetime:
        return validation.from_epoch_us(self.timestamp_us)


@dataclass(frozen=True)
class IngestResult:
    items: list[StoredItem]

    @property
    def accepted(self) -> int:
        return sum(not item.duplicate for item in self.items)

    @property
    def duplicates(self) -> int:
        return sum(item.duplicate for item in self.items)


def usage_ingest_fence() -> None:
    """Wait until every ingest transaction that started before this call has finished.

    Period close: commit the new `usage_billed_until`, call this, then read `usage_totals`.
    A batch either finished before (its rows are visible) or read the new cut-off (its
    rows are flagged late). Must not run inside an ingest transaction.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INGEST_FENCE_KEY])


_first = itemgetter(0)
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


def _hot_cursor() -> psycopg.Cursor:
    """A server-side-binding cursor on Django's connection (same transaction), for the ingest hot path.

    Django's default psycopg cursor inlines parameters client-side: escaping the ~200 KB batch
    parameter into the SQL text cost ~5 ms of worker CPU per 1,000 events, and the server then
    lexed it again. Here the batch travels as a bound parameter. The hot statements ask to be prepared
    (prepare=True), which psycopg honours only on a connection with a `prepare_threshold`: Django sets it
    to None (prepared statements off, for connection poolers) unless the database OPTIONS set one, so by
    default they are parsed and planned per batch; the figures in docs/performance.md were measured so.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


# Resolved in one network round trip with the fence lock (see `_ingest`): the statements still run
# one after the other, so the lookups' snapshots are taken after the lock is granted.
FENCE_SHARED_SQL = "SELECT pg_advisory_xact_lock_shared(%s)"
# One parameter instead of IN (%s × 1,000): Django's IN compiles at ~10 µs a value.
SUBSCRIPTIONS_SQL = """
SELECT external_id, id, lago_id::text, status,
       (extract(epoch FROM started_at) * 1000000)::bigint,
       (extract(epoch FROM terminated_at) * 1000000)::bigint,
       (extract(epoch FROM usage_billed_until) * 1000000)::bigint
  FROM subscriptions_subscription
 WHERE service_id = %s AND status IN ('active', 'terminated')
   AND external_id = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))
"""
METRICS_SQL = """
SELECT code, id, aggregation_type, field_name FROM catalog_billablemetric
 WHERE service_id = %s AND code = ANY(%s) AND deleted_at IS NULL
"""


@dataclass(frozen=True)
class _MetricRow:
    pk: int
    aggregation_type: str
    field_name: str


def _started_by(sub: Sub, moment: int) -> bool:
    """Whether `sub` had started at `moment`, to the second like Lago (date_trunc('second', started_at) <= ts).

    An event sent with whole Unix seconds right after the subscription was created is inside its life.
    """
    started = sub.started_us
    return started is None or started - started % 1_000_000 <= moment


def _pick(candidates: list[Sub], moment: int) -> Sub | None:
    """The subscription whose life contains `moment`, else None.

    Usage outside every life is refused, never stored against a subscription no period of which can bill it.
    """
    for sub in candidates:
        if sub.status == "active":
            if _started_by(sub, moment):
                return sub
        elif sub.started_us is not None and _started_by(sub, moment) and moment <= (sub.terminated_us or moment):
            return sub
    return None


def _metric_value(metric: _MetricRow, properties: dict, quantity: object | None) -> tuple[str | None, tuple | None]:
    """Return (value as decimal text, None) for one item, or (None, (field, code)): see UsageEvent.value."""
    kind = metric.aggregation_type
    if quantity is not None:  # a counter: the quantity is the contribution
        if kind == Agg.UNIQUE_COUNT:
            return None, ("code", "invalid_aggregation_type")
        text, problem = _number_text(quantity, "quantity")
        if kind == Agg.COUNT and text is not None and text.startswith("-") and Decimal(text):
            return None, ("quantity", "value_is_out_of_range")  # a count never goes down
        return text, problem
    if kind == Agg.COUNT:
        return "1", None
    raw = properties.get(metric.field_name)
    if raw is None or raw == "":
        return None, ("properties", "value_is_mandatory")
    if kind == Agg.UNIQUE_COUNT:
        if isinstance(raw, (dict, list)):
            return None, ("properties", "value_is_invalid")
        return ("-1" if properties.get("operation_type") == "remove" else "1"), None
    return _number_text(raw, "properties")


# At most 18 integer and 12 fractional ASCII digits: fits numeric(30, 12) exactly as written, and
# PostgreSQL reads the text to the same numeric as str(Decimal(text)) (leading zeros aside, which
# it drops too). Anything else (spaces, exponents, a sign other than "-") takes the Decimal path.
_PLAIN_NUMBER = re.compile(r"-?[0-9]{1,18}(?:\.[0-9]{1,12})?")
_MAX_INT_VALUE = 10**18  # validation.MAX_ABS_VALUE as an int


def _number_text(raw: object, field: str) -> tuple[str | None, tuple | None]:
    """Return (decimal text, None) for a value that fits numeric(30, 12), else (None, (field, code))."""
    kind = raw.__class__
    if kind is int:  # never a bool: bool is a subclass, not int itself
        if -_MAX_INT_VALUE < raw < _MAX_INT_VALUE:
            return str(raw), None
        return None, (field, "value_is_out_of_range")
    if kind is str and _PLAIN_NUMBER.fullmatch(raw):
        return raw, None
    value = validation.to_decimal(raw)
    if value is None:
        return None, (field, "value_is_invalid")
    problem = validation.quantity_error(value)
    return (None, (field, problem)) if problem else (str(value), None)


def _lookups(
    cursor: psycopg.Cursor, *, service: Service, items: list, cacheable: bool
) -> tuple[SubscriptionLookups, dict[str, _MetricRow]]:
    """The batch's subscriptions (from this thread's cache while no subscription changed) and metrics.

    Read after the fence lock, so usage_billed_until is at least as new as any close that has not
    yet fenced: a row is either seen by that close or flagged late. BEGIN, the lock, the change
    check and both lookups travel in one pipeline: one round trip instead of five. The statements
    still run in order, so the lookups' snapshots follow the lock.
    """
    conn = cursor.connection
    external_ids = {item.external_subscription_id for item in items}
    cached = subscription_cache.cached(service.pk) if cacheable else None
    missing = external_ids - cached.known if cached is not None else external_ids
    cached_at = (cached.xmin, cached.xmin, cached.snapshot) if cached is not None else (None, None, None)
    with psycopg.Cursor(conn) as changes_cursor, psycopg.Cursor(conn) as subs_cursor, \
            psycopg.Cursor(conn) as metrics_cursor:
        with conn.pipeline():
            cursor.execute(FENCE_SHARED_SQL, [INGEST_FENCE_KEY], prepare=True)
            changes_cursor.execute(SNAPSHOT_AND_CHANGES_SQL, cached_at, prepare=True)
            if missing:
                subs_cursor.execute(SUBSCRIPTIONS_SQL, [service.pk, _json_list(missing)], prepare=True)
            metrics_cursor.execute(METRICS_SQL, [service.pk, list({item.code for item in items})], prepare=True)
        snapshot, changed = changes_cursor.fetchone()
        rows = subs_cursor.fetchall() if missing else []
        metrics = {code: _MetricRow(pk, kind, field) for code, pk, kind, field in metrics_cursor.fetchall()}
    if cached is not None and not changed:
        lookups = cached
        lookups.still_current_at(snapshot)
    else:
        # Looked up at `snapshot` or later: a change committed after it shows up at the next check.
        lookups = SubscriptionLookups(snapshot)
        rest = external_ids - missing
        if rest:  # the cache answered for these, but it is out of date: one more round trip
            cursor.execute(SUBSCRIPTIONS_SQL, [service.pk, _json_list(rest)], prepare=True)
            lookups.add(rest, cursor.fetchall())
    lookups.add(missing, rows)
    if cacheable:
        subscription_cache.keep(service.pk, lookups)
    return lookups, metrics


def _json_list(values: set[str]) -> str:
    # One JSON text, not a list: psycopg adapts a 1,000-string list in Python (~1 ms).
    return validation.encoder.encode(list(values)).decode()


def _ingest(*, service: Service, items: list, source: int, now: datetime) -> IngestResult:
    counters = source == UsageEvent.Source.COUNTER
    now_us = validation.epoch_us(now)
    limit_us = validation.future_limit_us(now_us)  # once per batch: settings reads are slow
    floor_us = validation.past_limit_us(now_us)
    parse_ts = validation.parse_timestamp_us
    # Whole Unix seconds in (lo_us, hi_us] pass parse_timestamp_us as they are: checked inline, the
    # common case skips a keyword call per item. Anything else goes through parse_timestamp_us.
    lo_us, hi_us = floor_us - 1, min(limit_us, validation.MAX_US - 1)
    count_kind = Agg.COUNT.value
    # Inside a caller's transaction, its own uncommitted subscription writes share the batch's
    # transaction id, which the change check cannot tell apart: look everything up afresh there.
    cacheable = not connection.in_atomic_block
    with transaction.atomic(), _hot_cursor() as cursor:
        lookups, metrics = _lookups(cursor, service=service, items=items, cacheable=cacheable)
        single, several = lookups.single, lookups.several
        errors: dict[str, dict] = {}
        rows: list[tuple] = []
        out: list[StoredItem] = []
        first_at: dict[str, int] = {}  # key -> index in `out` of its first copy, the one stored
        # (metric pk, raw property) -> (value text, problem): batches repeat values, and parsing
        # + range checks are the costliest per-item step. Counters are not cached.
        values: dict[tuple, tuple] = {}
        for index, item in enumerate(items):
            problems: dict[str, list[str]] | None = None
            properties = item.properties or {}
            if counters and item.period_from is not None:
                moment = parse_ts(item.period_from, now_us=now_us, limit_us=limit_us, floor_us=floor_us)
                field = "period_from"
                if moment.__class__ is not str and item.period_to is not None:
                    # A period may end after today (a month's counter sent mid-month), never before it starts.
                    end = parse_ts(item.period_to, now_us=now_us, limit_us=validation.MAX_US - 1, floor_us=floor_us)
                    if end.__class__ is str or end < moment:
                        problems = {"period_to": [end if end.__class__ is str else "value_is_out_of_range"]}
                    properties = {**properties, "period_to": item.period_to}
            else:
                raw_ts = item.timestamp
                if raw_ts.__class__ is int and lo_us < raw_ts * 1_000_000 <= hi_us:
                    moment = raw_ts * 1_000_000
                else:
                    moment = parse_ts(raw_ts, now_us=now_us, limit_us=limit_us, floor_us=floor_us)
                field = "timestamp"
            if moment.__class__ is str:
                problems = {field: [moment]}
                moment = now_us
            metric = metrics.get(item.code)
            value = None
            if metric is None:
                problems = {**(problems or {}), "code": ["value_is_invalid"]}
            elif not counters and metric.aggregation_type == count_kind:
                value = "1"
            else:
                raw = None if counters else properties.get(metric.field_name)
                cache_key = (metric.pk, raw) if raw.__class__ in (str, int) and "operation_type" not in properties else None
                cached = values.get(cache_key) if cache_key else None
                if cached is None:
                    cached = _metric_value(metric, properties, item.quantity if counters else None)
                    if cache_key:
                        values[cache_key] = cached
                value, problem = cached
                if problem is not None:
                    problems = {**(problems or {}), problem[0]: [problem[1]]}
            price = None if counters else item.precise_total_amount_cents
            if price is not None:
                price, problem = _number_text(price, "precise_total_amount_cents")
                if problem is not None:
                    problems = {**(problems or {}), problem[0]: [problem[1]]}
            external_id = item.external_subscription_id
            sub = single.get(external_id)
            if sub is not None:
                candidates = None
                if sub.started_us is not None and moment < sub.started_us and not _started_by(sub, moment):
                    sub, candidates = None, [sub]
            else:
                candidates = several.get(external_id)
                sub = _pick(candidates, moment) if candidates else None
            if sub is None:
                if candidates:  # the subscription exists, but not at that moment: no period could bill it
                    problems = {**(problems or {}), field: ["outside_subscription_life"]}
                else:
                    problems = {**(problems or {}), "external_subscription_id": ["value_is_invalid"]}
            if problems:
                errors[str(index)] = problems
                continue
            key = item.idempotency_key if counters else item.transaction_id
            billed_until = sub.billed_until_us
            late = billed_until is not None and moment < billed_until
            if key in first_at:  # a later copy in the same batch is a duplicate
                out.append(_new_tuple(StoredItem, (key, moment, sub.lago_id, True, late)))
            else:
                first_at[key] = len(out)
                rows.append((key, sub.id, metric.pk, moment, value, properties, late, price))
                out.append(_new_tuple(StoredItem, (key, moment, sub.lago_id, False, late)))
        if errors:
            raise ValidationFailed("invalid usage batch", details=errors)
        rows.sort(key=_first)  # conflict-key order: see INSERT_SQL
        cursor.execute(INSERT_SQL, {"service": service.pk, "source": source,
                                     "batch": validation.encoder.encode(rows).decode()}, prepare=True)
        inserted = {row[0] for row in cursor.fetchall()}
        if rows:
            _usage_checks_request(cursor, service.pk, {row[1] for row in rows})
    if len(inserted) < len(first_at):  # first copies an earlier request had already stored
        for key in first_at.keys() - inserted:
            index = first_at[key]
            out[index] = out[index]._replace(duplicate=True)
    return IngestResult(out)


# One row per watched subscription (its plan has usage thresholds, or it has alerts), however many events a batch
# brings; the check
# task is sent once per row inserted, a little later (it reads the usage of several batches at once).
USAGE_CHECK_SQL = """
WITH service AS (
    -- A one-time filter: a service with no thresholds and no alerts (most) pays one index probe per batch.
    SELECT EXISTS (SELECT 1 FROM catalog_usagethreshold t JOIN catalog_plan p ON p.id = t.plan_id
                    WHERE p.service_id = %(service)s)
        OR EXISTS (SELECT 1 FROM invoicing_usagealert a WHERE a.service_id = %(service)s) AS watches
)
INSERT INTO usage_usagecheck (subscription_id, requested_at)
SELECT s.id, now() FROM subscriptions_subscription s, service
 WHERE service.watches AND s.id = ANY(%(ids)s)
   AND (EXISTS (SELECT 1 FROM catalog_usagethreshold t WHERE t.plan_id = s.plan_id)
        OR EXISTS (SELECT 1 FROM invoicing_usagealert a
                    WHERE a.service_id = s.service_id AND a.subscription_external_id = s.external_id))
ON CONFLICT (subscription_id) DO NOTHING
"""
USAGE_CHECK_TASK = "apps.invoicing.tasks.usage_checks_run_task"


def _usage_checks_request(cursor, service_id: int, subscription_ids: set[int]) -> None:
    """Ask for a usage check of the batch's watched subscriptions (apps/invoicing/usage_checks.py), in its transaction."""
    cursor.execute(USAGE_CHECK_SQL, {"service": service_id, "ids": sorted(subscription_ids)}, prepare=True)
    if cursor.rowcount:
        from celery import current_app
        from django.conf import settings

        delay = settings.USAGE_CHECK_DELAY_SECONDS
        transaction.on_commit(lambda: current_app.tasks[USAGE_CHECK_TASK].apply_async(countdown=delay), robust=True)


def usage_events_ingest(*, service: Service, events: list[EventIn], now: datetime | None = None) -> IngestResult:
    """Store Lago events for `service` once each (by transaction_id); all or nothing.

    Raises ValidationFailed with details keyed by item index when any item is invalid (nothing
    is written). Safe to retry and to run concurrently with the same ids.
    """
    return _ingest_retrying_deadlocks(service=service, items=events, source=UsageEvent.Source.EVENT, now=now)


def usage_counters_ingest(*, service: Service, counters: list[CounterIn], now: datetime | None = None) -> IngestResult:
    """Store pre-aggregated counters once each (by idempotency_key); all or nothing."""
    return _ingest_retrying_deadlocks(service=service, items=counters, source=UsageEvent.Source.COUNTER, now=now)


DEADLOCK_RETRIES = 3


def _ingest_retrying_deadlocks(*, service: Service, items: list, source: int, now: datetime | None) -> IngestResult:
    """Run one ingest, retrying it when PostgreSQL picked it as a deadlock victim.

    Rows go in conflict-key order, which avoids deadlocks between batches sharing keys as long
    as PostgreSQL reads the jsonb array in order (it does for this plan; SQL does not promise
    it). A victim's transaction rolled back whole, so rerunning it is safe and idempotent.
    Inside a caller's transaction the abort belongs to the caller, so no retry there.
    """
    attempts = 1 if connection.in_atomic_block else DEADLOCK_RETRIES
    for attempt in range(1, attempts + 1):
        try:
            return _ingest(service=service, items=items, source=source, now=now or timezone.now())
        except (OperationalError, psycopg.errors.DeadlockDetected) as exc:
            deadlock = isinstance(exc, psycopg.errors.DeadlockDetected) or isinstance(
                exc.__cause__, psycopg.errors.DeadlockDetected
            )
            if attempt == attempts or not deadlock:
                raise
            logger.warning("usage ingest chosen as deadlock victim; retrying (attempt %d)", attempt)
    raise AssertionError("unreachable")


def late_usage_mark_billed(*, event_ids: list[int], billed_at: datetime | None = None) -> int:
    """Mark late rows as billed; return how many this call marked.

    Call in the transaction that writes the adjustment fee, with the ids from
    `selectors.late_usage_unbilled`; rows already marked are left alone, so a row is billed once.
    """
    return UsageEvent.objects.filter(id__in=event_ids, is_late=True, late_billed_at__isnull=True).update(
        late_billed_at=billed_at or timezone.now()
    )


ROLLUP_SQL = """
INSERT INTO usage_usagedaily AS d
    (subscription_id, billable_metric_id, day, events_count, value_sum, value_max, latest_key, moment_sum, total_sum)
SELECT subscription_id, billable_metric_id, (timestamp AT TIME ZONE 'UTC')::date,
       count(*) FILTER (WHERE NOT is_late),
       coalesce(sum(value) FILTER (WHERE NOT is_late), 0),
       max(value) FILTER (WHERE NOT is_late),
       max(ARRAY[extract(epoch FROM timestamp), id::numeric, value]) FILTER (WHERE NOT is_late),
       coalesce(sum(value * round(extract(epoch FROM timestamp) * 1000000)) FILTER (WHERE NOT is_late), 0),
       sum(value)
  FROM usage_usageevent
 WHERE id > %(lo)s AND id <= %(hi)s
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
ON CONFLICT (subscription_id, billable_metric_id, day) DO UPDATE SET
    events_count = d.events_count + EXCLUDED.events_count,
    value_sum = d.value_sum + EXCLUDED.value_sum,
    value_max = greatest(d.value_max, EXCLUDED.value_max),
    latest_key = greatest(d.latest_key, EXCLUDED.latest_key),
    moment_sum = d.moment_sum + EXCLUDED.moment_sum,
    total_sum = d.total_sum + EXCLUDED.total_sum
"""

# Rows accepted per service and UTC hour, for the dashboard's ingestion rate (UsageIngestHourly).
INGEST_HOURLY_SQL = """
INSERT INTO usage_usageingesthourly AS h (hour, service_id, events_count)
SELECT date_trunc('hour', created_at, 'UTC'), service_id, count(*)
  FROM usage_usageevent
 WHERE id > %(lo)s AND id <= %(hi)s
 GROUP BY 1, 2
 ORDER BY 1, 2
ON CONFLICT (hour, service_id) DO UPDATE SET events_count = h.events_count + EXCLUDED.events_count
"""


def usage_rollup_advance(*, chunk: int = 200_000, max_chunks: int = 50) -> int:
    """Fold newly committed usage rows into the daily rollup and the hourly ingestion counts; return the new
    watermark.

    Safe to run concurrently (the state row serializes advancers) and at any time: the fence
    first waits out in-flight ingest batches, so no row with an id below the new watermark
    can still commit afterwards. Only `usage_*_ingest` may write usage rows for this to hold.
    """
    upper = _fenced_max_id()
    watermark = 0
    for _ in range(max_chunks):  # bounded; a backlog larger than this finishes on the next run
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(STATE_ROW_SQL)
            cursor.execute("SELECT last_event_id FROM usage_usagerollupstate WHERE id = 1 FOR UPDATE")
            (watermark,) = cursor.fetchone()
            if watermark >= upper:
                return watermark
            # Chunks of `chunk` rows' ids counted from the next row, not from the watermark: ids have gaps
            # (rolled-back batches, a sequence that does not restart), and a chunk over a gap would fold nothing.
            cursor.execute("SELECT min(id) FROM usage_usageevent WHERE id > %s", [watermark])
            (following,) = cursor.fetchone()
            hi = upper if following is None else min(following - 1 + chunk, upper)
            cursor.execute(ROLLUP_SQL, {"lo": watermark, "hi": hi})
            cursor.execute(INGEST_HOURLY_SQL, {"lo": watermark, "hi": hi})
            cursor.execute("UPDATE usage_usagerollupstate SET last_event_id = %s, updated_at = now() WHERE id = 1", [hi])
            watermark = hi
    return watermark


def _fenced_max_id() -> int:
    """Return the highest committed usage row id once no ingest batch is in flight."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INGEST_FENCE_KEY])
        cursor.execute("SELECT coalesce(max(id), 0) FROM usage_usageevent")
        return cursor.fetchone()[0]


def usage_event_watermark() -> int:
    """Return the highest usage row id below which no row can still commit: waits out in-flight ingest batches
    (the fence). Rows up to it can be read in id order as final, the way the rollup and the migration relay do."""
    return _fenced_max_id()

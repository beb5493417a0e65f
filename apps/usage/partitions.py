"""Monthly partitions of the usage table: created ahead, DEFAULT rows moved out, billed months archived and restored.

Layout (migration usage 0007, docs/usage.md "Partitions"): `usage_usageevent` is partitioned by RANGE of
`timestamp`, one partition per UTC month named `usage_usageevent_pYYYY_MM`, plus `usage_usageevent_default`
for rows of months with no partition (before the first one, or of an archived month arriving late), so no
event is ever refused for want of a partition. Every partition carries the parent's indexes.
"""
from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone as dt_timezone
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from apps.core.exceptions import BillingError

from .models import UsageArchive

PARENT = "usage_usageevent"
DEFAULT = "usage_usageevent_default"
_NAME = re.compile(r"usage_usageevent_p(\d{4})_(\d{2})")
# Partition DDL from two runs (two beats, a task and a command) is serialized: the second finds the work done.
PARTITION_LOCK_KEY = 0x75737074  # "uspt"


class UsageArchiveRefused(BillingError):
    """The month cannot be archived (or restored) now; the message says why."""

    code = "usage_archive_refused"


def month_of(moment: datetime | date) -> date:
    """The first day of `moment`'s UTC month."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(dt_timezone.utc).date()
    return moment.replace(day=1)


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{PARENT}_p{month:%Y_%m}"


def _bounds(month: date) -> tuple[str, str]:
    """The partition's range as SQL literals: [first instant of the month, first instant of the next), UTC.

    DDL takes no bind parameters; these come from dates, never from input text.
    """
    upper = add_months(month, 1)
    return f"'{month.isoformat()} 00:00:00+00'", f"'{upper.isoformat()} 00:00:00+00'"


def usage_partitions_list() -> list[date]:
    """Return the months that have a partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass", [PARENT],
        )
        months = []
        for (name,) in cursor.fetchall():
            match = _NAME.fullmatch(name)
            if match:
                months.append(date(int(match[1]), int(match[2]), 1))
    return sorted(months)


def _lock_partitions(cursor) -> None:
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK_KEY])
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{settings.USAGE_PARTITION_LOCK_TIMEOUT_MS}ms"])


def _exists(cursor, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return cursor.fetchone()[0]


def _partition_create(cursor, month: date) -> int:
    """Create `month`'s partition, moving the DEFAULT partition's rows of that month into it; return rows moved.

    PostgreSQL refuses a partition whose range matches rows in DEFAULT, so the new table is filled and attached
    rather than created as a partition: CREATE … PARTITION OF would lock the whole parent (ingest waits), while
    ATTACH takes SHARE UPDATE EXCLUSIVE on it (ingest goes on) and ACCESS EXCLUSIVE on DEFAULT alone, which is
    taken first so no row of the month lands there between the move and the attach. The CHECK lets ATTACH skip
    scanning the new table. Call inside a transaction, after `_lock_partitions`.
    """
    name = partition_name(month)
    lower, upper = _bounds(month)
    cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE timestamp >= {lower} AND timestamp < {upper} RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    moved = cursor.rowcount
    cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (timestamp >= {lower} AND timestamp < {upper})")
    cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})")
    cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")  # the partition bound says the same
    return moved


@dataclass(frozen=True)
class PartitionsEnsured:
    created: list[date]
    moved_from_default: int  # rows that sat in DEFAULT and now sit in their month's partition


def usage_partitions_ensure(*, now: datetime | None = None, months_ahead: int | None = None) -> PartitionsEnsured:
    """Create the partitions of the current UTC month and the next `months_ahead` (USAGE_PARTITIONS_AHEAD_MONTHS).

    Idempotent and safe to run twice at once: an advisory lock serializes runs, and a month that has a partition
    is skipped. One transaction per month, each bounded by USAGE_PARTITION_LOCK_TIMEOUT_MS of lock waiting.
    """
    months_ahead = settings.USAGE_PARTITIONS_AHEAD_MONTHS if months_ahead is None else months_ahead
    first = month_of(now or timezone.now())
    created, moved = [], 0
    for offset in range(months_ahead + 1):
        month = add_months(first, offset)
        with transaction.atomic(), connection.cursor() as cursor:
            _lock_partitions(cursor)
            if _exists(cursor, partition_name(month)):
                continue
            moved += _partition_create(cursor, month)
            created.append(month)
    return PartitionsEnsured(created=created, moved_from_default=moved)


# --------------------------------------------------------------------------- archive


@dataclass(frozen=True)
class MonthArchived:
    month: date
    path: Path
    rows: int


def archive_path(month: date) -> Path:
    return Path(settings.USAGE_ARCHIVE_DIR) / f"{partition_name(month)}.csv.gz"


# Each names rows the archive would lose while something can still need them; any count > 0 refuses.
ARCHIVE_CHECKS = {
    # On-time rows at or after their subscription's cut-off: their period has not been invoiced.
    "rows in a period not yet invoiced": """
        SELECT count(*) FROM {name} e JOIN subscriptions_subscription s ON s.id = e.subscription_id
         WHERE NOT e.is_late AND (s.usage_billed_until IS NULL OR e.timestamp >= s.usage_billed_until)""",
    "late rows not yet billed": "SELECT count(*) FROM {name} WHERE is_late AND late_billed_at IS NULL",
    # The daily rollup (which close, current usage and recurring carries read) must hold every row.
    "rows not yet in the daily rollup": """
        SELECT count(*) FROM {name}
         WHERE id > coalesce((SELECT last_event_id FROM usage_usagerollupstate WHERE id = 1), 0)""",
    # A draft is refreshed from raw rows until it is finalized (invoicing.close.invoice_refresh). Read as SQL,
    # not through invoicing's selectors: invoicing imports usage, not the other way round.
    "draft invoices over the month": """
        SELECT count(DISTINCT f.invoice_id) FROM invoicing_fee f JOIN invoicing_invoice i ON i.id = f.invoice_id
         WHERE i.status = 'draft' AND f.subscription_id IN (SELECT DISTINCT subscription_id FROM {name})
           AND (f.is_adjustment OR (f.from_datetime < {upper} AND f.to_datetime > {lower}))""",
    # Recurring unique counts carry every key still active, read from raw rows of all earlier months.
    "rows of recurring unique-count metrics": """
        SELECT count(*) FROM {name} e JOIN catalog_billablemetric m ON m.id = e.billable_metric_id
         WHERE m.aggregation_type = 'unique_count_agg' AND m.recurring""",
}


def _archive_problems(cursor, month: date) -> dict[str, int]:
    lower, upper = _bounds(month)
    problems = {}
    for reason, sql in ARCHIVE_CHECKS.items():
        cursor.execute(sql.format(name=partition_name(month), lower=lower, upper=upper))
        count = cursor.fetchone()[0]
        if count:
            problems[reason] = count
    return problems


def usage_month_archive(*, month: date, path: Path | None = None, now: datetime | None = None) -> MonthArchived:
    """Export a billed month's raw usage rows as gzip CSV, then detach and drop its partition.

    Refused (UsageArchiveRefused, nothing changed) unless the month ended USAGE_RAW_RETENTION_MONTHS ago and
    every row in it is billed (ARCHIVE_CHECKS). Two transactions: the export holds a SHARE lock on the month's
    partition only (a late event for that month waits; ingest of other months goes on), and the file is
    complete on disk before the second, short one takes the parent's lock, finds the same row count (rows are
    only ever added), detaches and drops. A failure in between leaves the partition attached: run it again.
    The rows' dedupe keys stay in usage_usageeventkey, so an archived transaction_id re-sent is still refused.
    """
    month = month_of(month)
    now = now or timezone.now()
    if add_months(month, 1 + settings.USAGE_RAW_RETENTION_MONTHS) > month_of(now):
        raise UsageArchiveRefused(
            f"{month:%Y-%m} is within USAGE_RAW_RETENTION_MONTHS={settings.USAGE_RAW_RETENTION_MONTHS} of {now:%Y-%m}")
    name = partition_name(month)
    path = Path(path) if path is not None else archive_path(month)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _lock_partitions(cursor)
            if not _exists(cursor, name):
                raise UsageArchiveRefused(f"{month:%Y-%m} has no partition (already archived, or never created)")
            cursor.execute(f"LOCK TABLE {name} IN SHARE MODE")
            problems = _archive_problems(cursor, month)
            if problems:
                raise UsageArchiveRefused(
                    f"{month:%Y-%m} still holds " + "; ".join(f"{count} {reason}" for reason, count in problems.items()),
                    details=problems)
            cursor.execute(f"SELECT subscription_id, billable_metric_id, count(*) FROM {name} "
                           "WHERE is_late AND late_billed_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2")
            late_billed = [list(row) for row in cursor.fetchall()]
            rows = _export(cursor, name, path)
        with transaction.atomic(), connection.cursor() as cursor:
            _lock_partitions(cursor)
            cursor.execute(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")  # parent first, as ingest locks them
            cursor.execute(f"SELECT count(*) FROM {name}")
            if cursor.fetchone()[0] != rows:
                raise UsageArchiveRefused(f"{month:%Y-%m} received rows during the export; run the archive again")
            cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")
            UsageArchive.objects.update_or_create(month=month, defaults={
                "path": str(path), "rows": rows, "late_billed": late_billed, "archived_at": timezone.now(),
                "restored_at": None})
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise UsageArchiveRefused(f"{month:%Y-%m}: the usage table stayed busy for "
                                      f"{settings.USAGE_PARTITION_LOCK_TIMEOUT_MS} ms; run the archive again") from exc
        raise
    return MonthArchived(month=month, path=path, rows=rows)


def _export(cursor, name: str, path: Path) -> int:
    """Write the partition's rows, with a header line, to `path` (gzip CSV); return how many. Atomic on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    rows = 0
    raw = cursor.cursor  # psycopg's cursor under Django's wrapper: COPY streams through it
    with open(partial, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        with raw.copy(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
            for chunk in copy:
                gz.write(chunk)
        gz.close()
        out.flush()
        os.fsync(out.fileno())
    cursor.execute(f"SELECT count(*) FROM {name}")
    rows = cursor.fetchone()[0]
    os.replace(partial, path)
    return rows


@dataclass(frozen=True)
class MonthRestored:
    month: date
    rows: int
    moved_from_default: int


def usage_month_restore(*, path: Path) -> MonthRestored:
    """Load an archive written by `usage_month_archive` back into its month's partition (created if missing).

    The rows keep their ids, all at or below the rollup watermark (archiving required it), so the rollup does
    not count them again. Refused if any of them is already stored. Rows of that month that arrived in DEFAULT
    after the archive move into the partition with them. Dedupe keys are re-added if someone removed them.
    """
    path = Path(path)
    with gzip.open(path, "rb") as gz:
        header = gz.readline().decode().strip()
    columns = [column.strip('"') for column in header.split(",")]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [PARENT])
        known = {row[0] for row in cursor.fetchall()}
    if not columns or set(columns) - known:
        raise UsageArchiveRefused(f"{path} is not a usage archive (columns {columns})")
    column_list = ", ".join(f'"{column}"' for column in columns)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_partitions(cursor)
        cursor.execute(f"CREATE TEMP TABLE usage_restore (LIKE {PARENT} INCLUDING DEFAULTS) ON COMMIT DROP")
        with gzip.open(path, "rb") as gz, cursor.cursor.copy(
                f"COPY usage_restore ({column_list}) FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            while chunk := gz.read(1 << 20):
                copy.write(chunk)
        cursor.execute("SELECT count(*), min(timestamp), max(timestamp) FROM usage_restore")
        rows, first, last = cursor.fetchone()
        if not rows:
            raise UsageArchiveRefused(f"{path} holds no rows")
        month = month_of(first)
        if month_of(last) != month:
            raise UsageArchiveRefused(f"{path} spans {first:%Y-%m} to {last:%Y-%m}; an archive holds one month")
        lower, upper = _bounds(month)
        cursor.execute(f"SELECT count(*) FROM {PARENT} WHERE id IN (SELECT id FROM usage_restore) "
                       f"AND timestamp >= {lower} AND timestamp < {upper}")
        if cursor.fetchone()[0]:
            raise UsageArchiveRefused(f"{month:%Y-%m}: rows of {path} are already stored")
        moved = 0 if _exists(cursor, partition_name(month)) else _partition_create(cursor, month)
        cursor.execute(f"INSERT INTO {partition_name(month)} SELECT * FROM usage_restore")
        cursor.execute(
            "INSERT INTO usage_usageeventkey (service_id, transaction_id, timestamp) "
            "SELECT service_id, transaction_id, timestamp FROM usage_restore ON CONFLICT DO NOTHING")
        UsageArchive.objects.filter(month=month, restored_at__isnull=True).update(restored_at=timezone.now())
    return MonthRestored(month=month, rows=rows, moved_from_default=moved)

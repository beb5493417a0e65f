"""Monthly partitions of the usage table: created ahead, DEFAULT rows moved out, billed months archived and restored.

Layout (migration usage 0007, docs/usage.md "Partitions"): `usage_usageevent` is partitioned by RANGE of
`timestamp`, one partition per UTC month named `usage_usageevent_pYYYY_MM`, plus `usage_usageevent_default`
for rows of months with no partition (before the first one, or of an archived month arriving late), so no
event is ever refused for want of a partition. Every partition carries the parent's indexes.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.exceptions import BillingError

from .archive_storage import ArchiveStorage, get_archive_storage
from .models import UsageArchive

logger = logging.getLogger(__name__)

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

# A run's claim on a month lasts this long: longer than exporting any month takes. A run that dies (worker killed
# between writing the file and dropping the partition) keeps the month that long, then the next run finishes it.
ARCHIVE_CLAIM_SECONDS = 3600


class UsageArchiveBusy(UsageArchiveRefused):
    """Another run is archiving this month now."""


class UsageMonthAlreadyArchived(UsageArchiveRefused):
    """The month has no partition: archived already (perhaps by a run a moment ago), or never created."""


class UsageArchiveCheckFailed(UsageArchiveRefused):
    """The written file does not read back as the partition's rows; the partition is kept."""


@dataclass(frozen=True)
class MonthArchived:
    month: date
    path: str  # the storage's location of the file
    rows: int
    sha256: str


def archive_name(month: date) -> str:
    return f"{partition_name(month)}.csv.gz"


def manifest_name(name: str) -> str:
    """The JSON beside an archive: its month, row count and SHA-256, checked before the partition is dropped."""
    return f"{name}.manifest.json"


def archive_path(month: date) -> Path:
    return Path(settings.USAGE_ARCHIVE_DIR) / archive_name(month)


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


def usage_month_archive(*, month: date, path: Path | str | None = None, now: datetime | None = None,
                        storage: ArchiveStorage | None = None) -> MonthArchived:
    """Export a billed month's raw usage rows as gzip CSV, check the file, then detach and drop its partition.

    Refused (UsageArchiveRefused, partition kept) unless the month ended USAGE_RAW_RETENTION_MONTHS ago and every
    row in it is billed (ARCHIVE_CHECKS); the refusal is recorded on the month's UsageArchive row. `path` writes
    that file (the command's --out), else `storage` (default get_archive_storage()) gets `archive_name(month)`.

    Safe to run twice or at once: a run claims the month first (UsageArchiveBusy while another holds it), and a
    month without a partition is UsageMonthAlreadyArchived. Three steps: (1) the export holds a SHARE lock on the
    month's partition only (a late event for that month waits; ingest of other months goes on) and writes the file
    and its manifest (row count, SHA-256); (2) the file is read back from storage and must match both; (3) a short
    transaction takes the parent's lock, finds the same row count (rows are only ever added), detaches and drops.
    A failure or crash before (3) commits leaves the partition attached and the row `exported` or `pending`; the
    next run writes the file again and finishes. Dedupe keys stay in usage_usageeventkey, so an archived
    transaction_id re-sent is still refused.
    """
    month = month_of(month)
    now = now or timezone.now()
    if add_months(month, 1 + settings.USAGE_RAW_RETENTION_MONTHS) > month_of(now):
        raise UsageArchiveRefused(
            f"{month:%Y-%m} is within USAGE_RAW_RETENTION_MONTHS={settings.USAGE_RAW_RETENTION_MONTHS} of {now:%Y-%m}")
    if path is not None:
        storage, name = get_archive_storage(root=Path(path).parent), Path(path).name
    else:
        storage, name = storage or get_archive_storage(), archive_name(month)
    with connection.cursor() as cursor:
        if not _exists(cursor, partition_name(month)):
            raise UsageMonthAlreadyArchived(f"{month:%Y-%m} has no partition (already archived, or never created)")
    token = _archive_claim(month)
    try:
        try:
            late_billed, rows, sha256 = _archive_export(month, storage, name)
            UsageArchive.objects.filter(month=month, claim_token=token).update(
                status=UsageArchive.Status.EXPORTED, path=storage.location(name), rows=rows, sha256=sha256)
            _archive_verify(storage, name, month=month, rows=rows, sha256=sha256)
            _archive_drop(month, token=token, rows=rows, sha256=sha256, late_billed=late_billed,
                          location=storage.location(name))
        except OperationalError as exc:
            if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                raise UsageArchiveRefused(f"{month:%Y-%m}: the usage table stayed busy for "
                                          f"{settings.USAGE_PARTITION_LOCK_TIMEOUT_MS} ms; run the archive again") from exc
            raise
    except (UsageMonthAlreadyArchived, UsageArchiveBusy):
        _archive_release(month, token)  # the run that archived it wrote the row
        raise
    except UsageArchiveRefused as exc:
        _archive_release(month, token, status=UsageArchive.Status.SKIPPED, error=str(exc))
        raise
    except BaseException as exc:
        _archive_release(month, token, error=f"{type(exc).__name__}: {exc}")
        raise
    return MonthArchived(month=month, path=storage.location(name), rows=rows, sha256=sha256)


def _archive_claim(month: date) -> uuid.UUID:
    """Claim `month` for this run (a conditional UPDATE of its row, created if missing); UsageArchiveBusy if taken."""
    UsageArchive.objects.bulk_create([UsageArchive(month=month)], ignore_conflicts=True)
    token, now = uuid.uuid4(), timezone.now()
    claimed = UsageArchive.objects.filter(month=month).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
        claim_token=token, claimed_until=now + timedelta(seconds=ARCHIVE_CLAIM_SECONDS),
        attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        raise UsageArchiveBusy(f"{month:%Y-%m} is being archived by another run")
    return token


def _archive_release(month: date, token: uuid.UUID, *, status: str | None = None, error: str | None = None) -> None:
    """Give the month back (if this run still holds it), recording why it was not archived.

    Called while an exception propagates: a failure here (the database gone) is logged, not raised over it; the
    claim then runs out by itself.
    """
    changes: dict = {"claim_token": None, "claimed_until": None}
    if status is not None:
        changes["status"] = status
    if error is not None:
        changes["last_error"] = error[:4000]
    try:
        UsageArchive.objects.filter(month=month, claim_token=token).update(**changes)
    except Exception:
        logger.exception("usage archive: could not release %s", f"{month:%Y-%m}")


def _archive_export(month: date, storage: ArchiveStorage, name: str) -> tuple[list, int, str]:
    """Check the month is billed and write its file and manifest; return (late rows billed, rows, SHA-256)."""
    partition = partition_name(month)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_partitions(cursor)
        if not _exists(cursor, partition):
            raise UsageMonthAlreadyArchived(f"{month:%Y-%m} has no partition (already archived, or never created)")
        cursor.execute(f"LOCK TABLE {partition} IN SHARE MODE")
        problems = _archive_problems(cursor, month)
        if problems:
            raise UsageArchiveRefused(
                f"{month:%Y-%m} still holds " + "; ".join(f"{count} {reason}" for reason, count in problems.items()),
                details=problems)
        cursor.execute(f"SELECT subscription_id, billable_metric_id, count(*) FROM {partition} "
                       "WHERE is_late AND late_billed_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2")
        late_billed = [list(row) for row in cursor.fetchall()]
        cursor.execute(f"SELECT count(*) FROM {partition}")
        rows = cursor.fetchone()[0]
        sha256 = _export(cursor, partition, storage, name)
    manifest = {"month": f"{month:%Y-%m}", "table": partition, "file": name, "rows": rows, "sha256": sha256}
    with storage.writer(manifest_name(name)) as out:
        out.write(json.dumps(manifest, indent=2).encode() + b"\n")
    return late_billed, rows, sha256


class _Hashing:
    """A write-only file that hashes what passes through it (the gzip bytes, as stored)."""

    def __init__(self, out):
        self.out, self.digest = out, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _export(cursor, name: str, storage: ArchiveStorage, file_name: str) -> str:
    """Write the partition's rows, with a header line, as gzip CSV ordered by id; return the file's SHA-256.

    Deterministic (no timestamp or name in the gzip header), so a second run writes the same bytes.
    """
    raw = cursor.cursor  # psycopg's cursor under Django's wrapper: COPY streams through it
    with storage.writer(file_name) as out:
        hashing = _Hashing(out)
        with gzip.GzipFile(filename="", fileobj=hashing, mode="wb", mtime=0) as gz:
            with raw.copy(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
                for chunk in copy:
                    gz.write(chunk)
    return hashing.digest.hexdigest()


def _archive_verify(storage: ArchiveStorage, name: str, *, month: date, rows: int, sha256: str) -> None:
    """Read the file and its manifest back from storage: same SHA-256, a valid gzip, `rows` CSV records."""
    digest = hashlib.sha256()
    with storage.reader(name) as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    with storage.reader(manifest_name(name)) as source:
        manifest = json.loads(source.read())
    expected = {"month": f"{month:%Y-%m}", "rows": rows, "sha256": sha256}
    if {key: manifest.get(key) for key in expected} != expected:
        raise UsageArchiveCheckFailed(f"{month:%Y-%m}: the manifest of {name} says {manifest}, not {expected}")
    if digest.hexdigest() != sha256:
        raise UsageArchiveCheckFailed(f"{month:%Y-%m}: {name} reads back with SHA-256 {digest.hexdigest()}, "
                                      f"written as {sha256}")
    try:
        with storage.reader(name) as source, gzip.GzipFile(fileobj=source) as gz:
            records = sum(1 for _ in csv.reader(io.TextIOWrapper(gz, encoding="utf-8", newline=""))) - 1
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise UsageArchiveCheckFailed(f"{month:%Y-%m}: {name} does not read back: {exc}") from exc
    if records != rows:
        raise UsageArchiveCheckFailed(f"{month:%Y-%m}: {name} holds {records} rows, the partition {rows}")


def _archive_drop(month: date, *, token: uuid.UUID, rows: int, sha256: str, late_billed: list, location: str) -> None:
    """Detach and drop the month's partition and record it archived, if this run still holds the month."""
    name = partition_name(month)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_partitions(cursor)
        record = UsageArchive.objects.select_for_update().get(month=month)
        if record.claim_token != token:
            raise UsageArchiveBusy(f"{month:%Y-%m}: this run's claim ran out and another run took the month")
        cursor.execute(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")  # parent first, as ingest locks them
        cursor.execute(f"SELECT count(*) FROM {name}")
        if cursor.fetchone()[0] != rows:
            raise UsageArchiveRefused(f"{month:%Y-%m} received rows during the export; run the archive again")
        cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
        cursor.execute(f"DROP TABLE {name}")
        UsageArchive.objects.filter(pk=record.pk).update(
            status=UsageArchive.Status.ARCHIVED, path=location, rows=rows, sha256=sha256, late_billed=late_billed,
            archived_at=timezone.now(), restored_at=None, last_error="", claim_token=None, claimed_until=None)


@dataclass
class ArchiveDueRun:
    archived: list[MonthArchived] = field(default_factory=list)
    skipped: dict[date, str] = field(default_factory=dict)  # month -> why (also on its UsageArchive row)
    busy: list[date] = field(default_factory=list)  # another run holds them
    failed: dict[date, str] = field(default_factory=dict)  # unexpected errors (on the row's last_error)


def usage_months_archive_due(*, now: datetime | None = None, storage: ArchiveStorage | None = None) -> ArchiveDueRun:
    """Archive every month whose partition is older than USAGE_ARCHIVE_AFTER_MONTHS and fully billed (beat, daily).

    0 months: never. Never earlier than USAGE_RAW_RETENTION_MONTHS, which any archive respects. A month with
    unbilled usage is skipped, its reason logged and kept on its UsageArchive row, and tried again the next run. A
    month restored by hand (`usage_restore`) is left for staff to archive again with the command. Idempotent and
    safe to run at once (see `usage_month_archive`): each month is archived once.
    """
    result = ArchiveDueRun()
    after = settings.USAGE_ARCHIVE_AFTER_MONTHS
    if not after:
        return result
    now = now or timezone.now()
    newest_due = add_months(month_of(now), -(1 + max(after, settings.USAGE_RAW_RETENTION_MONTHS)))
    restored = set(UsageArchive.objects.filter(restored_at__isnull=False).values_list("month", flat=True))
    for month in usage_partitions_list():
        if month > newest_due:
            break
        if month in restored:
            logger.info("usage archive: %s was restored by hand; archive it again with manage.py usage_archive",
                        f"{month:%Y-%m}")
            continue
        try:
            done = usage_month_archive(month=month, now=now, storage=storage)
        except UsageMonthAlreadyArchived:
            continue  # another run finished it after this one listed the partitions
        except UsageArchiveBusy:
            result.busy.append(month)
        except UsageArchiveRefused as exc:
            result.skipped[month] = str(exc)
            logger.warning("usage archive: %s skipped: %s", f"{month:%Y-%m}", exc)
        except Exception as exc:  # one broken month must not stop the others; the row shows the error
            result.failed[month] = f"{type(exc).__name__}: {exc}"
            logger.exception("usage archive: %s failed", f"{month:%Y-%m}")
        else:
            result.archived.append(done)
            logger.info("usage archive: %s archived (%d rows) to %s", f"{month:%Y-%m}", done.rows, done.path)
    return result


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
    manifest = path.with_name(manifest_name(path.name))
    if manifest.exists():  # written beside every archive since the beat archiver; older files have none
        expected = json.loads(manifest.read_bytes())["sha256"]
        digest = hashlib.sha256()
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise UsageArchiveRefused(f"{path} does not match its manifest's SHA-256 ({expected}): not restored")
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
        UsageArchive.objects.filter(month=month, status=UsageArchive.Status.ARCHIVED, restored_at__isnull=True).update(
            restored_at=timezone.now())
    return MonthRestored(month=month, rows=rows, moved_from_default=moved)

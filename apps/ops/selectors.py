"""What operations watch (Prometheus, `/metrics`): backlogs, failures and the close's progress, read from the
database at scrape time, so every web process answers the same figures whichever one is scraped.

Each figure is a count or a min over an indexed status column, or a statistics view: cheap at any volume. The
usage table is never counted: its inserts come from PostgreSQL's own per-table statistics (a counter that
Prometheus turns into a rate)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.invoicing.models import CloseRun
from apps.ledger.models import LedgerPosting
from apps.payments.models import PaymentAttempt
from apps.usage.models import UsageArchive, UsageEvent
from apps.webhooks.models import WebhookDelivery


@dataclass
class Backlog:
    by_status: dict[str, int] = field(default_factory=dict)
    oldest_due_seconds: float = 0.0  # how long the oldest row waiting to be sent has been due (queue lag)


@dataclass
class CloseProgress:
    running: bool = False
    running_seconds: float = 0.0
    customers: int = 0
    invoices: int = 0
    failures: int = 0
    last_finished_at: datetime | None = None


@dataclass
class OpsFigures:
    beat_leaders: int  # sessions holding the beat lock: 1 when a beat schedules, 0 when none does
    usage_rows_inserted: int
    webhooks: Backlog
    postings: Backlog
    payment_attempts: dict[str, int]
    close: CloseProgress
    usage_archive_months: dict[str, int] = field(default_factory=dict)  # months of raw usage by archive status


def _backlog(model, *, waiting: tuple[str, ...], now: datetime) -> Backlog:
    """Rows per status, and the lag: since when the oldest row that is due now has been due (a row waiting for a
    later retry is not late; a null `next_attempt_at` is due since the row was written)."""
    backlog = Backlog(by_status=dict(model.objects.values_list("status").annotate(count=Count("id")).order_by()))
    due = model.objects.filter(status__in=waiting).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    oldest = due.aggregate(at=Min(Coalesce("next_attempt_at", "created_at")))["at"]
    if oldest is not None:
        backlog.oldest_due_seconds = max(0.0, (now - oldest).total_seconds())
    return backlog


def _usage_rows_inserted() -> int:
    with connection.cursor() as cursor:
        # The usage table is partitioned: its rows are counted in its partitions' statistics, not the parent's.
        # A partition archived takes its count with it, which a Prometheus counter reads as a reset.
        cursor.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relid = %s::regclass "
                       "OR relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
                       [UsageEvent._meta.db_table, UsageEvent._meta.db_table])
        return int(cursor.fetchone()[0])


def _beat_leaders() -> int:
    from apps.core.beat import BEAT_LOCK_KEY

    # pg_locks shows a bigint advisory key as its high and low 32 bits (objsubid 1: the one-key form).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s",
            [BEAT_LOCK_KEY >> 32, BEAT_LOCK_KEY & 0xFFFF_FFFF],
        )
        return int(cursor.fetchone()[0])


def _close_progress(now: datetime) -> CloseProgress:
    progress = CloseProgress()
    latest = CloseRun.objects.order_by("-created_at", "-id").first()
    if latest is not None:
        progress.running = latest.status == CloseRun.Status.RUNNING
        progress.running_seconds = (now - latest.created_at).total_seconds() if progress.running else 0.0
        progress.customers, progress.invoices = latest.customers_count, latest.invoices_count
        progress.failures = latest.failures_count
    progress.last_finished_at = (CloseRun.objects.exclude(finished_at=None).order_by("-finished_at")
                                 .values_list("finished_at", flat=True).first())
    return progress


def ops_figures(*, now: datetime | None = None) -> OpsFigures:
    now = now or timezone.now()
    return OpsFigures(
        beat_leaders=_beat_leaders(),
        usage_rows_inserted=_usage_rows_inserted(),
        webhooks=_backlog(WebhookDelivery, now=now,
                          waiting=(WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING)),
        postings=_backlog(LedgerPosting, now=now, waiting=(LedgerPosting.Status.PENDING,)),
        payment_attempts=dict(PaymentAttempt.objects.values_list("status").annotate(count=Count("id")).order_by()),
        close=_close_progress(now),
        usage_archive_months=dict(UsageArchive.objects.values_list("status").annotate(count=Count("id")).order_by()),
    )

"""The period close spread over Celery workers on any number of machines (issue 22, docs/deployment.md).

A distributed close is a `CloseRun` split into ranges of customer ids (`CloseRange`). Each range is a message on
the `close` queue; the worker that claims it (a lease, `INVOICE_CLOSE_RANGE_LEASE_SECONDS`) bills the range with
the one-process close (`periods_close` restricted to the range: the same prepass, fences, batches and writer) and
marks it done; the last range done completes the run. Exactly once per customer-period holds as it does for one
process: every customer is billed under its row lock and every fee and invoice has a unique key, so a range billed
twice (a lease that expired while its first worker was still alive, a message delivered twice) bills nothing the
second time. A worker that dies mid-range leaves what it committed; once the lease passes, the sweep
(`close_ranges_sweep`, on the beat) hands the range out again and the next worker bills the rest.

Invoice numbers stay gapless (one numbering row lock per series), in the order ranges commit rather than in customer
order across ranges.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from apps.core.queue import task_send_on_commit

from ..models import CloseRange, CloseRun
from .pipeline import periods_close
from .planning import customers_to_close

logger = logging.getLogger(__name__)

# One distributed start at a time (pg_advisory_xact_lock): a second start while a run is unfinished returns it.
_START_LOCK_KEY = int.from_bytes(b"nexaclos", "big") & 0x7FFF_FFFF_FFFF_FFFF
_LAST_ID = 2**63 - 1


def _lease() -> timedelta:
    return timedelta(seconds=int(settings.INVOICE_CLOSE_RANGE_LEASE_SECONDS))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _bounds(customer_ids: list[int], ranges: int) -> list[tuple[int, int, int]]:
    """Split sorted ids into at most `ranges` contiguous id intervals of about as many customers each, covering
    every id (a customer due later, between two bounds, still belongs to exactly one range)."""
    count = min(ranges, len(customer_ids)) or 1
    bounds: list[tuple[int, int, int]] = []
    first = 0
    for index in range(count):
        end = (index + 1) * len(customer_ids) // count  # exclusive index
        start = index * len(customer_ids) // count
        last = customer_ids[end - 1] if index < count - 1 else _LAST_ID
        bounds.append((first, last, end - start))
        first = last + 1
    return bounds


def close_distributed_start(*, ranges: int, as_of: datetime | None = None) -> CloseRun:
    """Split the close as of `as_of` into `ranges` ranges and send one message per range (on commit).

    While a distributed close is unfinished, starting another returns it instead (its ranges are handed out
    again by the sweep if their workers died): two overlapping runs would bill nothing twice, only waste."""
    as_of = as_of or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_START_LOCK_KEY])
        unfinished = CloseRun.objects.filter(finished_at__isnull=True, ranges__isnull=False).distinct().first()
        if unfinished is not None:
            return unfinished
        customer_ids = customers_to_close(as_of=as_of)
        run = CloseRun.objects.create(as_of=as_of, customers_count=len(customer_ids))
        created = CloseRange.objects.bulk_create(
            [CloseRange(run=run, first_customer_id=first, last_customer_id=last, customers_count=count)
             for first, last, count in _bounds(customer_ids, max(1, ranges))]
        )
        for piece in created:
            task_send_on_commit("apps.invoicing.tasks.close_range_task", piece.pk, robust=True)
    return run


def close_range_claim(*, range_id: int, worker: str, now: datetime | None = None) -> CloseRange | None:
    """Claim a range that is pending, or whose last claim expired; None if another worker holds it or it is done."""
    now = now or timezone.now()
    claimable = Q(status=CloseRange.Status.PENDING) | Q(status=CloseRange.Status.RUNNING, claimed_until__lt=now)
    claimed = CloseRange.objects.filter(pk=range_id).filter(claimable).update(
        status=CloseRange.Status.RUNNING, attempts=F("attempts") + 1, claimed_by=worker,
        claimed_until=now + _lease(),
    )
    return CloseRange.objects.select_related("run").get(pk=range_id) if claimed else None


def close_range_run(*, range_id: int, worker: str | None = None) -> CloseRange | None:
    """Claim a range and bill its customers; then complete the run if it was the last. Idempotent."""
    piece = close_range_claim(range_id=range_id, worker=worker or worker_name())
    if piece is None:
        return None
    attempt = periods_close(as_of=piece.run.as_of, customers_between=(piece.first_customer_id, piece.last_customer_id))
    CloseRange.objects.filter(pk=piece.pk).exclude(status=CloseRange.Status.DONE).update(
        status=CloseRange.Status.DONE, result_run=attempt, finished_at=timezone.now(), claimed_until=None,
    )
    close_distributed_finish(run_id=piece.run_id)
    piece.refresh_from_db()
    return piece


def close_distributed_finish(*, run_id: int) -> CloseRun:
    """Complete a distributed run once every range is done: its counts are its ranges' finishing runs'."""
    with transaction.atomic():
        run = CloseRun.objects.select_for_update().get(pk=run_id)
        if run.finished_at is not None or run.ranges.exclude(status=CloseRange.Status.DONE).exists():
            return run
        totals = (CloseRun.objects.filter(pk__in=run.ranges.values("result_run"))
                  .aggregate(invoices=Sum("invoices_count"), fees=Sum("fees_count"), failures=Sum("failures_count")))
        run.invoices_count, run.fees_count = totals["invoices"] or 0, totals["fees"] or 0
        run.failures_count = totals["failures"] or 0
        run.status = CloseRun.Status.PARTIAL if run.failures_count else CloseRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.save(update_fields=["invoices_count", "fees_count", "failures_count", "status", "finished_at",
                                "updated_at"])
        return run


def close_ranges_sweep(*, now: datetime | None = None) -> int:
    """Send again the ranges whose worker died (lease passed) or whose message was lost (pending for longer than a
    lease). A range still held is left alone; one sent twice is claimed once."""
    now = now or timezone.now()
    stale = CloseRange.objects.filter(
        Q(status=CloseRange.Status.RUNNING, claimed_until__lt=now)
        | Q(status=CloseRange.Status.PENDING, run__created_at__lt=now - _lease())
    ).values_list("pk", flat=True)
    ids = list(stale)
    for range_id in ids:
        logger.warning("close: range %s handed out again", range_id)
        task_send_on_commit("apps.invoicing.tasks.close_range_task", range_id, robust=True)
    # A worker that died between marking the last range done and completing the run: complete it here, or
    # every later start would keep returning the unfinished run and no close would run again.
    for run_id in (CloseRun.objects.filter(finished_at__isnull=True, ranges__isnull=False)
                   .exclude(ranges__status__in=(CloseRange.Status.PENDING, CloseRange.Status.RUNNING))
                   .values_list("pk", flat=True).distinct()):
        close_distributed_finish(run_id=run_id)
    return len(ids)

"""The period close run: chunks planned, cut off and fenced, aggregated on one thread while batches bill on others."""
from __future__ import annotations

import gc
import logging
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from apps.subscriptions.services import subscription_transitions_apply

from ..fees import Window
from ..models import CloseRun, CloseRunCustomer
from .planning import Loaded, close_prepass, customers_to_close
from .usage import UsageFetcher, _prefetched, _usage_totals, usage_cutoffs_advance
from .writing import _copy_insert, close_batch, close_customer

logger = logging.getLogger(__name__)


# A run bills its due customers in batches of this many per transaction (INVOICE_CLOSE_BATCH_SIZE);
# a chunk smaller than INVOICE_CLOSE_BATCH_MIN goes customer by customer (little to gain, finer isolation).
CLOSE_BATCH_SIZE = 250


CLOSE_BATCH_MIN = 20


# Customers planned, cut off and aggregated together (`periods_close`): small enough that the first batches
# start early, large enough that each aggregate's fixed cost stays small (1,000: same total as one aggregate
# of 10,000 subscriptions, bench/close.py).
CLOSE_PLAN_CHUNK = 1000


# Threads running batches (INVOICE_CLOSE_WORKERS): two overlap one batch's database work with the next one's
# Python on a 2-core machine (bench/close.py).
CLOSE_WORKERS = 2


def close_chunks(count: int, *, largest: int, smallest: int) -> list[tuple[int, int]]:
    """Split `count` customers into chunks (start, stop): sizes ramp up from `smallest`, doubling, to about
    `largest`, and down again at the end.

    Batches cannot start before the first chunk is planned and aggregated, and the last chunk bills alone after
    the aggregating thread is done: small chunks at both ends shorten that start and that tail, while the large
    ones in between keep each aggregate's fixed cost small (bench/close.py). Too few customers for both ramps:
    equal chunks of at most `largest`.
    """
    smallest = max(1, min(smallest, largest))
    ramp = []
    while smallest * 2 ** len(ramp) < largest:
        ramp.append(smallest * 2 ** len(ramp))
    middle = count - 2 * sum(ramp)
    if middle < largest:
        ramp, middle = [], count
    pieces = -(-middle // largest)  # ceil: every middle chunk at most `largest`
    sizes = ramp + [middle // pieces + (1 if index < middle % pieces else 0) for index in range(pieces)] + ramp[::-1]
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


class _Turns:
    """Chunks take invoice numbers in chunk order: chunk k numbers only once chunks 0..k-1 are done.

    With several threads, chunk k plans and writes while chunk k-1 finishes, then waits here (holding only
    its own customers' locks, which no earlier chunk needs) before taking numbers; so numbers follow customer
    order as in a sequential run, and the numbering row lock is never waited on in a cycle.
    """

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._next = 0
        self._changed = threading.Condition()

    def wait(self, chunk: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._next >= chunk)

    def done(self, chunk: int) -> None:
        with self._changed:
            self._done.add(chunk)
            while self._next in self._done:
                self._next += 1
            self._changed.notify_all()


@dataclass
class _ChunkOutcome:
    billed: list[tuple[int, int, int]] = field(default_factory=list)  # (customer id, invoices, fees)
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (customer id, error, traceback)


def _close_chunk(
    chunk: list[int], *, as_of: datetime, fetch: UsageFetcher, loaded: Loaded | None, smallest: int,
    before_numbering: Callable[[], None] | None = None, fenced: dict[int, datetime] | None = None,
) -> _ChunkOutcome:
    """Bill one chunk of customers: one batch, then one by one for those it left or could not write."""
    outcome = _ChunkOutcome()
    one_by_one = chunk
    if len(chunk) >= smallest:
        try:
            result = close_batch(
                customer_ids=chunk, as_of=as_of, fetch=fetch, loaded=loaded, before_numbering=before_numbering,
                fenced=fenced,
            )
        except Exception:  # rolled back as a whole: each customer again on its own, errors recorded there
            logger.exception("close batch failed for customers %s..%s", chunk[0], chunk[-1])
        else:
            outcome.billed.extend((customer_id, *counts) for customer_id, counts in result.billed.items())
            one_by_one = result.left
    if one_by_one and before_numbering is not None:
        before_numbering()
    for customer_id in one_by_one:
        try:
            invoices, fees = close_customer(customer_id=customer_id, as_of=as_of, fetch=fetch, fenced=fenced)
        except Exception as exc:  # task boundary per customer: record and go on
            logger.exception("close failed for customer %s", customer_id)
            outcome.failed.append((customer_id, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        outcome.billed.append((customer_id, invoices, fees))
    return outcome


class _Pending:
    """A UsageFetcher whose totals another thread is still aggregating: the first lookup waits for them.

    If that aggregate failed, lookups fall back to live per-window queries (`live`; slower, same totals):
    the run goes on, and the error is logged once.
    """

    def __init__(self, future: Future, *, live: UsageFetcher) -> None:
        self._future = future
        self._live = live
        self._fetch: UsageFetcher | None = None

    def __call__(self, subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        if self._fetch is None:
            try:
                self._fetch = self._future.result()
            except Exception:
                logger.exception("close: usage aggregate failed; querying per window instead")
                self._fetch = self._live
        return self._fetch(subscription_ids, start, end)


class _Pipeline:
    """Run the close's stages so they overlap: while this thread plans chunk k+1 (Python), one thread
    aggregates chunk k's usage (mostly PostgreSQL's work) and `workers` threads bill the batches whose
    usage is in (`_close_chunk`); the aggregate is the longest single step of a close (bench/close.py).

    With `workers` 0 every stage runs at once in the calling thread, in the same order. Batches take
    invoice numbers in the order they were added (`_Turns`), so numbers follow customer order either way.
    Each stage thread keeps one database connection for the run; they are closed at the end.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._turns = _Turns()
        self._batches: list[Future | _ChunkOutcome] = []
        self._connections: list = []
        self._connections_lock = threading.Lock()
        if workers:
            self._aggregator = ThreadPoolExecutor(1, "close-aggregate", initializer=self._thread_started)
            self._billers = ThreadPoolExecutor(workers, "close", initializer=self._thread_started)

    def _thread_started(self) -> None:
        # Opened lazily in this thread, closed from the caller's once the pools are done.
        wrapper = connections[DEFAULT_DB_ALIAS]
        wrapper.inc_thread_sharing()
        with self._connections_lock:
            self._connections.append(wrapper)

    def aggregate(self, windows: dict[Window, set[int]]) -> UsageFetcher:
        """Aggregate the windows' usage (after their cut-offs and the fence); return the fetcher batches use."""
        if not self._workers:
            return _prefetched(windows)
        return _Pending(self._aggregator.submit(lambda: _prefetched(windows, live=self._live)), live=self._live)

    def _live(self, subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        # On the aggregating thread's connection, in its own short transaction: a batch reading usage itself
        # would hold the rollup watermark's share lock until it commits, across its wait for its numbering
        # turn; a rollup advance queued on that row could then stall an earlier batch behind it (a cycle
        # PostgreSQL cannot see). Usage read here is as safe as the prefetched totals (cut-off and fence).
        return self._aggregator.submit(_usage_totals, subscription_ids, start, end).result()

    def bill(self, chunk: list[int], **kwargs) -> None:
        """Bill one batch of customers, after the batches added before it as far as numbers go."""
        index = len(self._batches)
        if not self._workers:
            self._batches.append(_close_chunk(chunk, **kwargs))
            return

        def run() -> _ChunkOutcome:
            try:
                return _close_chunk(chunk, before_numbering=lambda: self._turns.wait(index), **kwargs)
            finally:
                self._turns.done(index)

        self._batches.append(self._billers.submit(run))

    def outcomes(self) -> list[_ChunkOutcome]:
        return [batch.result() if isinstance(batch, Future) else batch for batch in self._batches]

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if not self._workers:
            return
        if error is not None:  # the caller failed (or a batch raised): start nothing more
            for batch in self._batches:
                if isinstance(batch, Future):
                    batch.cancel()
        self._billers.shutdown(wait=True, cancel_futures=error is not None)  # first: running batches may still read usage
        self._aggregator.shutdown(wait=True, cancel_futures=error is not None)
        for wrapper in self._connections:
            wrapper.close()
            wrapper.dec_thread_sharing()


@contextmanager
def _young_collections_spaced(threshold: int = 50_000):
    """Run a block with the cyclic GC's first generation collected every `threshold` allocations, not 700.

    A close allocates millions of short-lived objects (rows, lines, dicts) while holding ~10^5 long-lived
    ones (loaded subscriptions, plans, lines), and the collections this triggers cost 1.2-2.3 s of CPU in a
    10,000-customer close (bench/close.py, 4 paired runs). Nothing here makes cycles that need collecting early;
    the default threshold is restored after, whatever happens.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(threshold, previous[0]), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def periods_close(
    *, as_of: datetime | None = None, fetch: UsageFetcher = _usage_totals,
    customers_between: tuple[int, int] | None = None,
) -> CloseRun:
    """Bill every subscription period ended at `as_of` (default now), in batches of customers.

    Customers are planned in chunks (`close_prepass`); each chunk's usage cut-offs are committed and fenced,
    its usage aggregated set-based, then its customers billed in batches, one transaction each (`close_batch`);
    customers a batch could not lock or plan, and every customer of a batch that failed to write, are then
    closed one by one (`close_customer`). A failing customer is recorded on the run (admin) and the others go
    on; the next run retries it. The stages overlap on threads (`_Pipeline`: one aggregating, INVOICE_CLOSE_WORKERS
    billing, default 2) unless the caller holds a transaction open (the threads' connections could not see its
    rows): then one after the other. `customers_between`: only customers with ids in that closed interval (a
    range of a distributed close, `distributed.py`).
    """
    with _young_collections_spaced():
        return _periods_close(as_of=as_of, fetch=fetch, customers_between=customers_between)


def _periods_close(
    *, as_of: datetime | None, fetch: UsageFetcher, customers_between: tuple[int, int] | None
) -> CloseRun:
    from apps.usage.aggregation import rollup_state_ensure
    from apps.usage.services import usage_ingest_fence

    as_of = as_of or timezone.now()
    run = CloseRun.objects.create(as_of=as_of)
    # What time made due is applied first, so the prepass plans (and cuts usage off) from the subscriptions in
    # force; a change racing in later is applied again under each batch's locks.
    subscription_transitions_apply(now=as_of, announce=False)
    customer_ids = customers_to_close(as_of=as_of)
    if customers_between is not None:
        first, last = customers_between
        customer_ids = [customer_id for customer_id in customer_ids if first <= customer_id <= last]
    run.customers_count = len(customer_ids)
    size = max(1, int(getattr(settings, "INVOICE_CLOSE_BATCH_SIZE", CLOSE_BATCH_SIZE)))
    smallest = int(getattr(settings, "INVOICE_CLOSE_BATCH_MIN", CLOSE_BATCH_MIN))
    workers = max(1, int(getattr(settings, "INVOICE_CLOSE_WORKERS", CLOSE_WORKERS)))
    parallel = workers > 1 and not connection.in_atomic_block
    rollup_state_ensure()  # committed before the threads start: see its docstring
    with _Pipeline(workers if parallel else 0) as pipeline:
        for first, stop in close_chunks(len(customer_ids), largest=CLOSE_PLAN_CHUNK, smallest=size):
            chunk = customer_ids[first:stop]
            due, windows, cutoffs, loaded = close_prepass(chunk, as_of=as_of)
            chunk_fetch, fenced = fetch, None
            if fetch is _usage_totals:
                usage_cutoffs_advance(cutoffs)
                usage_ingest_fence()
                chunk_fetch, fenced = pipeline.aggregate(windows), cutoffs
            billable = [customer_id for customer_id in chunk if customer_id in due]
            for start in range(0, len(billable), size):
                pipeline.bill(
                    billable[start : start + size], as_of=as_of, fetch=chunk_fetch, loaded=loaded, smallest=smallest,
                    fenced=fenced,
                )
        results = pipeline.outcomes()

    outcomes: list[dict[str, Any]] = []  # CloseRunCustomer rows, one COPY (one per billed customer)
    for result in results:
        for customer_id, invoices, fees in result.billed:
            if invoices:
                run.invoices_count += invoices
                run.fees_count += fees
                outcomes.append(
                    {
                        "run_id": run.pk, "customer_id": customer_id, "outcome": CloseRunCustomer.Outcome.BILLED,
                        "invoices_count": invoices, "fees_count": fees,
                    }
                )
        for customer_id, error, trace in result.failed:
            run.failures_count += 1
            outcomes.append(
                {
                    "run_id": run.pk, "customer_id": customer_id, "outcome": CloseRunCustomer.Outcome.FAILED,
                    "error": error, "traceback": trace,
                }
            )
    _copy_insert(CloseRunCustomer, outcomes)
    run.status = CloseRun.Status.PARTIAL if run.failures_count else CloseRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()
    return run

"""Each worker thread's subscription lookups for usage ingest, kept between batches while nothing changed.

A 1,000-event batch names ~950 subscriptions. Looking them all up again cost ~1.8 ms of PostgreSQL
and ~1 ms of worker CPU per batch (README "Performance"), for rows that change a few times a month.
The cache is exact, not eventually consistent: every transaction that writes subscriptions leaves a
row in `subscriptions_subscriptionchange` (a trigger, migration subscriptions 0003), and each batch
asks, in its own fenced transaction, whether such a row committed after the snapshot the cache was
read in. If one did, the batch looks everything up again, so it sees exactly what a fresh lookup
would: a close's new `usage_billed_until` (the late flag) as much as a new or terminated subscription.
"""
from __future__ import annotations

import threading
import time
from typing import NamedTuple

from apps.subscriptions.services import SUBSCRIPTION_LOOKUP_TTL_SECONDS

# Bounds one thread's memory (~200 B an entry); past it the cache starts again from empty.
MAX_ENTRIES = 200_000

# The current snapshot, and whether a subscription change committed after the cached one. Only rows
# from transactions at or above its xmin can be invisible to it: the primary key range skips the rest.
SNAPSHOT_AND_CHANGES_SQL = """
SELECT pg_current_snapshot()::text,
       %s::bigint IS NOT NULL AND EXISTS (
           SELECT 1 FROM subscriptions_subscriptionchange
            WHERE xid >= %s::bigint AND NOT pg_visible_in_snapshot(xid::text::xid8, %s::pg_snapshot))
"""


class Sub(NamedTuple):  # ~1,000 per batch: a tuple builds 3x faster than a frozen dataclass
    id: int
    lago_id: str
    status: str
    # Epoch microseconds: comparing ints is ~20x cheaper than loading aware datetimes per row.
    started_us: int | None
    terminated_us: int | None
    billed_until_us: int | None


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


class SubscriptionLookups:
    """Subscriptions by external id, as of `snapshot` (PostgreSQL's text form, "xmin:xmax:xip,...")."""

    __slots__ = ("snapshot", "xmin", "expires_at", "single", "several", "known")

    def __init__(self, snapshot: str) -> None:
        self.still_current_at(snapshot)
        # External ids with one active subscription: the common case, no per-event choice.
        self.single: dict[str, Sub] = {}
        # The others with a subscription that takes usage (active or terminated), all of them.
        self.several: dict[str, list[Sub]] = {}
        # Every external id looked up, found or not (an unknown one stays unknown until a change).
        self.known: set[str] = set()

    def add(self, external_ids: set[str], rows: list[tuple]) -> None:
        """Take the lookup rows (SUBSCRIPTIONS_SQL in services) for `external_ids`, none of them known yet."""
        single, several = self.single, self.several
        for row in rows:
            external_id = row[0]
            sub = _new_tuple(Sub, row[1:])  # the C constructor: Sub(...) runs a Python-level __new__
            other = single.pop(external_id, None)
            if other is not None:
                several[external_id] = [other, sub]
            elif external_id in several:
                several[external_id].append(sub)
            elif sub.status == "active":
                single[external_id] = sub
            else:
                several[external_id] = [sub]
        self.known |= external_ids

    def still_current_at(self, snapshot: str) -> None:
        """The lookups are exact as of `snapshot`: check for changes after it next time, and live on from now."""
        self.snapshot = snapshot
        self.xmin = int(snapshot.partition(":")[0])
        self.expires_at = time.monotonic() + SUBSCRIPTION_LOOKUP_TTL_SECONDS


_local = threading.local()


def cached(service_id: int) -> SubscriptionLookups | None:
    """This thread's lookups for the service, unless they are older than the change log's pruning allows."""
    lookups = getattr(_local, "by_service", {}).get(service_id)
    if lookups is not None and lookups.expires_at < time.monotonic():
        forget(service_id)
        return None
    return lookups


def keep(service_id: int, lookups: SubscriptionLookups) -> None:
    if len(lookups.known) > MAX_ENTRIES:
        forget(service_id)
        return
    if not hasattr(_local, "by_service"):
        _local.by_service = {}
    _local.by_service[service_id] = lookups


def forget(service_id: int | None = None) -> None:
    """Drop this thread's lookups for one service, or for all."""
    by_service = getattr(_local, "by_service", {})
    if service_id is None:
        by_service.clear()
    else:
        by_service.pop(service_id, None)

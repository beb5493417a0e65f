"""The close's usage stage: cut-offs, the ingest fence, and the usage totals its charge lines are priced from.

A window is read only once its cut-off is committed and fenced (`usage_cutoffs_advance`, then
`usage_ingest_fence`): an event ingested meanwhile is then visible to the close or flagged late, never lost.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from django.db import connection

from .. import rating
from ..fees import Line, Window

UsageFetcher = Callable[[list[int], datetime, datetime], dict]


def _usage_totals(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
    from apps.usage.aggregation import usage_totals

    return usage_totals(subscription_ids=subscription_ids, from_datetime=start, to_datetime=end)


# (Window, subscription id, metric id) -> the events' values in time order; for metrics with filters also
# (Window, subscription id, metric id, combination) -> their (epoch, id, value) rows (`usage_per_event_values`).
PerEventValues = dict


def _usage_per_event_values(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
    from apps.usage.aggregation import usage_per_event_values

    return usage_per_event_values(subscription_ids=subscription_ids, from_datetime=start, to_datetime=end)


def _needs_values(line: Line) -> bool:
    charge = line.charge
    return (
        line.window is not None
        and charge is not None
        and rating.needs_per_event_amounts(charge_model=charge.charge_model, properties=line.properties)
    )


def per_event_values(lines: list[Line], *, fetch: UsageFetcher = _usage_per_event_values) -> PerEventValues:
    """Fetch the events' values for the charge lines whose pricing needs them (percentage with free events,
    per-transaction min/max, free total + fixed fee): one set-based read per distinct window, none if no line does."""
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if _needs_values(line):
            by_window[line.window].add(line.subscription.pk)
    values: PerEventValues = {}
    for window, subscription_ids in by_window.items():
        # (subscription, metric) -> values; for metrics with filters also (subscription, metric, combination).
        for key, row in fetch(sorted(subscription_ids), window.start, window.end).items():
            values[(window, *key)] = row
    return values


def _usage_event_amounts(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
    from apps.usage.aggregation import usage_event_amounts

    return usage_event_amounts(subscription_ids=subscription_ids, from_datetime=start, to_datetime=end)


def is_dynamic(line: Line) -> bool:
    return line.window is not None and line.charge is not None and line.charge.charge_model == "dynamic"


def event_amounts(lines: list[Line], *, fetch: UsageFetcher = _usage_event_amounts) -> dict:
    """The events' own prices summed (minor units) for the `dynamic` charge lines: one read per distinct window,
    none if no line is dynamic. (Window, subscription id, metric id[, combination]) -> Σ."""
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if is_dynamic(line):
            by_window[line.window].add(line.subscription.pk)
    amounts: dict = {}
    for window, subscription_ids in by_window.items():
        for key, total in fetch(sorted(subscription_ids), window.start, window.end).items():
            amounts[(window, *key)] = total
    return amounts


class WindowsNotFenced(Exception):
    """Planning met usage windows whose cut-off is not committed and fenced yet: reading them now could miss an
    event that commits after the read without being flagged late. `cutoffs`: subscription id -> window end."""

    def __init__(self, cutoffs: dict[int, datetime]) -> None:
        super().__init__(f"usage windows of subscriptions {sorted(cutoffs)} are not cut off yet")
        self.cutoffs = cutoffs


_NEVER = datetime.min.replace(tzinfo=ZoneInfo("UTC"))


def unfenced_cutoffs(lines: list[Line], fenced: dict[int, datetime]) -> dict[int, datetime]:
    """The cut-offs the usage windows of `lines` need beyond `fenced` (subscription id -> cut-off committed, then
    fenced, by this close): subscription id -> window end. Empty: every window is safe to read."""
    needed: dict[int, datetime] = {}
    for line in lines:
        if line.window is not None:
            pk = line.subscription.pk
            if line.window.end > fenced.get(pk, _NEVER):
                needed[pk] = max(needed.get(pk, line.window.end), line.window.end)
    return needed


def usage_cutoffs_advance(cutoffs: dict[int, datetime]) -> int:
    """Move `usage_billed_until` up to the end of the charges windows about to be billed (monotonic).

    Commit this, then `usage_ingest_fence()`, before reading usage: an event ingested meanwhile is
    then either visible to the close or flagged late (billed as an adjustment), never lost.
    """
    if not cutoffs:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE subscriptions_subscription s SET usage_billed_until = v.cutoff
              FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::timestamptz[]) AS cutoff) v
             WHERE s.id = v.id AND (s.usage_billed_until IS NULL OR s.usage_billed_until < v.cutoff)
            """,
            [list(cutoffs), list(cutoffs.values())],
        )
        return cursor.rowcount


def _late_usage_mark_billed(lines: list[Line], *, as_of: datetime) -> None:
    from apps.usage.services import late_usage_mark_billed

    ids = [event_id for line in lines for event_id in line.late_event_ids]
    if ids:
        late_usage_mark_billed(event_ids=ids, billed_at=as_of)


def _prefetched(windows: dict[Window, set[int]], *, live: UsageFetcher = _usage_totals) -> UsageFetcher:
    """Aggregate every due window for all its subscriptions at once (set-based, perf.md §3).

    Safe after the cut-off and fence: rows for a window that arrive later are flagged late and
    excluded from `usage_totals`, so the totals read here cannot change before the close writes them.
    Totals are indexed per subscription, so each lookup costs what it returns; a lookup outside them (a
    customer re-planned under its lock) goes to `live`.
    """
    cache: dict[Window, dict[int, dict]] = {}
    for window, subscription_ids in windows.items():
        ids = sorted(subscription_ids)
        per_subscription: dict[int, dict] = {pk: {} for pk in ids}
        for index in range(0, len(ids), 20_000):
            for key, total in _usage_totals(ids[index : index + 20_000], window.start, window.end).items():
                per_subscription[key[0]][key] = total
        cache[window] = per_subscription

    def fetch(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        cached = cache.get(Window(start, end))
        if cached is None or any(pk not in cached for pk in subscription_ids):
            return live(subscription_ids, start, end)
        out: dict = {}
        for pk in subscription_ids:
            out.update(cached[pk])
        return out

    return fetch

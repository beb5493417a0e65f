"""Charge filters: which of a charge's filters prices the events carrying a combination of filter values.

Pure module (no ORM, no I/O). Lago (lago-api `charge_filters/event_matching_service.rb`): an event is priced by the
filter matching the most of its properties, every key of the filter holding one of the filter's values for that
key (`__ALL_FILTER_VALUES__`: any value the metric lists); an event matching no filter is priced by the charge's own
properties. Ties go to the filter created first (Ruby's `max_by` keeps the first maximum), so each event is billed
once. Deviation from Lago: its period aggregation (`matching_and_ignored_service.rb`) counts an event in both of two
filters on different keys of the same size (region=us and provider=aws for an event with both); the hub bills it
once, in the first, as Lago's own event matching (pay-in-advance fees) does.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

ALL_VALUES = "__ALL_FILTER_VALUES__"

Combination = tuple[tuple[str, str], ...]  # sorted (key, value) pairs an event carries (apps.usage.aggregation)
FilterSpec = Mapping[str, frozenset[str]]  # a filter's values per key, ALL_VALUES expanded


def filter_specs(filters: Iterable[Mapping[str, list[str]]], metric_filters: Iterable[Mapping]) -> list[FilterSpec]:
    """Each filter's `values` with `ALL_VALUES` replaced by the values the metric lists for that key."""
    offered = {item["key"]: list(item["values"]) for item in metric_filters}
    return [
        {key: frozenset(offered.get(key, ()) if list(chosen) == [ALL_VALUES] else chosen) for key, chosen in values.items()}
        for values in filters
    ]


def matching_filter(combination: Combination, specs: Sequence[FilterSpec]) -> int | None:
    """Index in `specs` of the filter pricing events that carry `combination`; None: the charge's own price."""
    carried = dict(combination)
    best, best_size = None, 0
    for index, spec in enumerate(specs):
        if len(spec) > best_size and all(carried.get(key) in chosen for key, chosen in spec.items()):
            best, best_size = index, len(spec)
    return best

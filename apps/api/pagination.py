"""Lago's page/per_page pagination with its `meta` block."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from django.db.models import QuerySet

from apps.core.exceptions import ValidationFailed

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100


def _positive_int(request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed("bad page", details={name: ["value_is_invalid"]}) from None
    if value < 1:
        raise ValidationFailed("bad page", details={name: ["value_is_out_of_range"]})
    return value


def paginate(request, queryset: QuerySet, key: str, render: Callable[[Iterable], list]) -> dict:
    """Return {key: [...], "meta": {...}} for one page of `queryset`."""
    page = _positive_int(request, "page", 1)
    per_page = min(_positive_int(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    total = queryset.count()
    if total == 0:
        # Lago's own quirk for an empty result.
        meta = {"current_page": 0, "next_page": None, "prev_page": None, "total_pages": 0, "total_count": 0}
        return {key: [], "meta": meta}
    total_pages = math.ceil(total / per_page)
    items = list(queryset[(page - 1) * per_page : page * per_page])
    meta = {
        "current_page": page,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total,
    }
    return {key: render(items), "meta": meta}

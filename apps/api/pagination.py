"""Lago's page/per_page pagination with its `meta` block."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from django.db.models import QuerySet

from .params import int_param

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100
# PostgreSQL's OFFSET is a bigint: (page - 1) * per_page must fit, whatever per_page is.
MAX_PAGE = 2**31 - 1


def paginate_list(request, items: list, key: str, render: Callable[[Iterable], list]) -> dict:
    """`paginate` for a list already read (a few rows, e.g. a customer's saved cards)."""
    return paginate(request, _Counted(items), key, render)


class _Counted(list):
    def count(self) -> int:  # QuerySet's name for len
        return len(self)


def paginate(request, queryset: QuerySet, key: str, render: Callable[[Iterable], list]) -> dict:
    """Return {key: [...], "meta": {...}} for one page of `queryset`."""
    page = int_param(request, "page", default=1, minimum=1, maximum=MAX_PAGE)
    per_page = min(int_param(request, "per_page", default=DEFAULT_PER_PAGE, minimum=1), MAX_PER_PAGE)
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

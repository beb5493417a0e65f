"""Query parameters parsed strictly, in one place, so every filter answers Lago's 422 the same way.

Python's int() takes what a filter must not: non-ASCII digits ("١٢"), underscores ("1_000"), spaces and
values past PostgreSQL's bigint, which then fail in the query as a 500.
"""
from __future__ import annotations

import re

from apps.core.exceptions import ValidationFailed
from apps.core.money import SUPPORTED_CURRENCIES

BIGINT_MAX = 2**63 - 1
_ASCII_INT = re.compile(r"-?[0-9]{1,30}", re.ASCII)  # longer: not a number anyone meant


def int_param(request, name: str, *, default: int | None = None, minimum: int = -BIGINT_MAX,
              maximum: int = BIGINT_MAX) -> int | None:
    """Return the query parameter as an int in [minimum, maximum], `default` when absent or empty."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not _ASCII_INT.fullmatch(raw):
        raise ValidationFailed(f"bad {name}", details={name: ["value_is_invalid"]})
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValidationFailed(f"bad {name}", details={name: ["value_is_out_of_range"]})
    return value


def currency_param(request, name: str) -> list[str]:
    """Return the currencies of `name` (or `name[]`), each one the hub bills in."""
    values = request.query_params.getlist(f"{name}[]") or request.query_params.getlist(name)
    if any(value not in SUPPORTED_CURRENCIES for value in values if value):
        raise ValidationFailed(f"bad {name}", details={name: ["value_is_invalid"]})
    return [value for value in values if value]


def datetime_param(request, name: str):
    """Return the query parameter as an aware datetime (ISO 8601; no zone reads as UTC), None when absent."""
    from datetime import UTC, datetime

    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ValidationFailed(f"bad {name}", details={name: ["invalid_date"]}) from None
    if not 1970 <= value.year <= 9998:  # PostgreSQL and Python both take it, and no event is dated outside
        raise ValidationFailed(f"bad {name}", details={name: ["invalid_date"]})
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def bool_param(request, name: str) -> bool:
    """Rails' reading of a boolean query parameter: true/1 and false/0 (any case); anything else is refused."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return False
    lowered = raw.lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    raise ValidationFailed(f"bad {name}", details={name: ["value_is_invalid"]})

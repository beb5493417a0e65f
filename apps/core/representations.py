"""Lago's JSON spelling of timestamps and decimals, shared by every app's representations (the API's bodies and
the webhooks' payloads)."""
from __future__ import annotations

from datetime import UTC, datetime


def ts(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, as Lago prints timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal_str(value) -> str:
    """A Decimal as a plain JSON string without exponent or trailing zeros ("13", "9.975")."""
    return format(value.normalize(), "f")

"""Lean request decoding for the ingestion hot path (msgspec; no ORM, no DRF).

msgspec decodes and type-checks a 1,000-record body in about 1 ms where a DRF serializer
takes about 20 ms (research/perf.md §2; bench/ingest.py --validate re-measures it). Rules that
need the database (metric codes, subscriptions) live in `services`.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, DecimalException, InvalidOperation
from typing import Annotated, Any

import msgspec
from django.conf import settings

from apps.core.exceptions import ValidationFailed

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_BATCH = 1_000
# numeric(30, 12): at most 18 integer digits and 12 decimals.
MAX_ABS_VALUE = Decimal(10) ** 18
MIN_EXPONENT = -12

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


# gc=False: decoded JSON never forms a reference cycle, so the cyclic collector need not track
# (and walk) the 1,000 items of every batch (bench/gunicorn.conf.py has the GC figures).
class EventIn(msgspec.Struct, gc=False):
    transaction_id: Key
    external_subscription_id: Key
    code: Key
    timestamp: Any = None  # Unix seconds: int, or decimal string/number; null = reception time
    properties: dict[str, Any] | None = None
    precise_total_amount_cents: str | None = None


class CounterIn(msgspec.Struct, gc=False):
    idempotency_key: Key
    external_subscription_id: Key
    code: Key
    quantity: Any  # decimal string or number
    timestamp: Any = None
    period_from: Any = None  # a counter for a period is stored at its start
    period_to: Any = None
    properties: dict[str, Any] | None = None


class _OneEvent(msgspec.Struct):
    event: EventIn


class _Events(msgspec.Struct):
    events: list[EventIn]


class _Counters(msgspec.Struct):
    usage: list[CounterIn]


class _LooseList(msgspec.Struct):
    events: list[Any] | None = None
    usage: list[Any] | None = None


# JSON floats become Decimal, never float (money and quantity paths take no float).
_decoders = {
    kind: msgspec.json.Decoder(kind, float_hook=Decimal) for kind in (_OneEvent, _Events, _Counters, _LooseList)
}
_item_decoders = {kind: msgspec.json.Decoder(kind, float_hook=Decimal) for kind in (EventIn, CounterIn)}
encoder = msgspec.json.Encoder(decimal_format="number")

_FIELD = re.compile(r"`\$(?:\.(?:event|events|usage)(?:\[\d+\])?)?\.?([A-Za-z_]*)`")
_MISSING = re.compile(r"missing required field `([A-Za-z_]+)`")


def _error_for(exc: msgspec.ValidationError) -> dict[str, list[str]]:
    """Map msgspec's message to Lago's {field: [code]}."""
    message = str(exc)
    missing = _MISSING.search(message)
    if missing:
        return {missing.group(1): ["value_is_mandatory"]}
    match = _FIELD.search(message)
    field = (match.group(1) if match else "") or "base"
    if "length >= 1" in message or "got `null`" in message:
        return {field: ["value_is_mandatory"]}
    if "length <=" in message:
        return {field: ["value_is_out_of_range"]}
    return {field: ["value_is_invalid"]}


def _decode_list(body: bytes, root: str, struct: type, item_struct: type) -> list:
    try:
        items = getattr(_decoders[struct].decode(body), root)
    except msgspec.ValidationError:
        items = None  # fall through: find every bad item, not just the first
    except msgspec.DecodeError:
        raise ValidationFailed("malformed JSON", details={"base": ["invalid_json"]}) from None
    if items is None:
        try:
            loose = getattr(_decoders[_LooseList].decode(body), root)
        except msgspec.ValidationError:
            loose = None
        if loose is None:
            raise ValidationFailed("missing list", details={root: ["value_is_mandatory"]})
        errors: dict[str, dict] = {}
        items = []
        for index, raw in enumerate(loose):
            try:
                items.append(msgspec.convert(raw, item_struct))
            except msgspec.ValidationError as exc:
                errors[str(index)] = _error_for(exc)
        if errors:
            raise ValidationFailed("invalid items", details=errors)
    if not items:
        raise ValidationFailed("empty batch", details={root: ["no_events"]})
    if len(items) > MAX_BATCH:
        raise ValidationFailed("batch too large", details={root: ["too_many_events"]})
    return items


def decode_event(body: bytes) -> EventIn:
    """Decode `{"event": {...}}`; raise ValidationFailed with Lago's per-field codes."""
    try:
        return _decoders[_OneEvent].decode(body).event
    except msgspec.ValidationError as exc:
        raise ValidationFailed("invalid event", details=_error_for(exc)) from None
    except msgspec.DecodeError:
        raise ValidationFailed("malformed JSON", details={"base": ["invalid_json"]}) from None


def decode_events(body: bytes) -> list[EventIn]:
    """Decode `{"events": [...]}` (1..1,000); errors keyed by item index."""
    return _decode_list(body, "events", _Events, EventIn)


def decode_counters(body: bytes) -> list[CounterIn]:
    """Decode `{"usage": [...]}` (1..1,000); errors keyed by item index."""
    return _decode_list(body, "usage", _Counters, CounterIn)


def to_decimal(raw: object) -> Decimal | None:
    """Return a finite Decimal from an int, Decimal or numeric string, else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, str):
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return value if value.is_finite() else None


def quantity_error(value: Decimal) -> str | None:
    """Return a Lago code when `value` does not fit numeric(30, 12), else None.

    `copy_abs` and comparisons are exact: `abs()` rounds to the context's 28 digits (refusing
    999999999999999999.999999999999, which fits) and raises Overflow past its exponent limit (1E1000000).
    """
    if value.copy_abs() >= MAX_ABS_VALUE or value.as_tuple().exponent < MIN_EXPONENT:
        return "value_is_out_of_range"
    return None


def epoch_us(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


MAX_US = epoch_us(datetime(9999, 1, 1, tzinfo=timezone.utc))


def future_limit_us(now_us: int) -> int:
    """The latest accepted timestamp: USAGE_MAX_FUTURE_SECONDS (1 day) after `now_us`."""
    return now_us + settings.USAGE_MAX_FUTURE_SECONDS * 1_000_000


def past_limit_us(now_us: int) -> int:
    """The earliest accepted timestamp: USAGE_MAX_PAST_DAYS (10 years) before `now_us`, never before 1970.

    Older usage cannot be billed by any open period and is almost always a unit mistake (milliseconds
    read as seconds go the other way; a year typed as 1926 goes this way).
    """
    return max(0, now_us - settings.USAGE_MAX_PAST_DAYS * 86_400_000_000)


def parse_timestamp_us(raw: object, *, now_us: int, limit_us: int | None = None,
                       floor_us: int | None = None) -> int | str:
    """Return Lago's Unix-seconds timestamp as epoch microseconds, or an error code.

    null means reception time; ISO strings are `invalid_format` as in Lago; later than
    `limit_us` (default `future_limit_us(now_us)`) or earlier than `floor_us` (default
    `past_limit_us(now_us)`) is `value_is_out_of_range`. Batches pass both once: a `settings`
    attribute read per item cost more than the parsing.
    """
    if raw is None:
        return now_us
    if limit_us is None:
        limit_us = future_limit_us(now_us)
    if floor_us is None:
        floor_us = past_limit_us(now_us)
    if raw.__class__ is int:  # the common case, and never a bool
        us = raw * 1_000_000
    else:
        seconds = to_decimal(raw)
        if seconds is None:
            return "invalid_format"
        try:
            us = int(seconds.scaleb(6).to_integral_value())
        except DecimalException:  # Overflow (1E1000000) as well as InvalidOperation
            return "value_is_out_of_range"
    if us > limit_us or us < floor_us or not -MAX_US < us < MAX_US:
        return "value_is_out_of_range"
    return us

"""Usage values: the ingest fast paths read every number exactly as the Decimal path does."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import example, given
from hypothesis import strategies as st

from apps.usage import validation
from apps.usage.services import _number_text

NUMERIC_TEXT = st.text(alphabet="0123456789.-+ ", max_size=40)
BOUNDARY_INTS = st.sampled_from([10**18 - 1, 10**18, -(10**18) + 1, -(10**18), 0, True, False])


def _decimal_reading(raw: object) -> tuple[Decimal | None, str | None]:
    """The reference: parse to Decimal, then range-check (the path every value took before)."""
    value = validation.to_decimal(raw)
    if value is None:
        return None, "value_is_invalid"
    problem = validation.quantity_error(value)
    return (None, problem) if problem else (value, None)


@given(st.one_of(st.integers(min_value=-(10**20), max_value=10**20), BOUNDARY_INTS, NUMERIC_TEXT))
@example("007.50")
@example("-0.000000000001")
@example("-0.0000000000001")
@example("999999999999999999.999999999999")
@example("1000000000000000000")
@example(" 2.5 ")
@example("1e2")
@example("1E-13")
@example("1E1000000")
@example("-1E-1000000")
@example("9999999999999999999999999999999999")
@example("٣")  # a non-ASCII digit: Decimal reads it, PostgreSQL would not, so it must not pass as written
def test_number_text_reads_every_value_as_the_decimal_path_does(raw):
    text, problem = _number_text(raw, "properties")
    reference, reference_problem = _decimal_reading(raw)
    if reference is None:
        assert (text, problem) == (None, ("properties", reference_problem))
    else:
        assert problem is None
        assert text.isascii()
        stored = Decimal(text)
        # Same number and same scale: numeric(30, 12) keeps the digits written after the point.
        assert (stored, stored.as_tuple().exponent) == (reference, reference.as_tuple().exponent)


def test_values_that_fit_numeric_30_12_are_accepted_exactly_and_the_rest_refused():
    assert validation.quantity_error(Decimal("999999999999999999.999999999999")) is None  # 30 digits, fits
    assert validation.quantity_error(Decimal("-999999999999999999.999999999999")) is None
    for too_big in ("1E18", "1E1000000", "-1E1000000", "1000000000000000000.5"):
        assert validation.quantity_error(Decimal(too_big)) == "value_is_out_of_range"
    for too_fine in ("1E-13", "1E-1000000"):
        assert validation.quantity_error(Decimal(too_fine)) == "value_is_out_of_range"
    now_us = validation.epoch_us(validation.from_epoch_us(1_767_225_600_000_000))
    for huge in ("1E1000000", "-1E999999"):
        assert validation.parse_timestamp_us(huge, now_us=now_us) == "value_is_out_of_range"

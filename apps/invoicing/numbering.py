"""Gapless invoice numbers per series, taken under a row lock at finalization only."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction

from .models import NumberSequence


def invoice_series_for(*, year: int) -> str:
    """Return the numbering series of invoices finalized in `year` (e.g. "NEXA-2026")."""
    return f"{settings.INVOICE_NUMBER_PREFIX}-{year}"


def invoice_number_next(*, series: str) -> tuple[int, str]:
    """Return (sequential_id, number) for the next invoice of `series`.

    Call inside the transaction that finalizes the invoice: the sequence row stays locked
    until it commits, so a rollback gives the value back and numbers stay gapless.
    """
    return invoice_numbers_take(series=series, count=1)[0]


def invoice_numbers_take(*, series: str, count: int) -> list[tuple[int, str]]:
    """Return `count` consecutive (sequential_id, number) pairs of `series` under one row lock.

    Same contract as `invoice_number_next`: call inside the transaction that finalizes exactly
    `count` invoices with these numbers, so a rollback returns them all and numbers stay gapless.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers must be taken inside the finalizing transaction")
    if count < 1:
        return []
    # ON CONFLICT DO NOTHING: two first finalizations of a series both succeed, then queue on the lock.
    NumberSequence.objects.bulk_create([NumberSequence(series=series)], ignore_conflicts=True)
    sequence = NumberSequence.objects.select_for_update().get(series=series)
    first = sequence.last_value + 1
    sequence.last_value += count
    sequence.save(update_fields=["last_value"])
    return [(value, f"{series}-{value:06d}") for value in range(first, first + count)]

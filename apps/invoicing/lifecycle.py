"""Who is told, inside the transaction that did it, that invoices were finalized or voided or a credit note issued.

Payments collect, stop collecting and refund what invoices say, so they depend on invoicing and not the other way
round: apps.payments registers its listener here (`PaymentsConfig.ready`), and invoicing's services announce each
change inside its transaction, so what the listener writes (canceled attempts, tasks sent on commit) commits or
rolls back with it. The same shape as apps/subscriptions/lifecycle.py, which tells invoicing after commit.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import CreditNote, Invoice


@dataclass(frozen=True)
class InvoiceListener:
    finalized: Callable[..., None]  # (*, invoice): an invoice that counts was finalized (not a dual run's shadow)
    voided: Callable[..., None]  # (*, invoice): the invoice is voided and locked
    credit_note_created: Callable[..., None]  # (*, credit_note)


_listeners: list[InvoiceListener] = []


def invoices_listen(listener: InvoiceListener) -> None:
    """Register a listener (idempotent). Each call below runs every listener in the caller's transaction."""
    if listener not in _listeners:
        _listeners.append(listener)


def invoice_finalized_announce(*, invoice: Invoice) -> None:
    for listener in _listeners:
        listener.finalized(invoice=invoice)


def invoice_voided_announce(*, invoice: Invoice) -> None:
    for listener in _listeners:
        listener.voided(invoice=invoice)


def credit_note_created_announce(*, credit_note: CreditNote) -> None:
    for listener in _listeners:
        listener.credit_note_created(credit_note=credit_note)

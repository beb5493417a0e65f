"""Customer credit consumed by finalized invoices, and given back when such an invoice is voided.

Credit kept for the customer (a credit note's `credit_amount_cents`) is consumed by the customer's next
finalized invoices in the same currency, oldest credit first, after tax, as Lago does
(research/lago-api.md §3: `total_amount_cents` = sub_total_including_taxes − credit notes). Each use is a
`CreditApplication` row, so a source's balance always equals its credit less its rows.

Concurrency: sources are locked `FOR UPDATE` in primary-key order before they are read for consumption, in the
finalizing transaction; two invoices of one customer finalizing at once therefore take turns, and the second
sees what the first consumed (PostgreSQL re-reads a row version once its lock is granted).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q, Sum
from django.utils import timezone

from .models import CreditApplication, CreditNote, Invoice


@dataclass
class _Source:
    """One credit note with balance left, as finalization consumes it."""

    note: CreditNote
    balance: int  # minor units left

    @property
    def order(self) -> tuple:
        return (self.note.created_at, self.note.pk)


def _available(keys: set[tuple[int, str]]) -> dict[tuple[int, str], list[_Source]]:
    """Lock and return the credit available per (customer id, currency), oldest first."""
    customer_ids = sorted({customer_id for customer_id, _ in keys})
    pools: dict[tuple[int, str], list[_Source]] = defaultdict(list)
    notes = (
        CreditNote.objects.select_for_update()
        .filter(customer_id__in=customer_ids, credit_status=CreditNote.CreditStatus.AVAILABLE,
                balance_amount_cents__gt=0)
        .order_by("pk")  # one lock order for every finalizer
    )
    for note in notes:
        key = (note.customer_id, note.currency)
        if key in keys:
            pools[key].append(_Source(note=note, balance=note.balance_amount_cents))
    for pool in pools.values():
        pool.sort(key=lambda source: source.order)
    return pools


def credits_apply(invoices: list[Invoice]) -> list[CreditApplication]:
    """Consume the customers' available credit on finalizing invoices, in list order; return the unsaved rows.

    Sets each invoice's `credit_notes_amount_cents`, `total_amount_cents` and, when credit covers it all,
    `payment_status` (succeeded: nothing to collect) in memory, and writes the sources' new balances. Call in
    the finalizing transaction, before the invoices' rows are written or updated; save the returned rows after.
    Invoices with nothing due are left alone.
    """
    due = [invoice for invoice in invoices if invoice.total_amount_cents - invoice.total_paid_amount_cents > 0]
    if not due:
        return []
    pools = _available({(invoice.customer_id, invoice.currency) for invoice in due})
    if not pools:
        return []
    rows: list[CreditApplication] = []
    touched: dict[int, _Source] = {}
    for invoice in due:
        pool = pools.get((invoice.customer_id, invoice.currency), [])
        for source in pool:
            owed = invoice.total_amount_cents - invoice.total_paid_amount_cents
            if owed <= 0:
                break
            take = min(source.balance, owed)
            if take <= 0:
                continue
            source.balance -= take
            touched[source.note.pk] = source
            invoice.credit_notes_amount_cents += take
            invoice.total_amount_cents -= take
            rows.append(CreditApplication(invoice=invoice, credit_note=source.note, amount_cents=take,
                                          currency=invoice.currency))
        if invoice.credit_notes_amount_cents and invoice.total_amount_cents - invoice.total_paid_amount_cents <= 0:
            invoice.payment_status = Invoice.PaymentStatus.SUCCEEDED  # credit paid it: nothing to collect
    notes, now = [], timezone.now()
    for source in touched.values():
        source.note.balance_amount_cents, source.note.updated_at = source.balance, now
        if source.balance == 0:
            source.note.credit_status = CreditNote.CreditStatus.CONSUMED
        notes.append(source.note)
    CreditNote.objects.bulk_update(notes, ["balance_amount_cents", "credit_status", "updated_at"])
    return rows


def credits_return(invoice: Invoice) -> list[CreditApplication]:
    """Give the credit a voided invoice consumed back to its sources; return the `returned` rows written.

    Call inside the voiding transaction, with the invoice locked. Idempotent: what was already returned is not
    returned again. A source voided since keeps its status (its balance is not available again).
    """
    net = dict(
        CreditApplication.objects.filter(invoice=invoice, credit_note__isnull=False)
        .values_list("credit_note_id")
        .annotate(total=Sum("amount_cents"))
        .filter(total__gt=0)
    )
    if not net:
        return []
    notes = list(CreditNote.objects.select_for_update().filter(pk__in=list(net)).order_by("pk"))
    rows, now = [], timezone.now()
    for note in notes:
        note.balance_amount_cents += net[note.pk]
        note.updated_at = now
        if note.credit_status == CreditNote.CreditStatus.CONSUMED:
            note.credit_status = CreditNote.CreditStatus.AVAILABLE
        rows.append(CreditApplication(invoice=invoice, credit_note=note, kind=CreditApplication.Kind.RETURNED,
                                      amount_cents=-net[note.pk], currency=invoice.currency))
    CreditNote.objects.bulk_update(notes, ["balance_amount_cents", "credit_status", "updated_at"])
    return CreditApplication.objects.bulk_create(rows)


def credit_available_cents(*, customer_id: int, currency: str) -> int:
    """Return the customer's credit not yet consumed in `currency` (minor units)."""
    return (
        CreditNote.objects.filter(Q(customer_id=customer_id, currency=currency,
                                    credit_status=CreditNote.CreditStatus.AVAILABLE))
        .aggregate(total=Sum("balance_amount_cents"))["total"]
        or 0
    )

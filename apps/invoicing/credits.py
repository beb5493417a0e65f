"""Customer credit: consumed by finalized invoices, given back when such an invoice is voided.

One notion of "credit the customer has": a credit note's `credit_amount_cents` kept for the customer, and money
Stripe collected that no invoice took (`CustomerCredit`: paid on an invoice already paid or voided, or beyond what
was due). Both are consumed by the customer's next finalized invoices in the same currency, oldest first, after
tax, as Lago consumes credit notes and prepaid credit (research/lago-api.md §3: `total_amount_cents` =
sub_total_including_taxes − credit notes − prepaid credit). Each use is a `CreditApplication` row, so a source's
balance always equals its credit less its rows.

Concurrency: sources are locked `FOR UPDATE` in one fixed order (credit notes by id, then customer credits by id)
before they are read for consumption, in the finalizing transaction; two invoices of one customer finalizing at
once therefore take turns, and the second sees what the first consumed (PostgreSQL re-reads a row version once its
lock is granted).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q, Sum
from django.utils import timezone

from .models import CreditApplication, CreditNote, CustomerCredit, Invoice

log = logging.getLogger(__name__)


@dataclass
class _Source:
    """One credit note or customer credit with balance left, as finalization consumes it."""

    row: CreditNote | CustomerCredit
    balance: int  # minor units left

    @property
    def is_note(self) -> bool:
        return isinstance(self.row, CreditNote)

    @property
    def order(self) -> tuple:
        return (self.row.created_at, 0 if self.is_note else 1, self.row.pk)


def _available(keys: set[tuple[int, str]]) -> dict[tuple[int, str], list[_Source]]:
    """Lock and return the credit available per (customer id, currency), oldest first."""
    customer_ids = sorted({customer_id for customer_id, _ in keys})
    pools: dict[tuple[int, str], list[_Source]] = defaultdict(list)
    notes = (
        CreditNote.objects.select_for_update()
        .filter(customer_id__in=customer_ids, credit_status=CreditNote.CreditStatus.AVAILABLE,
                balance_amount_cents__gt=0)
        .order_by("pk")  # one lock order for every finalizer: notes first, then credits, each by id
    )
    credits = (
        CustomerCredit.objects.select_for_update()
        .filter(customer_id__in=customer_ids, status=CustomerCredit.Status.AVAILABLE, balance_amount_cents__gt=0)
        .order_by("pk")
    )
    for row in [*notes, *credits]:
        key = (row.customer_id, row.currency)
        if key in keys:
            pools[key].append(_Source(row=row, balance=row.balance_amount_cents))
    for pool in pools.values():
        pool.sort(key=lambda source: source.order)
    return pools


def _save_sources(sources: list[_Source]) -> None:
    now = timezone.now()
    notes, credits = [], []
    for source in sources:
        row = source.row
        row.balance_amount_cents, row.updated_at = source.balance, now
        if source.is_note:
            if source.balance == 0:
                row.credit_status = CreditNote.CreditStatus.CONSUMED
            elif row.credit_status == CreditNote.CreditStatus.CONSUMED:
                row.credit_status = CreditNote.CreditStatus.AVAILABLE
            notes.append(row)
        else:
            if source.balance == 0:
                row.status = CustomerCredit.Status.CONSUMED
            elif row.status == CustomerCredit.Status.CONSUMED:
                row.status = CustomerCredit.Status.AVAILABLE
            credits.append(row)
    if notes:
        CreditNote.objects.bulk_update(notes, ["balance_amount_cents", "credit_status", "updated_at"])
    if credits:
        CustomerCredit.objects.bulk_update(credits, ["balance_amount_cents", "status", "updated_at"])


def credits_apply(invoices: list[Invoice]) -> list[CreditApplication]:
    """Consume the customers' available credit on finalizing invoices, in list order; return the unsaved rows.

    Sets each invoice's `credit_notes_amount_cents`, `prepaid_credit_amount_cents`, `total_amount_cents` and,
    when credit covers it all, `payment_status` (succeeded: nothing to collect) in memory, and writes the sources'
    new balances. Call in the finalizing transaction, before the invoices' rows are written or updated; save the
    returned rows after. Invoices with nothing due are left alone.
    """
    # A wallet top-up (credit invoice) is bought with money, never with credit (Lago).
    due = [invoice for invoice in invoices if invoice.total_amount_cents - invoice.total_paid_amount_cents > 0
           and invoice.invoice_type != Invoice.InvoiceType.CREDIT]
    if not due:
        return []
    pools = _available({(invoice.customer_id, invoice.currency) for invoice in due})
    if not pools:
        return []
    rows: list[CreditApplication] = []
    touched: dict[tuple[bool, int], _Source] = {}
    for invoice in due:
        for source in pools.get((invoice.customer_id, invoice.currency), []):
            owed = invoice.total_amount_cents - invoice.total_paid_amount_cents
            if owed <= 0:
                break
            take = min(source.balance, owed)
            if take <= 0:
                continue
            source.balance -= take
            touched[(source.is_note, source.row.pk)] = source
            if source.is_note:
                invoice.credit_notes_amount_cents += take
            else:
                invoice.prepaid_credit_amount_cents += take
            invoice.total_amount_cents -= take
            rows.append(CreditApplication(
                invoice=invoice, credit_note=source.row if source.is_note else None,
                customer_credit=None if source.is_note else source.row, amount_cents=take, currency=invoice.currency))
        credited = invoice.credit_notes_amount_cents + invoice.prepaid_credit_amount_cents
        if credited and invoice.total_amount_cents - invoice.total_paid_amount_cents <= 0:
            invoice.payment_status = Invoice.PaymentStatus.SUCCEEDED  # credit paid it: nothing to collect
    _save_sources(list(touched.values()))
    return rows


def credits_return(invoice: Invoice) -> list[CreditApplication]:
    """Give the credit a voided invoice consumed back to its sources; return the `returned` rows written.

    Call inside the voiding transaction, with the invoice locked. Idempotent: what was already returned is not
    returned again. A credit note voided since keeps its status and a zero balance: what comes back to it is lost
    as its voided balance was (`voided_amount_cents`, as Lago's RecreditService refuses a voided note), and the
    caller posts it to the ledger like the void.
    """
    net: dict[tuple[int | None, int | None], int] = {
        (row["credit_note_id"], row["customer_credit_id"]): row["total"]
        for row in CreditApplication.objects.filter(invoice=invoice)
        .values("credit_note_id", "customer_credit_id").annotate(total=Sum("amount_cents")).filter(total__gt=0)
    }
    if not net:
        return []
    notes = CreditNote.objects.select_for_update().filter(
        pk__in=[note_id for note_id, _ in net if note_id is not None]).order_by("pk")
    credits = CustomerCredit.objects.select_for_update().filter(
        pk__in=[credit_id for _, credit_id in net if credit_id is not None]).order_by("pk")
    sources, rows = [], []
    for row in [*notes, *credits]:  # the finalizers' lock order
        is_note = isinstance(row, CreditNote)
        amount = net[(row.pk, None) if is_note else (None, row.pk)]
        if is_note and row.credit_status == CreditNote.CreditStatus.VOIDED:
            row.voided_amount_cents += amount
            row.save(update_fields=["voided_amount_cents", "updated_at"])
        else:
            sources.append(_Source(row=row, balance=row.balance_amount_cents + amount))
        rows.append(CreditApplication(invoice=invoice, credit_note=row if is_note else None,
                                      customer_credit=None if is_note else row, kind=CreditApplication.Kind.RETURNED,
                                      amount_cents=-amount, currency=invoice.currency))
    _save_sources(sources)
    return CreditApplication.objects.bulk_create(rows)


def customer_credit_record(*, payment, invoice: Invoice, amount_cents: int, reason: str,
                           refund: bool = False) -> CustomerCredit:
    """Keep money Stripe collected that `invoice` did not take as the customer's credit, and flag it for staff.

    `payment` is the apps.payments Payment it came with (one credit per payment). With `refund` the credit is
    marked `refunding` (not consumable) for the caller to pay it back. Call inside the transaction that recorded
    the payment, with the invoice locked. Idempotent per payment.
    """
    credit, created = CustomerCredit.objects.get_or_create(
        payment=payment,
        defaults={
            "customer_id": invoice.customer_id, "invoice": invoice, "currency": payment.currency, "reason": reason,
            "amount_cents": amount_cents, "balance_amount_cents": amount_cents,
            "status": CustomerCredit.Status.REFUNDING if refund else CustomerCredit.Status.AVAILABLE,
        },
    )
    if created:
        # The row is the staff alert (admin: customer credits to review); the log line reaches on-call too.
        log.warning("payment %s: %s %s not taken by invoice %s (%s) kept as customer credit %s%s",
                    payment.stripe_payment_intent_id, amount_cents, payment.currency, invoice.number or invoice.pk,
                    reason, credit.pk, ", to refund" if refund else "")
    return credit


def credit_available_cents(*, customer_id: int, currency: str) -> int:
    """Return the customer's credit not yet consumed in `currency` (minor units), whatever its source."""
    notes = CreditNote.objects.filter(Q(customer_id=customer_id, currency=currency,
                                        credit_status=CreditNote.CreditStatus.AVAILABLE)) \
        .aggregate(total=Sum("balance_amount_cents"))["total"] or 0
    credits = CustomerCredit.objects.filter(customer_id=customer_id, currency=currency,
                                            status=CustomerCredit.Status.AVAILABLE) \
        .aggregate(total=Sum("balance_amount_cents"))["total"] or 0
    return notes + credits

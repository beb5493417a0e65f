"""Prepaid credits at finalization and void: wallets consumed by invoices, given back when one is voided.

Consumption (`wallets_apply`) happens at finalization, in Lago's order: after coupons (before tax) and after
credit-note credit (after tax, `credits.credits_apply`), it takes what is still due, but at most the wallet's
service's share of the invoice (its fees less their coupons plus their tax): a service's prepaid credits never pay
another service's lines on a shared customer's invoice. Finalization runs once per invoice under the drafts' locks,
so a re-run of the close consumes nothing more; one consumption row per (wallet, invoice) is also a unique
constraint. Wallets are locked `FOR UPDATE` by id, so concurrent finalizations take turns and the second sees what
the first consumed. Void gives back what the invoice consumed (`wallets_return`), once.

Each wallet's granted credit is consumed before its paid credit (`Wallet.paid_balance_amount_cents`), and each
consumption records its paid part (`WalletTransaction.paid_amount_cents`); a return puts each part back. The ledger
posts paid credit consumed as prepayment used and granted credit as a discount (docs/ledger.md).

The wallets themselves (create, top up, settle a paid top-up, expire) are apps/invoicing/wallets.py.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import F, Q, Sum
from django.utils import timezone

from .models import Fee, Invoice, RecurringTransactionRule, Wallet, WalletTransaction

# Invoices wallets pay (Lago: subscription and usage fees). One-off purchases and top-ups are paid with money.
CONSUMING_TYPES = (Invoice.InvoiceType.SUBSCRIPTION, Invoice.InvoiceType.PROGRESSIVE_BILLING)


def wallet_top_up_fail(*, invoice: Invoice) -> WalletTransaction | None:
    """Mark the pending top-up of a voided credit invoice failed: it credits nothing. Call in the voiding
    transaction, with the invoice locked. Idempotent."""
    if invoice.invoice_type != Invoice.InvoiceType.CREDIT:
        return None
    now = timezone.now()
    row = WalletTransaction.objects.filter(
        invoice=invoice, reason=WalletTransaction.Reason.TOP_UP, status=WalletTransaction.Status.PENDING).first()
    if row is None:
        return None
    if not WalletTransaction.objects.filter(pk=row.pk, status=WalletTransaction.Status.PENDING).update(
            status=WalletTransaction.Status.FAILED, failed_at=now, updated_at=now):
        return None
    row.refresh_from_db()
    if row.source == WalletTransaction.Source.THRESHOLD:
        # A failed automatic top-up (the card declined, the invoice voided) is asked again at the next check.
        RecurringTransactionRule.objects.filter(
            wallet_id=row.wallet_id, status=RecurringTransactionRule.Status.ACTIVE,
            trigger=RecurringTransactionRule.Trigger.THRESHOLD, threshold_armed=False,
        ).update(threshold_armed=True, updated_at=now)
    wallet_transactions_announce([row], event_type="wallet_transaction.updated")
    return row


# --------------------------------------------------------------------------- consumption


def _service_shares(invoice_ids: list[int]) -> dict[tuple[int, int], int]:
    """(invoice id, service id) -> what that service's fees bill, tax included, after coupons (minor units)."""
    # No ordering: Fee's default orders by invoice, a join that drops the close's invoices not written yet.
    rows = (Fee.objects.filter(invoice_id__in=invoice_ids, service_id__isnull=False).order_by()
            .values("invoice_id", "service_id")
            .annotate(total=Sum(F("amount_cents") - F("coupons_amount_cents") + F("taxes_amount_cents"))))
    return {(row["invoice_id"], row["service_id"]): row["total"] for row in rows}


def wallets_apply(invoices: list[Invoice], *, now: datetime) -> list[WalletTransaction]:
    """Consume the customers' wallets on finalizing invoices, in list order; return the unsaved outbound rows.

    After coupons and credit-note credit (Lago's order): sets each invoice's `prepaid_credit_amount_cents`,
    `total_amount_cents` and, when nothing is left to collect, `payment_status` in memory, and writes the wallets'
    balances. Wallets of one customer are taken by priority, then oldest first; each at most up to its service's
    share of the invoice. Only subscription invoices consume wallets (`CONSUMING_TYPES`). Call in the finalizing
    transaction after `credits_apply`, before the invoices' rows are written; save the rows after them
    (`wallet_consumptions_save`).
    """
    due = [invoice for invoice in invoices
           if invoice.invoice_type in CONSUMING_TYPES
           and invoice.total_amount_cents - invoice.total_paid_amount_cents > 0]
    if not due:
        return []
    customer_ids = sorted({invoice.customer_id for invoice in due})
    wallets = list(
        Wallet.objects.select_for_update()
        .filter(customer_id__in=customer_ids, status=Wallet.Status.ACTIVE, balance_amount_cents__gt=0)
        .filter(Q(expiration_at__isnull=True) | Q(expiration_at__gt=now))
        .order_by("pk")
    )
    if not wallets:
        return []
    pools: dict[tuple[int, str], list[Wallet]] = defaultdict(list)
    for wallet in sorted(wallets, key=lambda w: (w.priority, w.created_at, w.pk)):
        pools[(wallet.customer_id, wallet.currency)].append(wallet)
    targets = [invoice for invoice in due if (invoice.customer_id, invoice.currency) in pools]
    shares = _service_shares([invoice.pk for invoice in targets])
    rows: list[WalletTransaction] = []
    touched: dict[int, Wallet] = {}
    for invoice in targets:
        for wallet in pools[(invoice.customer_id, invoice.currency)]:
            owed = invoice.total_amount_cents - invoice.total_paid_amount_cents
            if owed <= 0:
                break
            taken_here = sum(row.amount_cents for row in rows
                             if row.invoice is invoice and row.wallet.service_id == wallet.service_id)
            take = min(wallet.balance_amount_cents, owed, shares.get((invoice.pk, wallet.service_id), 0) - taken_here)
            if take <= 0:
                continue
            # Granted credit first, then paid (Lago's traceable wallets): the ledger posts each part differently.
            paid_part = max(take - (wallet.balance_amount_cents - wallet.paid_balance_amount_cents), 0)
            wallet.balance_amount_cents -= take
            wallet.paid_balance_amount_cents -= paid_part
            wallet.consumed_amount_cents += take
            wallet.last_consumed_credit_at = now
            touched[wallet.pk] = wallet
            invoice.prepaid_credit_amount_cents += take
            invoice.total_amount_cents -= take
            rows.append(WalletTransaction(
                wallet=wallet, invoice=invoice, transaction_type=WalletTransaction.TransactionType.OUTBOUND,
                status=WalletTransaction.Status.SETTLED, transaction_status=WalletTransaction.TransactionStatus.INVOICED,
                reason=WalletTransaction.Reason.CONSUMPTION, amount_cents=take, paid_amount_cents=paid_part,
                credit_amount=wallet.credits_of(take), settled_at=now,
            ))
        if invoice.prepaid_credit_amount_cents and invoice.total_amount_cents - invoice.total_paid_amount_cents <= 0:
            invoice.payment_status = Invoice.PaymentStatus.SUCCEEDED  # credit paid it: nothing to collect
    if touched:
        stamp = timezone.now()
        for wallet in touched.values():
            wallet.updated_at = stamp
        Wallet.objects.bulk_update(list(touched.values()), [
            "balance_amount_cents", "paid_balance_amount_cents", "consumed_amount_cents", "last_consumed_credit_at",
            "updated_at"])
    return rows


def wallet_consumptions_save(rows: list[WalletTransaction]) -> list[WalletTransaction]:
    """Write the rows `wallets_apply` returned, once their invoices are written, and announce them."""
    if not rows:
        return []
    for row in rows:
        row.invoice_id = row.invoice.pk  # the close's new invoices had their ids drawn before they were written
    saved = WalletTransaction.objects.bulk_create(rows)
    wallet_transactions_announce(saved, event_type="wallet_transaction.created")
    return saved


def wallets_return(invoice: Invoice) -> list[WalletTransaction]:
    """Give back what a voided invoice consumed from wallets; return the inbound rows written. Call in the voiding
    transaction, with the invoice locked. Idempotent (one return row per wallet and invoice)."""
    consumed = {
        row["wallet_id"]: (row["total"], row["paid"])
        for row in WalletTransaction.objects.filter(invoice=invoice, reason=WalletTransaction.Reason.CONSUMPTION)
        .values("wallet_id").annotate(total=Sum("amount_cents"), paid=Sum("paid_amount_cents"))
    }
    if not consumed:
        return []
    returned = set(WalletTransaction.objects.filter(invoice=invoice, reason=WalletTransaction.Reason.RETURN)
                   .values_list("wallet_id", flat=True))
    now = timezone.now()
    rows = []
    for wallet in Wallet.objects.select_for_update().filter(pk__in=list(consumed)).order_by("pk"):
        if wallet.pk in returned:
            continue
        amount, paid = consumed[wallet.pk]
        wallet.balance_amount_cents += amount
        wallet.paid_balance_amount_cents += paid  # paid credit goes back as paid, granted as granted
        wallet.consumed_amount_cents -= amount
        wallet.last_balance_sync_at = now
        wallet.save(update_fields=["balance_amount_cents", "paid_balance_amount_cents", "consumed_amount_cents",
                                   "last_balance_sync_at", "updated_at"])
        rows.append(WalletTransaction.objects.create(
            wallet=wallet, invoice=invoice, transaction_type=WalletTransaction.TransactionType.INBOUND,
            status=WalletTransaction.Status.SETTLED, transaction_status=WalletTransaction.TransactionStatus.GRANTED,
            reason=WalletTransaction.Reason.RETURN, amount_cents=amount, paid_amount_cents=paid,
            credit_amount=wallet.credits_of(amount),
            name=f"Returned from voided invoice {invoice.number}", settled_at=now,
        ))
    wallet_transactions_announce(rows, event_type="wallet_transaction.created")
    return rows


# --------------------------------------------------------------------------- webhooks


def wallet_transactions_announce(rows: list[WalletTransaction], *, event_type: str) -> None:
    """Record `event_type` for each row, to the wallet's service only. Call inside the transaction that wrote
    the rows (the events commit with them; sending starts after commit)."""
    from apps.webhooks.services import webhook_events_record

    from .representations import wallet_transaction_out

    if not rows:
        return
    webhook_events_record(
        event_type=event_type, object_type="wallet_transaction",
        items=[(wallet_transaction_out(row), [row.wallet.service_id]) for row in rows],
    )

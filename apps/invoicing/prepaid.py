"""Prepaid credits at finalization and void: wallets consumed by invoices, given back when one is voided.

Consumption (`wallets_apply`) happens at finalization, in Lago's order: after coupons (before tax) and after
credit-note credit (after tax, `credits.credits_apply`), it takes what is still due, but at most what the wallet may
pay: its service's fees (less their coupons, plus their tax; a service's prepaid credits never pay another
service's lines on a shared customer's invoice) of the types and metrics its `applies_to` names, allocated as
Lago's AllocatePrepaidCreditsByWalletsService does (fees grouped by type and metric, largest group first, each
wallet in priority order taking what is left of the groups it may pay). Finalization runs once per invoice under the drafts' locks,
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


def _fee_buckets(invoice_ids: list[int]) -> dict[int, list[list]]:
    """invoice id -> its fees grouped as Lago allocates prepaid credit: [service id, fee type, metric code, what
    they bill (tax included, after coupons; minor units)], largest first (Lago's
    AllocatePrepaidCreditsByWalletsService; ties in a fixed order). Each bucket's last item is what is left of it."""
    # No ordering: Fee's default orders by invoice, a join that drops the close's invoices not written yet.
    rows = (Fee.objects.filter(invoice_id__in=invoice_ids, service_id__isnull=False).order_by()
            .values("invoice_id", "service_id", "fee_type", "charge__billable_metric__code")
            .annotate(total=Sum(F("amount_cents") - F("coupons_amount_cents") + F("taxes_amount_cents"))))
    buckets: dict[int, list[list]] = defaultdict(list)
    for row in rows:
        if row["total"] > 0:
            buckets[row["invoice_id"]].append(
                [row["service_id"], row["fee_type"], row["charge__billable_metric__code"] or "", row["total"]])
    for items in buckets.values():
        items.sort(key=lambda item: (-item[3], item[0], item[1], item[2]))
    return buckets


def wallet_applies_to(wallet: Wallet, *, fee_type: str, metric_code: str) -> bool:
    """Whether the wallet may pay a fee of this type and metric (Lago's `applies_to`): an unrestricted wallet pays
    any; a restricted one the fee types it lists and the charges of the metrics it lists."""
    types, codes = wallet.allowed_fee_types or [], wallet.billable_metric_codes or []
    if not types and not codes:
        return True
    return fee_type in types or (fee_type == Fee.FeeType.CHARGE and metric_code in codes)


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
    buckets = _fee_buckets([invoice.pk for invoice in targets])
    rows: list[WalletTransaction] = []
    touched: dict[int, Wallet] = {}
    for invoice in targets:
        for wallet in pools[(invoice.customer_id, invoice.currency)]:
            owed = invoice.total_amount_cents - invoice.total_paid_amount_cents
            if owed <= 0:
                break
            # Lago's allocation: bucket by bucket, largest first, what the wallet may pay, up to its balance and
            # what is still owed; a wallet only ever pays its own service's fees.
            take = 0
            for bucket in buckets.get(invoice.pk, ()):
                service_id, fee_type, metric_code, left = bucket
                if left <= 0 or service_id != wallet.service_id \
                        or not wallet_applies_to(wallet, fee_type=fee_type, metric_code=metric_code):
                    continue
                part = min(left, wallet.balance_amount_cents - take, owed - take)
                if part <= 0:
                    break
                bucket[3] -= part
                take += part
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

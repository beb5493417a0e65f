"""Wallets (Lago's prepaid credits): create, top up, settle a paid top-up, terminate, expire.

A wallet belongs to one service's view of a customer (its account link) and holds money in minor units; credits
are that money divided by `rate_amount` (currency per credit), as Lago shows them. Every change of the balance is a
`WalletTransaction` written in the same transaction, under the wallet's row lock.

- Granted credits settle at once. Paid credits put a `credit` invoice (no tax: tax is charged on the invoices the
  credits later pay) through the usual finalization and Stripe collection, with a pending transaction; the wallet
  is credited only when that invoice is paid (`wallet_top_up_settle`, called by apps.payments with the invoice
  locked), exactly once: the pending -> settled transition is conditional on the locked row. A voided top-up
  invoice fails its transaction and credits nothing. Settled paid credit also adds to the wallet's
  `paid_balance_amount_cents` (the part of the balance the ledger holds as the customer's prepayment).
- Consumption at finalization and the give-back on void: apps/invoicing/prepaid.py.
- Expiry (`wallets_expire`, beat) and termination: the wallet is never consumed again, its recurring rules end,
  and its unused balance is voided by a forfeit transaction whose paid part the ledger releases from the
  prepayment liability to income (breakage).
"""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core.exceptions import NotFound, ValidationFailed
from apps.core.keys import WALLET_FEE_PREFIX
from apps.core.money import SUPPORTED_CURRENCIES, from_minor_units, to_minor_units
from apps.customers.models import AccountLink, Customer, Service
from apps.subscriptions.periods import local_date

from .models import Fee, Invoice, Wallet, WalletTransaction
from .prepaid import wallet_transactions_announce
from .recurring import (recurring_rules_create, recurring_rules_update, recurring_rules_validate,
                        wallets_balance_check_on_commit)

log = logging.getLogger(__name__)

# Largest top-up in minor units: as one-off invoices (services.MAX_INVOICE_CENTS), far inside bigint.
MAX_TOP_UP_CENTS = (2**63 - 1) // 4
MAX_RATE = Decimal(10) ** 12


def credits_of(amount_cents: int, wallet: Wallet) -> Decimal:
    """Return the credits worth `amount_cents` in the wallet (`Wallet.credits_of`)."""
    return wallet.credits_of(amount_cents)


def cents_of(credits: Decimal, *, rate_amount: Decimal, currency: str) -> int:
    """Return the money `credits` are worth, minor units, rounded once half-up."""
    return to_minor_units(credits * rate_amount, currency)


# --------------------------------------------------------------------------- wallets


def _check_credits(values: dict, rate_amount: Decimal, currency: str, errors: dict) -> dict[str, int]:
    """Validate paid/granted credits; return their money per kind (absent or zero: left out)."""
    amounts = {}
    for kind in ("paid_credits", "granted_credits"):
        credits = values.get(kind)
        if credits is None or credits == 0:
            continue
        if credits < 0:
            errors[kind] = ["value_is_out_of_range"]
            continue
        cents = cents_of(credits, rate_amount=rate_amount, currency=currency)
        if cents <= 0 or cents > MAX_TOP_UP_CENTS:
            errors[kind] = [f"invalid_{kind}"]  # Lago's codes; rounds to nothing, or past what a bigint holds
            continue
        amounts[kind] = cents
    return amounts


def _check_applies_to(service: Service, applies_to: dict | None, errors: dict) -> dict:
    """Validate Lago's `applies_to` (fee types, the service's metric codes); return the fields to set."""
    if not applies_to:
        return {}
    fields = {}
    if applies_to.get("fee_types") is not None:
        types = list(dict.fromkeys(applies_to["fee_types"]))
        if set(types) - set(Fee.FeeType.values):
            errors["allowed_fee_types"] = ["invalid_fee_types"]
        fields["allowed_fee_types"] = types
    if applies_to.get("billable_metric_codes") is not None:
        from apps.catalog.selectors import billable_metric_list

        codes = list(dict.fromkeys(code for code in applies_to["billable_metric_codes"] if code))
        known = set(billable_metric_list(service=service).filter(code__in=codes).values_list("code", flat=True))
        if len(known) != len(codes):
            errors["billable_metrics"] = ["invalid_identifier"]
        fields["billable_metric_codes"] = codes
    return fields


@transaction.atomic
def wallet_create(*, service: Service, link: AccountLink, values: dict) -> tuple[Wallet, list[WalletTransaction]]:
    """Create a wallet for the service's customer (Lago's POST /wallets), topped up with the paid and granted
    credits given; return it and the transactions written. Refused with Lago's 422 before anything is written:
    an unknown currency, a rate not above zero, an expiration in the past, a currency other than the customer's,
    credits that are negative or round to nothing."""
    errors: dict[str, list[str]] = {}
    currency = values.get("currency")
    rate = values.get("rate_amount")
    if currency not in SUPPORTED_CURRENCIES:
        errors["currency"] = ["value_is_invalid"]
    if rate is None or rate <= 0 or rate > MAX_RATE:
        errors["rate_amount"] = ["value_is_out_of_range"]
    expiration_at = values.get("expiration_at")
    if expiration_at is not None and expiration_at <= timezone.now():
        errors["expiration_at"] = ["invalid_date"]
    # Locks the customer: its currency is set by the first wallet when blank (Lago), once.
    customer = Customer.objects.select_for_update().get(pk=link.customer_id)
    if currency in SUPPORTED_CURRENCIES and customer.currency and customer.currency != currency:
        errors["currency"] = ["currencies_does_not_match"]
    amounts = _check_credits(values, rate, currency, errors) if "currency" not in errors and "rate_amount" not in errors \
        else {}
    try:
        rules = recurring_rules_validate(values.get("recurring_transaction_rules"))
    except ValidationFailed as refused:
        errors.update(refused.details)
    limits = _check_applies_to(service, values.get("applies_to"), errors)
    if errors:
        raise ValidationFailed("invalid wallet", details=errors)
    if not customer.currency:
        customer.currency = currency
        customer.save(update_fields=["currency", "updated_at"])
    wallet = Wallet.objects.create(
        service=service, account_link=link, customer=customer, currency=currency, rate_amount=rate,
        name=values.get("name") or "", code=values.get("code") or "", expiration_at=expiration_at,
        priority=values.get("priority") or 50,
        invoice_requires_successful_payment=bool(values.get("invoice_requires_successful_payment")), **limits,
        metadata=_check_metadata(values["metadata"]) if values.get("metadata") is not None else None,
    )
    rows = _top_up(wallet, amounts, name="", metadata=[])
    if rules:
        recurring_rules_create(wallet=wallet, rules=rules, paid_credits=values.get("paid_credits"),
                               granted_credits=values.get("granted_credits"))
    return wallet, rows


@transaction.atomic
def wallet_update(*, wallet: Wallet, values: dict) -> Wallet:
    """Change a wallet's name, code, priority, expiration, payment rule, `applies_to` or recurring top-up rules
    (Lago's PUT). A
    terminated wallet refuses (405 `wallet_is_terminated`); an expiration in the past answers 422 `invalid_date`,
    a bad rule 422 `invalid_recurring_rule`."""
    from apps.core.exceptions import NotAllowed

    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    if wallet.status == Wallet.Status.TERMINATED:
        raise NotAllowed("wallet is terminated", code="wallet_is_terminated")
    if "expiration_at" in values and values["expiration_at"] is not None \
            and values["expiration_at"] <= timezone.now():
        raise ValidationFailed("invalid wallet", details={"expiration_at": ["invalid_date"]})
    rules = recurring_rules_validate(values.get("recurring_transaction_rules"))
    errors: dict[str, list[str]] = {}
    limits = _check_applies_to(wallet.service, values.get("applies_to"), errors)
    if errors:
        raise ValidationFailed("invalid wallet", details=errors)
    for field, value in limits.items():
        setattr(wallet, field, value)
    fields = list(limits)
    for field in ("name", "code", "priority", "expiration_at", "invoice_requires_successful_payment"):
        if field in values:
            value = values[field]
            if field in ("name", "code"):
                value = value or ""
            elif field == "priority":
                value = value or 50
            setattr(wallet, field, value)
            fields.append(field)
    if "metadata" in values:  # Lago's PUT replaces it (null clears it)
        wallet.metadata = _check_metadata(values["metadata"]) if values["metadata"] is not None else None
        fields.append("metadata")
    if fields:
        wallet.save(update_fields=[*fields, "updated_at"])
    if rules is not None:
        recurring_rules_update(wallet=wallet, rules=rules)
    return wallet


MAX_METADATA_KEYS = 50  # as the hub's credit notes


def _check_metadata(metadata) -> dict:
    """Lago's MetadataObject: keys up to 100 characters, values strings up to 255 or null."""
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS or any(
            not isinstance(key, str) or not key or len(key) > 100
            or not (value is None or (isinstance(value, str) and len(value) <= 255))
            for key, value in metadata.items()):
        raise ValidationFailed("invalid metadata", details={"metadata": ["invalid_value"]})
    return metadata


@transaction.atomic
def wallet_metadata_update(*, wallet: Wallet, metadata: dict | None, partial: bool = False) -> Wallet:
    """Replace the wallet's metadata (Lago's POST), merge into it (PATCH, `partial`) or clear it (DELETE, None).
    A terminated wallet refuses, as every update (405 `wallet_is_terminated`)."""
    from apps.core.exceptions import NotAllowed

    wallet = Wallet.objects.select_for_update().select_related("account_link").get(pk=wallet.pk)
    if wallet.status == Wallet.Status.TERMINATED:
        raise NotAllowed("wallet is terminated", code="wallet_is_terminated")
    if metadata is not None:
        metadata = _check_metadata(metadata)
        if partial:
            metadata = {**(wallet.metadata or {}), **metadata}
            _check_metadata(metadata)
    if metadata != wallet.metadata:
        wallet.metadata = metadata
        wallet.save(update_fields=["metadata", "updated_at"])
    return wallet


@transaction.atomic
def wallet_metadata_key_delete(*, wallet: Wallet, key: str) -> Wallet:
    """Remove one key from the wallet's metadata (Lago's DELETE …/metadata/{key}); 404 `metadata_not_found` when
    it has none. A missing key changes nothing."""
    wallet = Wallet.objects.select_for_update().select_related("account_link").get(pk=wallet.pk)
    if wallet.metadata is None:
        raise NotFound("metadata")
    if key in wallet.metadata:
        wallet.metadata = {k: v for k, v in wallet.metadata.items() if k != key}
        wallet.save(update_fields=["metadata", "updated_at"])
    return wallet


@transaction.atomic
def wallet_terminate(*, wallet: Wallet, now: datetime | None = None) -> Wallet:
    """Terminate a wallet (Lago's DELETE): no later invoice consumes it, its recurring rules end and its unused
    credit is forfeited (`_wallet_end`). Idempotent."""
    wallet = Wallet.objects.select_for_update().select_related("account_link").get(pk=wallet.pk)
    if wallet.status == Wallet.Status.ACTIVE:
        _wallet_end(wallet, at=now or timezone.now(), why="terminated")
    return wallet


def wallets_terminate_for_link(*, link_id: int) -> list[Wallet]:
    """Terminate the active wallets of one account link (its customer deleted by the service). Call inside the
    deleting transaction. Idempotent."""
    ids = list(Wallet.objects.filter(account_link_id=link_id, status=Wallet.Status.ACTIVE).order_by("pk")
               .values_list("pk", flat=True))
    return [wallet_terminate(wallet=Wallet(pk=wallet_id)) for wallet_id in ids]


def _wallet_end(wallet: Wallet, *, at: datetime, why: str) -> None:
    """Terminate a locked active wallet at `at`: its recurring rules end (Lago) and its unused balance is voided by
    one forfeit transaction; the ledger moves the forfeited paid credit from the prepayment liability to income,
    so no liability is left for credit that can no longer be used. (Lago keeps the number on a terminated wallet;
    here the forfeit row carries it, and the wallet shows zero.)"""
    from apps.ledger.services import ledger_wallet_forfeit_create

    from .models import RecurringTransactionRule

    wallet.status, wallet.terminated_at = Wallet.Status.TERMINATED, at
    RecurringTransactionRule.objects.filter(wallet=wallet, status=RecurringTransactionRule.Status.ACTIVE).update(
        status=RecurringTransactionRule.Status.TERMINATED, terminated_at=at, updated_at=timezone.now())
    fields = ["status", "terminated_at", "updated_at"]
    if wallet.balance_amount_cents > 0:
        row = WalletTransaction.objects.create(
            wallet=wallet, transaction_type=WalletTransaction.TransactionType.OUTBOUND,
            status=WalletTransaction.Status.SETTLED, transaction_status=WalletTransaction.TransactionStatus.VOIDED,
            reason=WalletTransaction.Reason.FORFEIT, amount_cents=wallet.balance_amount_cents,
            paid_amount_cents=wallet.paid_balance_amount_cents, credit_amount=credits_of(wallet.balance_amount_cents,
                                                                                      wallet),
            name=f"Unused credits, wallet {why}", settled_at=at,
        )
        wallet.balance_amount_cents = wallet.paid_balance_amount_cents = 0
        wallet.last_balance_sync_at = at
        fields += ["balance_amount_cents", "paid_balance_amount_cents", "last_balance_sync_at"]
        wallet.save(update_fields=fields)
        wallet_transactions_announce([row], event_type="wallet_transaction.created")
        ledger_wallet_forfeit_create(transaction=row)
    else:
        wallet.save(update_fields=fields)


def wallets_expire(*, now: datetime | None = None) -> int:
    """Terminate the active wallets whose `expiration_at` has passed; return how many (beat task). Idempotent:
    each wallet is terminated under its lock, so a late or concurrent run changes nothing more."""
    now = now or timezone.now()
    ids = list(Wallet.objects.filter(status=Wallet.Status.ACTIVE, expiration_at__lte=now)
               .order_by("pk").values_list("pk", flat=True))
    count = 0
    for wallet_id in ids:
        with transaction.atomic():
            wallet = Wallet.objects.select_for_update().select_related("account_link").get(pk=wallet_id)
            if wallet.status != Wallet.Status.ACTIVE:
                continue
            _wallet_end(wallet, at=wallet.expiration_at, why="expired")
            count += 1
    return count


# --------------------------------------------------------------------------- top-ups


@transaction.atomic
def wallet_transaction_create(*, wallet: Wallet, values: dict) -> list[WalletTransaction]:
    """Top a wallet up (Lago's POST /wallet_transactions): granted credits at once, paid credits through a
    credit invoice collected by Stripe. Return the transactions (paid first, as Lago). A terminated wallet is not
    found (404 `wallet_not_found`); bad credits answer 422 before anything is written."""
    # The customer first, then the wallet: the close's order (customer, its invoices, their wallets), which the
    # paid top-up's finalization below also takes; the other order could deadlock with a close.
    Customer.objects.select_for_update().get(pk=wallet.customer_id)
    wallet = Wallet.objects.select_for_update().select_related("account_link").get(pk=wallet.pk)
    if wallet.status != Wallet.Status.ACTIVE:
        raise NotFound("wallet")
    errors: dict[str, list[str]] = {}
    amounts = _check_credits(values, wallet.rate_amount, wallet.currency, errors)
    if errors:
        raise ValidationFailed("invalid wallet transaction", details=errors)
    return _top_up(wallet, amounts, name=values.get("name") or "", metadata=values.get("metadata") or [])


def _top_up(wallet: Wallet, amounts: dict[str, int], *, name: str, metadata: list,
            source: str = WalletTransaction.Source.MANUAL) -> list[WalletTransaction]:
    """Write the top-up transactions of a locked wallet: paid (pending, with its invoice), then granted. `source`
    says what asked for it (Lago's `manual`, or a recurring rule's `interval`/`threshold`)."""
    now = timezone.now()
    rows = []
    if "paid_credits" in amounts:
        cents = amounts["paid_credits"]
        row = WalletTransaction(
            wallet=wallet, transaction_type=WalletTransaction.TransactionType.INBOUND,
            status=WalletTransaction.Status.PENDING, transaction_status=WalletTransaction.TransactionStatus.PURCHASED,
            reason=WalletTransaction.Reason.TOP_UP, amount_cents=cents, paid_amount_cents=cents,
            credit_amount=credits_of(cents, wallet), name=name, metadata=metadata, source=source,
        )
        row.invoice = _credit_invoice(wallet, row)
        row.save()
        rows.append(row)
    if "granted_credits" in amounts:
        cents = amounts["granted_credits"]
        row = WalletTransaction.objects.create(
            wallet=wallet, transaction_type=WalletTransaction.TransactionType.INBOUND,
            status=WalletTransaction.Status.SETTLED, transaction_status=WalletTransaction.TransactionStatus.GRANTED,
            reason=WalletTransaction.Reason.TOP_UP, amount_cents=cents, credit_amount=credits_of(cents, wallet),
            name=name, metadata=metadata, settled_at=now, source=source,
        )
        Wallet.objects.filter(pk=wallet.pk).update(
            balance_amount_cents=F("balance_amount_cents") + cents, last_balance_sync_at=now, updated_at=now)
        wallet.refresh_from_db()
        rows.append(row)
    if rows:
        wallet_transactions_announce(rows, event_type="wallet_transaction.created")
    if "granted_credits" in amounts:
        wallets_balance_check_on_commit([wallet.pk])  # a depleted wallet may be positive again
    if "paid_credits" in amounts:
        # Finalized last, once the transaction row exists: finalization hands the invoice to apps.payments, whose
        # collection may (on commit) find it paid and settle the row.
        from .services import invoice_finalize

        invoice_finalize(invoice_id=rows[0].invoice_id)
    return rows


def _credit_invoice(wallet: Wallet, row: WalletTransaction) -> Invoice:
    """A draft `credit` invoice of the purchased credits: one untaxed fee (Lago bills credits without tax)."""
    customer = wallet.customer
    today = local_date(timezone.now(), customer.applicable_timezone)
    cents = row.amount_cents
    invoice = Invoice.objects.create(
        customer=customer, invoice_type=Invoice.InvoiceType.CREDIT, currency=wallet.currency, issuing_date=today,
        net_payment_term=customer.net_payment_term, fees_amount_cents=cents,
        sub_total_excluding_taxes_amount_cents=cents, sub_total_including_taxes_amount_cents=cents,
        total_amount_cents=cents,
    )
    Fee.objects.create(
        invoice=invoice, fee_key=f"{WALLET_FEE_PREFIX}{row.lago_id}", fee_type=Fee.FeeType.CREDIT,
        service=wallet.service, name=wallet.name or "Prepaid credits", currency=wallet.currency,
        units=row.credit_amount, precise_unit_amount=wallet.rate_amount,
        precise_amount=from_minor_units(cents, wallet.currency), amount_cents=cents,
    )
    return invoice


def wallet_top_up_settle(*, invoice: Invoice) -> WalletTransaction | None:
    """Credit the wallet a paid credit invoice bought; return the settled transaction (None: nothing pending).

    Called by apps.payments inside the transaction that recorded the payment, with the invoice locked, when the
    invoice is fully paid. Exactly once: only a pending row settles, under the wallet's lock, so a duplicate or
    reordered Stripe event (or the sweep re-reading the PaymentIntent) finds it settled and does nothing.
    """
    if invoice.invoice_type != Invoice.InvoiceType.CREDIT:
        return None
    row = (WalletTransaction.objects.select_related("wallet")
           .filter(invoice=invoice, reason=WalletTransaction.Reason.TOP_UP, status=WalletTransaction.Status.PENDING)
           .first())
    if row is None:
        return None
    wallet = Wallet.objects.select_for_update().get(pk=row.wallet_id)
    now = timezone.now()
    claimed = WalletTransaction.objects.filter(pk=row.pk, status=WalletTransaction.Status.PENDING).update(
        status=WalletTransaction.Status.SETTLED, settled_at=now, updated_at=now)
    if not claimed:
        return None
    if wallet.status != Wallet.Status.ACTIVE:
        # Paid after the wallet ended: the money is kept on the row (staff refund it or move it), never lost.
        log.warning("wallet %s: top-up %s paid after the wallet was terminated", wallet.pk, row.pk)
    Wallet.objects.filter(pk=wallet.pk).update(
        balance_amount_cents=F("balance_amount_cents") + row.amount_cents,
        paid_balance_amount_cents=F("paid_balance_amount_cents") + row.paid_amount_cents,
        last_balance_sync_at=now, updated_at=now)
    row.refresh_from_db()
    wallet_transactions_announce([row], event_type="wallet_transaction.updated")
    wallets_balance_check_on_commit([wallet.pk])
    return row

"""Wallets' ongoing usage: what the customer's unbilled usage and draft invoices will take from each wallet, from
the current-usage engine (`current_usage_lines`, the close's own rating), allocated as Lago's
Wallets::Balance::AllocateOngoingUsageByWalletsService does.

- Fees, per key (service, fee type, metric code, currency), tax included: each active subscription's current
  period's charges (pay-in-advance charges left out: billed when their events came, as Lago nets them out), plus
  the customer's draft invoices' fees after their coupons (credit invoices left out).
- Per currency the keys' sum is the budget; the positive keys, largest first, are spread over the customer's active
  wallets of that service and currency that may pay them (`applies_to`), in consumption order: each takes up to
  what is left of its balance, except that a wallet with an active threshold rule, or the last one that may pay
  the key, takes everything left (its ongoing balance may go below zero, so its rule fires or its depletion shows).

Deviation: usage already billed by progressive billing in the current period is not netted out yet.
Lives in the close's package: services never import the close (tests/unit/test_layers.py), so the API and the
wallet balance checks call it and hand the result to `wallet_out`.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import F, Prefetch, Sum
from django.utils import timezone

from apps.catalog.models import Charge
from apps.subscriptions.models import Subscription

from ..fees import customer_tax_rates, fee_taxes
from ..models import Fee, Invoice, RecurringTransactionRule, Wallet
from ..prepaid import wallet_applies_to
from .planning import current_usage_lines

Key = tuple[int, str, str, str]  # service id, fee type, metric code ("" when none), currency


def customer_ongoing_fees(*, customer_id: int, at: datetime) -> dict[Key, int]:
    """The customer's unbilled usage and draft fees per key, tax included (minor units; see the module)."""
    net: dict[Key, int] = defaultdict(int)
    subscriptions = (Subscription.objects.filter(customer_id=customer_id, status=Subscription.Status.ACTIVE,
                                                 subscription_at__lte=at)
                     .select_related("plan", "customer", "service")
                     .prefetch_related(Prefetch("plan__charges",
                                                queryset=Charge.objects.select_related("billable_metric")))
                     .order_by("pk"))
    for subscription in subscriptions:
        period, _, _, lines = current_usage_lines(subscription, at=at)
        rates = customer_tax_rates(subscription.customer, on=period.end)
        for line in lines:
            if line.charge is None or line.charge.pay_in_advance or line.amount_cents == 0:
                continue
            key = (subscription.service_id, line.fee_type, line.charge.billable_metric.code, line.currency)
            net[key] += line.amount_cents + fee_taxes(line.amount_cents, rates)[0]
    drafts = (Fee.objects.filter(invoice__customer_id=customer_id, invoice__status=Invoice.Status.DRAFT,
                                 service_id__isnull=False)
              .exclude(invoice__invoice_type=Invoice.InvoiceType.CREDIT).order_by()
              .values("service_id", "fee_type", "charge__billable_metric__code", "currency")
              .annotate(total=Sum(F("amount_cents") - F("coupons_amount_cents") + F("taxes_amount_cents"))))
    for row in drafts:
        net[(row["service_id"], row["fee_type"], row["charge__billable_metric__code"] or "", row["currency"])] += \
            row["total"]
    return dict(net)


def allocate(fees: dict[Key, int], wallets: list[Wallet], *, threshold_ids: set[int]) -> dict[int, int]:
    """Spread `fees` over `wallets` (in consumption order) as Lago does; return wallet id -> ongoing usage."""
    budgets: dict[str, int] = defaultdict(int)
    for key, amount in fees.items():
        budgets[key[3]] += amount
    budgets = {currency: max(amount, 0) for currency, amount in budgets.items()}
    allocations = {wallet.pk: 0 for wallet in wallets}
    pool = sorted(((key, amount) for key, amount in fees.items() if amount > 0),
                  key=lambda item: (-item[1], tuple(str(part) for part in item[0])))
    for (service_id, fee_type, metric_code, currency), amount in pool:
        remaining = min(amount, budgets[currency])
        applicable = [wallet for wallet in wallets
                      if wallet.service_id == service_id and wallet.currency == currency
                      and wallet_applies_to(wallet, fee_type=fee_type, metric_code=metric_code)]
        for index, wallet in enumerate(applicable):
            if remaining <= 0:
                break
            if wallet.pk in threshold_ids or index == len(applicable) - 1:
                take = remaining
            else:
                take = min(remaining, wallet.balance_amount_cents - allocations[wallet.pk])
                if take <= 0:
                    continue
            allocations[wallet.pk] += take
            remaining -= take
            budgets[currency] -= take
    return allocations


def customer_wallets_ongoing_usage(*, customer_id: int, at: datetime | None = None) -> dict[int, int]:
    """Wallet id -> ongoing usage (minor units) for each of the customer's active wallets."""
    at = at or timezone.now()
    wallets = sorted(Wallet.objects.filter(customer_id=customer_id, status=Wallet.Status.ACTIVE),
                     key=lambda w: (w.priority, w.created_at, w.pk))
    if not wallets:
        return {}
    threshold_ids = {
        rule.wallet_id for rule in RecurringTransactionRule.objects.filter(
            wallet__in=wallets, status=RecurringTransactionRule.Status.ACTIVE,
            trigger=RecurringTransactionRule.Trigger.THRESHOLD)
        if rule.expiration_at is None or rule.expiration_at > at
    }
    return allocate(customer_ongoing_fees(customer_id=customer_id, at=at), wallets, threshold_ids=threshold_ids)


def wallets_ongoing_usage(wallets, *, at: datetime | None = None) -> dict[int, int]:
    """Wallet id -> ongoing usage for `wallets` (0 for ended ones), each customer's usage read once."""
    at = at or timezone.now()
    usage: dict[int, int] = {}
    for customer_id in sorted({wallet.customer_id for wallet in wallets if wallet.status == Wallet.Status.ACTIVE}):
        usage.update(customer_wallets_ongoing_usage(customer_id=customer_id, at=at))
    return {wallet.pk: usage.get(wallet.pk, 0) for wallet in wallets}

"""Wallets limited to fee types and metrics (Lago's `applies_to`, issue 20): each wallet pays only the fees it may,
allocated as Lago's AllocatePrepaidCreditsByWalletsService does (fees grouped by type and metric, largest group
first, wallets in priority order)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core.exceptions import ValidationFailed
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice, Wallet, WalletTransaction
from apps.invoicing.wallets import wallet_create, wallet_update

from .conftest import at, fake_usage

pytestmark = pytest.mark.django_db


def wallet(billing, link, granted: str, priority: int, applies_to: dict | None = None) -> Wallet:
    created, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "granted_credits": Decimal(granted), "priority": priority,
        "applies_to": applies_to})
    return created


def test_each_wallet_pays_only_the_fees_it_applies_to_in_lago_s_order(billing, settings):
    """100.00 plan, 40 tokens and 10 seats at 1.00, HST 13 %: subscription 113.00, tokens 45.20, seats 11.30.
    The tokens wallet (first) pays the tokens' 45.20 only, though it holds 100; the subscription wallet its 50
    credits of the subscription; the unrestricted one what is left of both others (63.00 + 11.30)."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    tokens_metric, seats_metric = billing.metric("tokens", field_name="n"), billing.metric("seats", field_name="n")
    plan = billing.plan(amount_cents=10000, charges=[(tokens_metric, "standard", {"amount": "1"}, {}),
                                                     (seats_metric, "standard", {"amount": "1"}, {})])
    link = billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "100", 1, {"billable_metric_codes": ["tokens"]})
    base = wallet(billing, link, "50", 2, {"fee_types": ["subscription"]})
    anything = wallet(billing, link, "200", 3)

    periods_close(as_of=at(2026, 4, 1, 2, 0), fetch=fake_usage({(sub.pk, tokens_metric.pk): ("40", 4),
                                                                (sub.pk, seats_metric.pk): ("10", 1)}))
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert (invoice.sub_total_including_taxes_amount_cents, invoice.prepaid_credit_amount_cents,
            invoice.total_amount_cents) == (16950, 16950, 0)
    taken = dict(WalletTransaction.objects.filter(invoice=invoice, reason="consumption")
                 .values_list("wallet_id", "amount_cents"))
    assert taken == {tokens.pk: 4520, base.pk: 5000, anything.pk: 7430}
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 10000 - 4520


def test_a_wallet_for_other_fees_is_not_consumed(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    usage_only = wallet(billing, link, "100", 1, {"fee_types": ["charge"]})
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert Invoice.objects.get(invoice_type="subscription").prepaid_credit_amount_cents == 0
    usage_only.refresh_from_db()
    assert usage_only.balance_amount_cents == 10000


def test_applies_to_is_checked_as_lago_does(billing):
    billing.metric("tokens")
    link = billing.customer()
    with pytest.raises(ValidationFailed) as refused:
        wallet(billing, link, "1", 1, {"fee_types": ["charge", "lunch"], "billable_metric_codes": ["tokens", "nope"]})
    assert refused.value.details == {"allowed_fee_types": ["invalid_fee_types"],
                                     "billable_metrics": ["invalid_identifier"]}
    created = wallet(billing, link, "1", 1, {"billable_metric_codes": ["tokens"]})
    updated = wallet_update(wallet=created, values={"applies_to": {"fee_types": ["subscription"]}})
    assert (updated.allowed_fee_types, updated.billable_metric_codes) == (["subscription"], ["tokens"])
    updated = wallet_update(wallet=created, values={"applies_to": {"billable_metric_codes": []}})
    assert (updated.allowed_fee_types, updated.billable_metric_codes) == (["subscription"], [])

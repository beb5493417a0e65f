"""A close reads the fee keys of the last billed periods, not the whole history, and still bills nothing twice."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.close.planning import _billed_keys, _load_subscriptions, _scan_starts
from apps.invoicing.models import Fee

from .conftest import at

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_billed_keys_skip_periods_planning_never_revisits(billing, settings, pay_in_advance):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(pay_in_advance=pay_in_advance, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer("acme")
    subscription = billing.subscribe("s1", plan, when=at(2026, 1, 15, 10, 0))
    for month in (2, 3, 4, 5):
        periods_close(as_of=at(2026, month, 1, 2, 0))
    assert Fee.objects.filter(subscription=subscription, fee_key__contains=":2026-01-").exists()

    loaded = _load_subscriptions([subscription.customer_id], as_of=at(2026, 6, 1, 2, 0))
    keys = _billed_keys(loaded, _scan_starts(loaded))

    assert not [key for key in keys if ":2026-01-" in key or ":2026-02-" in key]  # history stays unread
    assert f"sub:{subscription.pk}:base:2026-04-01" in keys  # the last billed charges period is still read
    if pay_in_advance:  # the base fee billed in advance for May, whose charges are billed next
        assert keys[f"sub:{subscription.pk}:base:2026-05-01"]["active_to"] is None
    assert periods_close(as_of=at(2026, 5, 1, 2, 0)).invoices_count == 0  # nothing left to bill
    assert periods_close(as_of=at(2026, 6, 1, 2, 0)).invoices_count == 1
    assert periods_close(as_of=at(2026, 6, 1, 2, 0)).invoices_count == 0

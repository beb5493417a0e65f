"""Admin tests: billing builders and a finalized invoice to look at."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from tests.integration.invoicing.conftest import Billing, at


@pytest.fixture
def billing(service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    builder = Billing(issued.service)
    builder.raw_key = issued.raw_key
    return builder


@pytest.fixture
def finalized(billing, settings):
    """One finalized invoice: a $100.00 plan in Ontario, $113.00 CAD with HST."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice.status == "finalized" and invoice.total_amount_cents == 11300
    return invoice


@pytest.fixture
def other_service_plan(service_factory):
    from apps.catalog.models import Plan

    other = service_factory("nexamail", "NexaMail").service
    return Plan.objects.create(service=other, code="mail", name="Mail", interval="monthly", amount_cents=900,
                               amount_currency="CAD")

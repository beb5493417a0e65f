"""Invoices when Lago issues them (issue 16): through lago-python-client against a live hub without beat, a
pay-in-advance start is invoiced at once, a termination gets its invoice with the usage to date at once, and the
scheduled close afterwards bills nothing more."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.models import Event, Subscription

from apps.invoicing.close import periods_close
from apps.invoicing.models import CreditNote, Invoice
from tests.integration.invoicing.conftest import Billing

pytestmark = pytest.mark.django_db(transaction=True)


def _listed_within(client, external_customer_id: str, count: int, seconds: float = 5.0) -> list:
    deadline = time.monotonic() + seconds
    while True:
        invoices = client.invoices.find_all({"external_customer_id": external_customer_id})["invoices"]
        if len(invoices) >= count or time.monotonic() > deadline:
            return invoices
        time.sleep(0.1)


def test_start_and_termination_are_invoiced_at_once_and_the_close_finds_nothing_left(
    live_server, service_factory, settings
):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    billing.plan("adv", amount_cents=3100, pay_in_advance=True, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer("acme")
    client = Client(api_key=issued.raw_key, api_url=live_server.url)

    client.subscriptions.create(Subscription(external_customer_id="acme", plan_code="adv", external_id="s1"))
    [started] = _listed_within(client, "acme", 1)
    assert started.status == "finalized" and started.invoice_type == "subscription"
    assert [fee.item.type for fee in started.fees.__root__] == ["subscription"]  # the base fee, in advance

    time.sleep(1.1)  # events are dated in whole seconds: after the start, before the termination
    now = int(timezone.now().timestamp())
    for index, gb in enumerate(("2", "5")):
        client.events.create(Event(transaction_id=f"t{index}", external_subscription_id="s1", code="gb",
                                   timestamp=now, properties={"gb": gb}))
    time.sleep(1.1)
    client.subscriptions.destroy("s1")
    invoices = _listed_within(client, "acme", 2)
    assert len(invoices) == 2
    ending = next(invoice for invoice in invoices if invoice.lago_id != started.lago_id)
    usage = [fee for fee in ending.fees.__root__ if fee.item.type == "charge"]
    assert [(float(fee.units), fee.amount_cents) for fee in usage] == [(7.0, 700)]
    assert CreditNote.objects.filter(created_by_close=True).count() == 1  # the unused days of the base fee

    later = periods_close(as_of=timezone.now() + timedelta(minutes=1))
    assert later.invoices_count == 0 and Invoice.objects.count() == 2

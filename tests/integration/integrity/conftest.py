"""A small billed world built through the real services: subscription, usage, two closes, late usage."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import connection

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.invoicing.services import invoice_void
from apps.payments import services as payments
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at
from tests.integration.payments.stripe_fixtures import ls_post, post_signed, stripe_event
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env, webhook_endpoint  # noqa: F401


def ingest(billing: Billing, tid: str, when, gb: str, *, now, sub: str = "s1"):
    return usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id=sub, code="gb",
                        timestamp=int(when.timestamp()), properties={"gb": gb})],
        now=now,
    )


@dataclass
class World:
    billing: Billing
    customer: object
    subscription: object
    march: Invoice  # NEXA-2026-000001: base 1000 + 13 GB × 0.50
    april: Invoice  # NEXA-2026-000002: base 1000 + 7 GB × 0.50 + a late 4 GB adjustment for March


@pytest.fixture
def world(service_factory, settings) -> World:
    """Closed March and April for one Ontario customer (HST 13 %), finalized at once (no grace)."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing = Billing(service_factory("nexacloud", "NexaCloud").service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "0.5"}, {})])
    link = billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, "t1", at(2026, 3, 10), "10", now=at(2026, 3, 10, 11))
    ingest(billing, "t2", at(2026, 3, 20), "3", now=at(2026, 3, 20, 11))
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).failures_count == 0
    assert ingest(billing, "t3", at(2026, 3, 25), "4", now=at(2026, 4, 2, 9)).items[0].is_late
    ingest(billing, "t4", at(2026, 4, 5), "7", now=at(2026, 4, 5, 11))
    assert periods_close(as_of=at(2026, 5, 1, 1, 0)).failures_count == 0
    march, april = Invoice.objects.filter(customer=link.customer).order_by("sequential_id")
    assert (march.status, april.status) == ("finalized", "finalized")
    assert april.fees.filter(is_adjustment=True).count() == 1
    subscription.refresh_from_db()
    return World(billing=billing, customer=link.customer, subscription=subscription, march=march, april=april)


@pytest.fixture
def credit_world(world, client, webhook_endpoint, stripe_env, django_capture_on_commit_callbacks):
    """April's Checkout link paid while staff void April: the money becomes customer credit (defect 2's fix)."""
    payments.invoice_payment_url(invoice=world.april)
    attempt = world.april.payment_attempts.get()
    session = ls_post(stripe_env, f"/_config/checkout_sessions/{attempt.stripe_checkout_session_id}/complete")
    with django_capture_on_commit_callbacks(execute=True):
        invoice_void(invoice_id=world.april.pk)
    assert post_signed(client, webhook_endpoint, stripe_event("checkout.session.completed", session)).status_code == 200
    return world


def sql(statement: str, params: list | None = None) -> int:
    """Corrupt the database the way a bug would: one raw statement, no service. Returns the row count."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.rowcount

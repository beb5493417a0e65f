"""Every usage window the close bills is cut off and fenced first, whatever planned it (issue 15, defect 5).

An event that commits while the close reads usage must end up on the invoice or flagged late (then billed as an
adjustment), never neither. The race is staged at the real read: `usage_totals` is wrapped so that, right after
the close's read of a window, another connection ingests an event dated inside it and commits, before the close's
own transaction commits. Through `periods_close`, on both paths that planned windows the prepass had not cut off:
a customer of a chunk whose prepass failed, and a subscription that appeared after the prepass.
"""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from apps.invoicing.close import pipeline, planning
from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import SubscriptionRequest, subscription_create
from apps.usage import aggregation
from apps.usage.models import UsageEvent
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db(transaction=True)


def _event(tid: str, sub: str, when) -> EventIn:
    return EventIn(transaction_id=tid, external_subscription_id=sub, code="gb", timestamp=int(when.timestamp()),
                   properties={"gb": "5"})


def _race_after_reads(monkeypatch, billing, sub_external_id: str, when) -> dict:
    """After the close's first read of a window of `sub_external_id` covering `when`, ingest one event dated `when`
    for it from another connection."""
    real, state = aggregation.usage_totals, {"raced": False, "late": None, "errors": []}

    def reading_then_racing(*, subscription_ids, from_datetime, to_datetime, **kwargs):
        totals = real(subscription_ids=subscription_ids, from_datetime=from_datetime, to_datetime=to_datetime, **kwargs)
        target = Subscription.objects.filter(service=billing.service, external_id=sub_external_id).values_list(
            "pk", flat=True).first()
        if not state["raced"] and target in subscription_ids and from_datetime <= when < to_datetime:
            state["raced"] = True

            def ingest():
                try:
                    result = usage_events_ingest(service=billing.service, events=[_event("racer", sub_external_id, when)])
                    state["late"] = result.items[0].is_late
                except Exception as exc:  # surfaced by the test
                    state["errors"].append(exc)
                finally:
                    connection.close()

            writer = threading.Thread(target=ingest)
            writer.start()
            writer.join(timeout=30)
        return totals

    monkeypatch.setattr(aggregation, "usage_totals", reading_then_racing)
    return state


def _billed_units(subscription_ids) -> Decimal:
    return Fee.objects.filter(subscription_id__in=subscription_ids, fee_type="charge").aggregate(
        units=Sum("units"))["units"] or Decimal(0)


def _ingested_units(subscription_ids) -> Decimal:
    return Decimal(UsageEvent.objects.filter(subscription_id__in=subscription_ids).count() * 5)


def _world(billing):
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, events=[_event("early", "s1", at(2026, 3, 5))], now=at(2026, 3, 5, 1))
    return plan, sub


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_a_customer_whose_prepass_failed_is_cut_off_before_its_usage_is_read(billing, settings, monkeypatch, batch_min):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    _, sub = _world(billing)
    real_prepass_load, calls = planning._subscription_fingerprints, {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("prepass chunk failed")
        return real_prepass_load(*args, **kwargs)

    monkeypatch.setattr(planning, "_subscription_fingerprints", failing_once)
    state = _race_after_reads(monkeypatch, billing, "s1", at(2026, 3, 20))
    run = periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert run.failures_count == 0 and state["raced"] and state["errors"] == []
    assert state["late"] is True  # the window was cut off (and fenced) before it was read
    periods_close(as_of=at(2026, 5, 1, 1, 0))  # the late event is billed on April's invoice
    assert _billed_units([sub.pk]) == _ingested_units([sub.pk]) == 10
    assert Fee.objects.filter(is_adjustment=True).count() == 1


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_a_subscription_that_appeared_after_the_prepass_is_cut_off_before_its_usage_is_read(
    billing, settings, monkeypatch, batch_min
):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    plan, sub = _world(billing)
    real_prepass = pipeline.close_prepass

    def prepass_then_new_subscription(*args, **kwargs):
        planned = real_prepass(*args, **kwargs)
        # An app backdates a second subscription of the same customer while the close runs.
        subscription_create(
            service=billing.service,
            request=SubscriptionRequest(external_id="s2", external_customer_id="acme", plan=plan,
                                        subscription_at=at(2026, 3, 10, 0, 0)),
        )
        return planned

    monkeypatch.setattr(pipeline, "close_prepass", prepass_then_new_subscription)
    state = _race_after_reads(monkeypatch, billing, "s2", at(2026, 3, 20))
    run = periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert run.failures_count == 0 and state["raced"] and state["errors"] == []
    assert state["late"] is True
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    subs = list(UsageEvent.objects.values_list("subscription_id", flat=True).distinct())
    assert _billed_units(subs) == _ingested_units(subs) == 10

"""Builders for invoicing integration tests: a service, plans, customers and subscriptions under a clock."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from apps.catalog.models import BillableMetric, Charge, Plan
from apps.customers.services import customer_upsert
from apps.subscriptions.services import SubscriptionRequest, subscription_create, subscription_terminate

TORONTO = ZoneInfo("America/Toronto")


def at(year, month, day, hour=10, minute=0, tz=TORONTO) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


class Billing:
    def __init__(self, service):
        self.service = service
        self._n = 0

    def metric(self, code="gb", aggregation_type="sum_agg", field_name="gb", **extra) -> BillableMetric:
        return BillableMetric.objects.create(
            service=self.service, code=code, name=code.upper(), aggregation_type=aggregation_type,
            field_name=field_name if aggregation_type != "count_agg" else "", **extra,
        )

    def plan(self, code="pro", *, interval="monthly", amount_cents=9999, pay_in_advance=False, trial_period=0,
             currency="CAD", charges=()) -> Plan:
        plan = Plan.objects.create(
            service=self.service, code=code, name=code.title(), interval=interval, amount_cents=amount_cents,
            amount_currency=currency, pay_in_advance=pay_in_advance, trial_period=trial_period,
        )
        for index, (metric, model, properties, extra) in enumerate(charges):
            Charge.objects.create(
                plan=plan, billable_metric=metric, code=f"c{index}", charge_model=model, properties=properties,
                **extra,
            )
        return plan

    def customer(self, external_id="acme", *, province="ON", country="CA", tz="America/Toronto", **attributes):
        link = customer_upsert(
            service=self.service, external_id=external_id,
            attributes={"state": province, "country": country, "timezone": tz, **attributes},
        )
        return link

    def subscribe(self, external_id, plan, *, customer="acme", billing_time="calendar", when: datetime):
        with time_machine.travel(when, tick=False):
            return subscription_create(
                service=self.service,
                request=SubscriptionRequest(
                    external_id=external_id, external_customer_id=customer, plan=plan, billing_time=billing_time,
                ),
            )

    def terminate(self, subscription, *, when: datetime):
        with time_machine.travel(when, tick=False):
            return subscription_terminate(subscription_id=subscription.pk)


@pytest.fixture
def billing(service_factory):
    return Billing(service_factory("nexacloud", "NexaCloud").service)


def fake_usage(table: dict):
    """A UsageFetcher returning fixed totals: {(subscription_id, metric_id): (units, events)}."""
    from apps.usage.aggregation import UsageTotal

    def fetch(subscription_ids, start, end):
        return {
            key: UsageTotal(units=Decimal(units), events_count=events)
            for key, (units, events) in table.items()
            if key[0] in subscription_ids
        }

    return fetch

"""Fixtures for usage tests: one service with a metric of every aggregation type and subscriptions."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class World:
    service: object
    raw_key: str
    plan: object
    metrics: dict = field(default_factory=dict)  # code -> BillableMetric

    def subscription(self, external_id: str, *, customer: str = "cust-1", at: datetime = START):
        from apps.subscriptions.services import SubscriptionRequest, subscription_create

        return subscription_create(
            service=self.service,
            request=SubscriptionRequest(
                external_id=external_id, external_customer_id=customer, plan=self.plan, subscription_at=at
            ),
        )


METRICS = [
    ("calls", "count_agg", "", False),
    ("storage", "sum_agg", "gb", False),
    ("storage_rec", "sum_agg", "gb", True),
    ("peak", "max_agg", "cpu", False),
    ("gauge", "latest_agg", "level", False),
    ("seats", "unique_count_agg", "user_id", False),
    ("seats_rec", "unique_count_agg", "user_id", True),
    ("instances", "weighted_sum_agg", "delta", False),
    ("instances_rec", "weighted_sum_agg", "delta", True),
]


def make_world(service_factory, code: str) -> World:
    from apps.catalog.models import BillableMetric, Plan

    issued = service_factory(code)
    plan = Plan.objects.create(
        service=issued.service, code=f"{code}-plan", name="Plan", interval="monthly", amount_cents=0, amount_currency="CAD"
    )
    world = World(service=issued.service, raw_key=issued.raw_key, plan=plan)
    for metric_code, kind, field_name, recurring in METRICS:
        world.metrics[metric_code] = BillableMetric.objects.create(
            service=issued.service,
            code=metric_code,
            name=metric_code,
            aggregation_type=kind,
            field_name=field_name,
            recurring=recurring,
            weighted_interval="seconds" if kind == "weighted_sum_agg" else "",
        )
    return world


@pytest.fixture
def world(service_factory) -> World:
    return make_world(service_factory, "nexacloud")


@pytest.fixture
def other_world(service_factory) -> World:
    return make_world(service_factory, "nexadesk")

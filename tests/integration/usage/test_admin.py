"""Admin: raw rows, the per-subscription/metric summary with filters, and the usage chart."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

pytestmark = pytest.mark.django_db


def _ingest(world, sub):
    events = [
        EventIn(transaction_id=f"t{i}", external_subscription_id=sub.external_id, code="storage",
                timestamp=int(datetime(2026, 1, 1 + i, tzinfo=timezone.utc).timestamp()), properties={"gb": str(i + 1)})
        for i in range(3)
    ]
    usage_events_ingest(service=world.service, events=events)


def test_summary_filters_by_subscription_and_metric(admin_client, world):
    one, two = world.subscription("sub-one"), world.subscription("sub-two")
    _ingest(world, one)
    _ingest(world, two)  # same transaction ids, same service: duplicates, not stored
    page = admin_client.get("/admin/usage/usageevent/summary/", {"subscription": "sub-one", "metric": "storage"})
    assert page.status_code == 200
    rows = page.context["rows"]
    assert [(r.subscription_external_id, r.metric_code, r.events_count, r.value_sum) for r in rows] == [
        ("sub-one", "storage", 3, 6)
    ]
    assert admin_client.get("/admin/usage/usageevent/summary/", {"late": "1"}).context["rows"] == []


def test_chart_renders_one_bar_per_day(admin_client, world):
    sub = world.subscription("sub-one")
    _ingest(world, sub)
    page = admin_client.get(f"/admin/usage/usageevent/chart/{sub.pk}/")
    assert page.status_code == 200
    (chart,) = page.context["charts"]
    assert [bar["pct"] for bar in chart["bars"]] == [33, 66, 100]
    assert page.content.count(b'class="bar"') == 3
    assert admin_client.get("/admin/usage/usageevent/").status_code == 200

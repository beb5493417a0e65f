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


def test_chart_shows_a_bar_per_day_with_titled_axes_and_the_values(admin_client, world):
    import json

    sub = world.subscription("sub-one")
    _ingest(world, sub)
    page = admin_client.get(f"/admin/usage/usageevent/chart/{sub.pk}/")
    assert page.status_code == 200
    (chart,) = page.context["charts"]
    data, options = json.loads(chart["data"]), json.loads(chart["options"])
    assert data["labels"] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert data["datasets"][0]["data"] == ["1", "2", "3"]  # the day's units, as decimal strings
    assert options["scales"]["x"]["title"] == {"display": True, "text": "day (UTC)"}
    assert options["scales"]["y"]["title"]["text"] == "storage (metric units)"
    assert options["scales"]["y"]["ticks"]["display"] is True  # unfold hides the y values by default
    text = page.content.decode()
    assert 'data-type="bar"' in text and "data-options=" in text and "/static/unfold/js/chart/chart.js" in text
    assert [(row["day"].isoformat(), row["units"], row["events"]) for row in chart["rows"]] == [
        ("2026-01-01", 1, 1), ("2026-01-02", 2, 1), ("2026-01-03", 3, 1)]
    assert '<td class="pr-6">2026-01-03</td>' in text  # the values, as a table under the chart
    assert admin_client.get("/admin/usage/usageevent/").status_code == 200


def test_the_dashboard_form_opens_a_subscription_chart_by_its_external_id(admin_client, world, other_world):
    from django.urls import reverse

    mine = world.subscription("sub-one")
    find = reverse("admin:usage_chart_find")
    assert f'action="{find}"' in admin_client.get(reverse("admin:index")).content.decode()
    response = admin_client.get(find, {"subscription": " sub-one "})
    assert response.status_code == 302 and response["Location"] == reverse("admin:usage_chart", args=[mine.pk])

    theirs = other_world.subscription("sub-one", customer="o1")  # the same id in another service: a choice
    choice = admin_client.get(find, {"subscription": "sub-one"})
    assert choice.status_code == 200
    assert [sub.pk for sub in choice.context["found"]] == [mine.pk, theirs.pk]  # by service code: nexacloud, nexadesk
    text = choice.content.decode()
    assert reverse("admin:usage_chart", args=[mine.pk]) in text and reverse("admin:usage_chart", args=[theirs.pk]) in text

    missing = admin_client.get(find, {"subscription": "nope"}, follow=True)
    assert missing.redirect_chain[-1][0] == reverse("admin:index")
    assert "No subscription has the external id &#x27;nope&#x27;." in missing.content.decode()


def test_the_archive_list_shows_archived_and_skipped_months_read_only(admin_client):
    from datetime import date

    from django.urls import reverse

    from apps.usage.models import UsageArchive

    UsageArchive.objects.create(month=date(2025, 1, 1), status="archived", rows=1234, path="/srv/a.csv.gz",
                                sha256="ab" * 32, archived_at=datetime(2026, 2, 3, tzinfo=timezone.utc))
    UsageArchive.objects.create(month=date(2025, 2, 1), status="skipped",
                                last_error="2025-02 still holds 3 late rows not yet billed")

    text = admin_client.get(reverse("admin:usage_usagearchive_changelist")).content.decode()

    assert "1234" in text and "/srv/a.csv.gz" in text and "abababababab" in text
    assert "2025-02 still holds 3 late rows not yet billed" in text
    assert admin_client.get(reverse("admin:usage_usagearchive_add")).status_code == 403

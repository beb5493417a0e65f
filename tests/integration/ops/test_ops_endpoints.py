"""Liveness, readiness and Prometheus metrics (apps/ops, issue 22)."""
from __future__ import annotations

import re
import time
import uuid
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.customers.services import service_create
from apps.ledger.models import LedgerPosting
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.integration.ledger.builders import customer_make, invoice_make

TOKEN = "metrics-token-for-tests"


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    assert found, f"{name} {labels} not in /metrics:\n{text[-3000:]}"
    return float(found.group(1))


def _scrape(client: Client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def test_healthz_answers_without_the_database(client):
    # No django_db mark: any database access in the request would raise.
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_with_the_database_migrated_and_no_broker(client, settings):
    settings.CELERY_BROKER_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()


@pytest.mark.django_db
def test_readyz_unavailable_when_the_broker_cannot_be_reached(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    from nexabilling.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = None
    assert response.status_code == 503
    assert [problem.split(":")[0] for problem in response.json()["problems"]] == ["broker"]


@pytest.mark.django_db
def test_readyz_unavailable_with_unapplied_migrations(client, monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    from apps.ops import views

    monkeypatch.setattr(views, "_migrated", False)
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("a migration", False)])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["problems"] == ["database has unapplied migrations"]


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}x"])
def test_metrics_hidden_without_the_token(client, metrics_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    assert client.get("/metrics", **extra).status_code == 404


@pytest.mark.django_db
def test_metrics_hidden_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_metrics_show_backlogs_failures_and_lag(client, metrics_on):
    service = service_create(code="nexacloud", name="NexaCloud").service
    endpoint = WebhookEndpoint.objects.create(service=service, webhook_url="https://hooks.example.com/nexa")
    now = timezone.now()
    for index, (status, due) in enumerate([("pending", now - timedelta(seconds=120)),
                                           ("retrying", now + timedelta(hours=1)),  # waiting: not late
                                           ("failed", None), ("succeeded", None)]):
        event = WebhookEvent.objects.create(service=service, event_id=uuid.uuid4(), event_type="invoice.created",
                                            object_type="invoice", body=b"{}")
        WebhookDelivery.objects.create(event=event, endpoint=endpoint, status=status, next_attempt_at=due)
    invoice = invoice_make(service=service, customer=customer_make(), fees_cents=[1000])
    LedgerPosting.objects.create(kind="invoice", ref=f"hub-{invoice.pk}", invoice=invoice, status="failed")

    from apps.usage.models import UsageArchive

    UsageArchive.objects.create(month=date(2025, 1, 1), status="archived", rows=10)
    UsageArchive.objects.create(month=date(2025, 2, 1), status="archived", rows=12)
    UsageArchive.objects.create(month=date(2025, 3, 1), status="skipped", last_error="2025-03 still holds …")

    text = _scrape(client)
    assert _metric(text, "nexabilling_usage_archive_months", 'status="archived"') == 2
    assert _metric(text, "nexabilling_usage_archive_months", 'status="skipped"') == 1
    assert _metric(text, "nexabilling_usage_archive_months", 'status="exported"') == 0
    assert _metric(text, "nexabilling_webhook_deliveries", 'status="pending"') == 1
    assert _metric(text, "nexabilling_webhook_deliveries", 'status="failed"') == 1
    assert 120 <= _metric(text, "nexabilling_webhook_deliveries_lag_seconds") < 3600
    assert _metric(text, "nexabilling_ledger_postings", 'status="failed"') == 1
    assert _metric(text, "nexabilling_ledger_postings_lag_seconds") == 0
    assert _metric(text, "nexabilling_close_running") == 0
    assert _metric(text, "nexabilling_beat_leaders") == 0
    # django-prometheus' own request metrics are on the same page.
    assert "django_http_requests_total_by_view_transport_method_total" in text


@pytest.mark.django_db(transaction=True)
def test_usage_rows_inserted_counts_what_ingestion_writes(client, metrics_on):
    """The ingestion rate's counter follows PostgreSQL's statistics, which a backend reports within a second or
    so of its commit: polled, bounded."""
    from rest_framework.test import APIClient

    issued = service_create(code="nexamaps", name="NexaMaps")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert api.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").status_code == 200
    assert api.post("/api/v1/plans", {"plan": {"code": "p", "name": "p", "interval": "monthly", "amount_cents": 0,
                                               "amount_currency": "CAD"}}, format="json").status_code == 200
    assert api.post("/api/v1/subscriptions", {"subscription": {"external_customer_id": "c1", "plan_code": "p",
                                                               "external_id": "s1"}}, format="json").status_code == 200
    before = _metric(_scrape(client), "nexabilling_usage_rows_inserted_total")
    events = [{"transaction_id": f"t{i}", "external_subscription_id": "s1", "code": "calls"} for i in range(25)]
    assert api.post("/api/v1/events/batch", {"events": events}, format="json").status_code == 200
    deadline = time.monotonic() + 30
    while True:
        connection.close()  # a backend flushes its statistics on exit at the latest
        after = _metric(_scrape(client), "nexabilling_usage_rows_inserted_total")
        if after >= before + 25 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert after == before + 25


@pytest.mark.django_db
def test_beat_leaders_counts_the_session_holding_the_beat_lock(client, metrics_on):
    import psycopg

    from apps.core.beat import BEAT_LOCK_KEY, _lock_connection_params

    with psycopg.connect(**_lock_connection_params(), autocommit=True) as beat:
        assert beat.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY]).fetchone()[0]
        assert _metric(_scrape(client), "nexabilling_beat_leaders") == 1
    assert _metric(_scrape(client), "nexabilling_beat_leaders") == 0

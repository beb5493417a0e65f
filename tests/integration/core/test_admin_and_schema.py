from __future__ import annotations

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_every_admin_changelist_and_add_page_renders(admin_client):
    call_command("seed_demo", stdout=StringIO())
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        if opts.app_label not in {"customers", "catalog", "subscriptions", "usage", "invoicing", "payments", "ledger", "webhooks", "audit"}:
            continue
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
        first = model.objects.first()
        if first is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            assert admin_client.get(change).status_code == 200, change


def test_admin_creates_a_service_and_shows_its_key_once(admin_client):
    from apps.customers.models import Service

    response = admin_client.post(
        reverse("admin:customers_service_add"), {"code": "staffmade", "name": "Staff Made", "active": "on"}, follow=True
    )
    assert response.status_code == 200
    service = Service.objects.get(code="staffmade")
    shown = [str(m) for m in response.context["messages"]]
    assert any("nexa_" in m for m in shown)
    assert service.api_key_prefix and len(service.api_key_hash) == 64


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/customers" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_models_and_migrations_agree():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()

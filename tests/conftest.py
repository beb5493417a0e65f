"""Test harness: real PostgreSQL (DATABASE_URL, else the embedded server), live servers on 127.0.0.1."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    from django.conf import settings

    # dj-stripe's own migrations take ~40-60 s of CPU to plan and apply (research/stripe.md §c);
    # tests build its tables from one generated initial migration instead. Our apps keep their
    # real migrations; tests/integration/core/test_migrations.py checks models and migrations agree.
    settings.MIGRATION_MODULES = {"djstripe": "tests.djstripe_migrations"}


@pytest.fixture
def service_factory(db):
    from apps.customers.services import service_create

    counter = iter(range(1, 10_000))

    def make(code: str | None = None, name: str | None = None):
        code = code or f"svc{next(counter)}"
        issued = service_create(code=code, name=name or code.title())
        return issued

    return make


@pytest.fixture
def api_client_for():
    from rest_framework.test import APIClient

    def make(raw_key: str):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make

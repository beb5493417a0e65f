"""Test harness: real PostgreSQL (DATABASE_URL, else the embedded server), live servers on 127.0.0.1."""
from __future__ import annotations

import pytest
from hypothesis import settings as hypothesis_settings


def pytest_configure(config):
    from django.conf import settings

    # dj-stripe's own migrations take ~40-60 s of CPU to plan and apply (research/stripe.md §c);
    # tests build its tables from one generated initial migration instead. Our apps keep their
    # real migrations; tests/integration/core/test_migrations.py checks models and migrations agree.
    settings.MIGRATION_MODULES = {"djstripe": "tests.djstripe_migrations"}

    from django.db.models.signals import post_migrate

    post_migrate.connect(_taxes_reseed, dispatch_uid="tests-taxes-reseed")


def _taxes_reseed(sender, app_config=None, using="default", **kwargs):
    """Put back the tax rows catalog migrations 0002-0003 seed, after a transactional test's flush emptied them.

    Billing reads its sales taxes from the database; a `transaction=True` test ends with a flush of every table
    (Django emits post_migrate after it), and the tests after it would otherwise bill untaxed.
    """
    if app_config is None or app_config.label != "catalog":
        return
    from importlib import import_module

    from django.apps import apps as global_apps

    if global_apps.get_model("catalog", "Tax").objects.using(using).filter(service__isnull=True).exists():
        return
    seed = import_module("apps.catalog.migrations.0002_canadian_sales_taxes")
    dated = import_module("apps.catalog.migrations.0003_tax_schedule")
    seed.create_taxes(global_apps, None)
    dated.date_taxes(global_apps, None)


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


# Hypothesis: `pytest --hypothesis-profile=long` runs the stateful billing test
# (tests/integration/test_billing_state_machine.py) for much longer than its bounded default, randomized.
# Tests that pin their own settings (every other property test) keep them under any profile.
hypothesis_settings.register_profile("long", max_examples=300, stateful_step_count=60, deadline=None)

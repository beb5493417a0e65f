from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.catalog.models import BillableMetric, Charge, Plan
from apps.customers.models import AccountLink, Customer, Service
from apps.subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def test_create_service_prints_key_alone_on_last_line():
    out = StringIO()
    call_command("create_service", "nexaapps", "--name", "Nexa Apps", stdout=out, stderr=StringIO())
    key = out.getvalue().strip().splitlines()[-1]
    service = Service.objects.get(code="nexaapps")
    assert service.api_key_hash == hashlib.sha256(key.encode()).hexdigest()
    with pytest.raises(CommandError):
        call_command("create_service", "nexaapps", "--name", "Again", stdout=StringIO(), stderr=StringIO())


def test_rotate_service_key_replaces_the_hash():
    call_command("create_service", "svc", "--name", "Svc", stdout=StringIO(), stderr=StringIO())
    before = Service.objects.get(code="svc").api_key_hash
    out = StringIO()
    call_command("rotate_service_key", "svc", stdout=out, stderr=StringIO())
    key = out.getvalue().strip().splitlines()[-1]
    after = Service.objects.get(code="svc").api_key_hash
    assert after != before
    assert after == hashlib.sha256(key.encode()).hexdigest()


def test_seed_demo_is_idempotent_and_realistic():
    first = StringIO()
    call_command("seed_demo", stdout=first)
    counts = [m.objects.count() for m in (Service, Customer, AccountLink, BillableMetric, Plan, Charge, Subscription)]
    assert first.getvalue().count("API key for") == 3
    second = StringIO()
    call_command("seed_demo", stdout=second)
    assert [m.objects.count() for m in (Service, Customer, AccountLink, BillableMetric, Plan, Charge, Subscription)] == counts
    assert "API key for" not in second.getvalue()
    assert set(Customer.objects.values_list("state", flat=True)) >= {"ON", "QC"}
    assert set(Subscription.objects.values_list("billing_time", flat=True)) == {"calendar", "anniversary"}
    assert set(Charge.objects.values_list("charge_model", flat=True)) >= {"graduated", "package", "volume"}
    acme = Customer.objects.get(legal_name="Acme Robotics Inc.")
    assert acme.account_links.count() == 2  # one billing customer behind two services
    from apps.invoicing.models import Fee, Invoice
    from apps.usage.models import UsageEvent

    # Past periods are billed from the seeded usage, and a rerun bills nothing more.
    assert UsageEvent.objects.count() > 100
    assert Invoice.objects.filter(status="finalized").exists()
    assert Fee.objects.filter(fee_type="charge", amount_cents__gt=0).exists()
    billed = (Invoice.objects.count(), Fee.objects.count(), UsageEvent.objects.count())
    call_command("seed_demo", stdout=StringIO())
    assert (Invoice.objects.count(), Fee.objects.count(), UsageEvent.objects.count()) == billed

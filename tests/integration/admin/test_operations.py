"""Operations from the admin (issue 18): a period close as of a date, for every customer or one, with a progress
page; refused to accountants and for a date in the future."""
from __future__ import annotations

from io import StringIO

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse

from apps.invoicing.models import CloseRun, Invoice
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


def _run(client, day: str, customer: str = "", reason: str = "April close, rerun after the outage"):
    return client.post(reverse("admin:invoicing_closerun_run"), {
        "as_of_0": day, "as_of_1": "01:00", "customer": customer, "reason": reason})


def test_a_close_for_everyone_runs_as_of_a_date_and_shows_its_progress(
    admin_client, billing, settings, django_capture_on_commit_callbacks
):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("acme")
    billing.customer("beta")
    plan = billing.plan(amount_cents=10000)
    billing.subscribe("s1", plan, customer="acme", when=at(2026, 3, 1, 0, 0))
    billing.subscribe("s2", plan, customer="beta", when=at(2026, 3, 1, 0, 0))
    with time_machine.travel(at(2026, 4, 2, 9, 0), tick=False):
        assert "not later than now" in _run(admin_client, "2026-04-03").content.decode() or \
            "choose now or earlier" in _run(admin_client, "2026-04-03").content.decode()
        assert not CloseRun.objects.exists()
        with django_capture_on_commit_callbacks(execute=True):
            response = _run(admin_client, "2026-04-01")
        assert response.status_code == 302 and "/progress/?since=" in response["Location"]
        progress = admin_client.get(response["Location"]).content.decode()
    run = CloseRun.objects.get()
    assert run.status == "succeeded" and run.customers_count == 2
    assert "2 of 2 customer(s) closed" in progress and 'data-running="false"' in progress
    assert Invoice.objects.filter(status="finalized").count() == 2


def test_a_close_for_one_customer_bills_only_that_customer(admin_client, billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    acme = billing.customer("acme")
    billing.customer("beta")
    plan = billing.plan(amount_cents=10000)
    billing.subscribe("s1", plan, customer="acme", when=at(2026, 3, 1, 0, 0))
    billing.subscribe("s2", plan, customer="beta", when=at(2026, 3, 1, 0, 0))
    with time_machine.travel(at(2026, 4, 2, 9, 0), tick=False):
        response = _run(admin_client, "2026-04-01", customer=acme.customer.external_id)
    assert response.status_code == 302
    assert list(Invoice.objects.values_list("customer_id", flat=True)) == [acme.customer_id]


def test_accountants_may_not_run_a_close(client, billing):
    call_command("staff_groups", stdout=StringIO())
    user = User.objects.create_user("acct", password="pw-acct-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="Accountants"))
    client.force_login(user)
    assert client.get(reverse("admin:invoicing_closerun_run")).status_code == 403
    assert _run(client, "2026-04-01").status_code == 403
    assert not CloseRun.objects.exists()

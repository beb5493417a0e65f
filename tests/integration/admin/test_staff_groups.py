"""Staff groups (issue 18, fourth slice): each group is refused, not just not shown, what it may not do."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apps.catalog.models import Plan
from apps.customers.models import Service

pytestmark = pytest.mark.django_db

VOID = {"action": "void", "apply": "1", "reason": "customer was billed twice"}


@pytest.fixture
def staff():
    call_command("staff_groups", stdout=StringIO())

    def login(group: str | None) -> Client:
        user = User.objects.create_user(f"u-{group or 'none'}".replace(" ", "-"), password="pw-staff-12345",
                                        is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client

    return login


def _plan_change(client, plan):
    return client.post(reverse("admin:catalog_plan_change", args=[plan.pk]), {
        "code": plan.code, "name": "Renamed", "description": "", "invoice_display_name": "", "interval": "monthly",
        "amount": "1.00", "amount_currency": "CAD", "trial_period": "0",
        "charges-TOTAL_FORMS": "0", "charges-INITIAL_FORMS": "0"})


def test_accountants_read_everything_and_change_nothing(staff, finalized, billing):
    accountant = staff("Accountants")
    assert accountant.get(reverse("admin:invoicing_invoice_changelist")).status_code == 200
    assert accountant.get(reverse("admin:invoicing_invoice_change", args=[finalized.pk])).status_code == 200
    assert accountant.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    listing = accountant.get(reverse("admin:invoicing_invoice_changelist")).content.decode()
    assert 'value="void"' not in listing and 'value="download_pdf"' in listing  # PDFs yes, voids no

    accountant.post(reverse("admin:invoicing_invoice_changelist"), {**VOID, "_selected_action": [finalized.pk]})
    finalized.refresh_from_db()
    assert finalized.status == "finalized"  # refused, not merely hidden
    assert accountant.get(reverse("admin:subscriptions_subscription_add")).status_code == 403
    assert accountant.post(reverse("admin:customers_customer_add"), {}).status_code == 403
    plan = Plan.objects.get()
    assert _plan_change(accountant, plan).status_code == 403
    assert accountant.get(reverse("admin:auth_user_changelist")).status_code == 403


def test_billing_operators_run_billing_but_change_no_catalog_key_or_staff(staff, finalized, billing):
    operator = staff("Billing operators")
    response = operator.post(reverse("admin:invoicing_invoice_changelist"), {**VOID, "_selected_action": [finalized.pk]})
    assert response.status_code == 302
    finalized.refresh_from_db()
    assert finalized.status == "voided"

    plan = Plan.objects.get()
    assert _plan_change(operator, plan).status_code == 403
    assert Plan.objects.get().name != "Renamed"
    prefix = billing.service.api_key_prefix
    operator.post(reverse("admin:customers_service_changelist"), {
        "action": "rotate_key", "_selected_action": [billing.service.pk], "apply": "1", "reason": "try it"})
    assert Service.objects.get(pk=billing.service.pk).api_key_prefix == prefix
    assert operator.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert operator.get(reverse("admin:djstripe_customer_changelist")).status_code == 403


def test_billing_admins_change_the_catalog_and_staff_without_group_see_nothing(staff, finalized, billing):
    admins = staff("Billing admins")
    plan = Plan.objects.get()
    assert _plan_change(admins, plan).status_code == 302
    assert Plan.objects.get().name == "Renamed"
    assert admins.get(reverse("admin:auth_user_changelist")).status_code == 200
    assert admins.get(reverse("admin:djstripe_customer_changelist")).status_code == 403  # superusers only

    nobody = staff(None)
    assert nobody.get(reverse("admin:invoicing_invoice_changelist")).status_code == 403
    assert nobody.get(reverse("admin:audit_auditevent_changelist")).status_code == 403
    assert nobody.get(reverse("admin:usage_summary")).status_code == 403
    assert nobody.get(reverse("admin:usage_chart_find"), {"subscription": "s1"}).status_code == 403

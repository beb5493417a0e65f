"""The admin's frame (issue 18, first slice): unfold with Nexa's name, money as `$113.00 CAD` on every page that
shows an amount, no Save or Delete on what cannot change, close runs never deleted or made by hand, and dj-stripe's
mirror for superusers only."""
from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from apps.invoicing.models import CloseRun, CloseRunCustomer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_with_every_hub_permission(client):
    """Staff holding every permission there is, but not a superuser."""
    user = User.objects.create_user("operator", password="pw-operator-1", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    client.force_login(user)
    return client


def test_the_admin_is_nexa_billing_on_unfold(admin_client):
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    assert b"Nexa Billing" in page.content
    assert b"/static/unfold/" in page.content  # the theme's own assets, served locally


def test_invoice_pages_show_money_in_currency_units_never_raw_cents(admin_client, finalized):
    listing = admin_client.get(reverse("admin:invoicing_invoice_changelist"))
    assert "$113.00 CAD" in listing.content.decode()
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[finalized.pk])).content.decode()
    assert "$113.00 CAD" in page and "$100.00 CAD" in page and "$13.00 CAD" in page
    assert not re.search(r">\s*11300\s*<", page)  # the total never shows as cents
    customer = admin_client.get(reverse("admin:customers_customer_change", args=[finalized.customer_id]))
    assert "$113.00 CAD" in customer.content.decode()


def test_every_registered_money_column_is_shown_as_money():
    """No admin lists an integer-cents field as a bare number: each becomes its money column."""
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    raw = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label == "djstripe":
            continue
        for name in model_admin.get_list_display(request):
            if isinstance(name, str) and name.endswith("_cents"):
                raw.append(f"{model.__name__}.{name}")
    assert raw == []


def test_read_only_pages_offer_no_save_and_no_delete(admin_client, finalized):
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[finalized.pk])).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert reverse("admin:invoicing_invoice_delete", args=[finalized.pk]) not in page
    assert admin_client.post(reverse("admin:invoicing_invoice_change", args=[finalized.pk]), {}).status_code == 403
    assert admin_client.post(reverse("admin:invoicing_invoice_delete", args=[finalized.pk]),
                             {"post": "yes"}).status_code == 403


def test_close_runs_are_never_deleted_or_made_by_hand(admin_client, finalized):
    run = CloseRun.objects.get()
    assert admin_client.get(reverse("admin:invoicing_closeruncustomer_add")).status_code == 403  # was a 500
    assert admin_client.get(reverse("admin:invoicing_closerun_add")).status_code == 403
    assert admin_client.post(reverse("admin:invoicing_closerun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    page = admin_client.get(reverse("admin:invoicing_closerun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in page
    line = CloseRunCustomer.objects.first()
    assert admin_client.post(reverse("admin:invoicing_closeruncustomer_delete", args=[line.pk]),
                             {"post": "yes"}).status_code == 403
    listing = admin_client.post(reverse("admin:invoicing_closerun_changelist"),
                                {"action": "delete_selected", "_selected_action": [run.pk], "post": "yes"})
    assert CloseRun.objects.filter(pk=run.pk).exists(), listing.status_code


def test_the_stripe_mirror_is_one_section_for_superusers_only(admin_client, staff_with_every_hub_permission):
    mine = admin_client.get("/admin/").content.decode()
    assert "Stripe mirror" in mine
    staff_index = staff_with_every_hub_permission.get("/admin/").content.decode()
    assert "Stripe mirror" not in staff_index and "/admin/djstripe/" not in staff_index
    for model, _ in admin.site._registry.items():
        if model._meta.app_label == "djstripe":
            url = reverse(f"admin:djstripe_{model._meta.model_name}_changelist")
            assert staff_with_every_hub_permission.get(url).status_code == 403, url
    assert staff_with_every_hub_permission.get("/admin/djstripe/").status_code in (403, 404)
    assert admin_client.get(reverse("admin:djstripe_customer_changelist")).status_code == 200

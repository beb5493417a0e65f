"""Admin writes go through the domain services with the API's validation (issue 18, second slice): a subscription
added in the admin starts, tells the service and is billed when due; a plan change follows upgrade/downgrade rules
and refuses another service's plan; charge properties are edited per charge model and bad ones refused with the
API's codes; customers are made by the API's upsert."""
from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse

from apps.catalog.models import Charge
from apps.customers.models import AccountLink, Customer
from apps.invoicing.models import Invoice
from apps.subscriptions.models import Subscription
from apps.webhooks.models import WebhookEvent
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


def _errors(response) -> str:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    form = response.context["adminform"].form
    return repr(form.errors)


def _subscribe(admin_client, link, plan, external_id="s-admin", **extra):
    return admin_client.post(reverse("admin:subscriptions_subscription_add"), {
        "account_link": link.pk, "plan": plan.pk, "external_id": external_id, "name": "", "billing_time": "calendar",
        "subscription_at_0": "", "subscription_at_1": "", "ending_at_0": "", "ending_at_1": "", **extra,
    })


def test_a_subscription_added_in_the_admin_starts_tells_the_service_and_is_billed_when_due(
    admin_client, billing, settings, django_capture_on_commit_callbacks
):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer("acme")
    plan = billing.plan("adv", amount_cents=3100, pay_in_advance=True)
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        response = _subscribe(admin_client, link, plan)
    assert response.status_code == 302, _errors(response)
    subscription = Subscription.objects.get(external_id="s-admin")
    assert (subscription.status, subscription.service_id, subscription.customer_id) == (
        "active", billing.service.pk, link.customer_id)
    assert WebhookEvent.objects.filter(event_type="subscription.started", object_id=str(subscription.lago_id)).exists()
    [invoice] = Invoice.objects.filter(customer=link.customer)  # pay in advance: billed as it starts
    assert invoice.status == "finalized" and invoice.fees.get().amount_cents == 3100


def test_the_admin_refuses_another_services_plan_on_create_and_on_change(admin_client, billing, other_service_plan):
    link = billing.customer("acme")
    response = _subscribe(admin_client, link, other_service_plan)
    assert "another service" in _errors(response)
    assert not Subscription.objects.exists()

    own = billing.plan("basic", amount_cents=1000)
    assert _subscribe(admin_client, link, own).status_code == 302
    subscription = Subscription.objects.get()
    change = admin_client.post(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
                               {"plan": other_service_plan.pk, "name": "", "ending_at_0": "", "ending_at_1": ""})
    assert "plan" in _errors(change)
    subscription.refresh_from_db()
    assert subscription.plan_id == own.pk and Subscription.objects.count() == 1


def test_a_plan_change_in_the_admin_upgrades_at_once_and_downgrades_at_period_end(admin_client, billing):
    link = billing.customer("acme")
    basic, pro, mini = (billing.plan("basic", amount_cents=1000), billing.plan("pro", amount_cents=5000),
                        billing.plan("mini", amount_cents=500))
    _subscribe(admin_client, link, basic)
    first = Subscription.objects.get()
    url = reverse("admin:subscriptions_subscription_change", args=[first.pk])
    assert admin_client.post(url, {"plan": pro.pk, "name": "", "ending_at_0": "", "ending_at_1": ""}).status_code == 302
    first.refresh_from_db()
    upgraded = Subscription.objects.get(status="active")
    assert first.status == "terminated" and upgraded.plan_id == pro.pk and upgraded.previous_subscription_id == first.pk

    url = reverse("admin:subscriptions_subscription_change", args=[upgraded.pk])
    assert admin_client.post(url, {"plan": mini.pk, "name": "", "ending_at_0": "", "ending_at_1": ""}).status_code == 302
    upgraded.refresh_from_db()
    pending = Subscription.objects.get(status="pending")
    assert upgraded.status == "active" and upgraded.plan_id == pro.pk  # the cheaper plan waits for the period end
    assert pending.plan_id == mini.pk and pending.activates_at is not None


def _charge_form(plan, metric, model, **fields):
    data = {"plan": plan.pk, "billable_metric": metric.pk, "code": "", "invoice_display_name": "",
            "charge_model": model, "invoiceable": "on", "min_amount": ""}
    data.update(fields)
    return data


def test_bad_charge_properties_are_refused_with_the_apis_codes_and_nothing_is_written(admin_client, billing):
    plan, metric = billing.plan("pro"), billing.metric()
    response = admin_client.post(reverse("admin:catalog_charge_add"),
                                 _charge_form(plan, metric, "standard", standard_amount="twenty-nine"))
    assert "invalid_amount" in _errors(response)
    response = admin_client.post(reverse("admin:catalog_charge_add"), _charge_form(plan, metric, "package",
                                 package_amount="2.50", package_size="0"))
    assert "invalid_package_size" in _errors(response)
    response = admin_client.post(reverse("admin:catalog_charge_add"), _charge_form(plan, metric, "graduated"))
    assert "graduated_ranges" in _errors(response)
    assert not Charge.objects.exists()


def test_graduated_tiers_are_rows_and_the_page_previews_the_price(admin_client, billing):
    plan, metric = billing.plan("pro"), billing.metric()
    tiers = {"tier_0_from_value": "0", "tier_0_to_value": "100", "tier_0_per_unit_amount": "0.12",
             "tier_1_from_value": "101", "tier_1_to_value": "", "tier_1_per_unit_amount": "0.09",
             "tier_1_flat_amount": "5"}
    response = admin_client.post(reverse("admin:catalog_charge_add"), _charge_form(plan, metric, "graduated", **tiers))
    assert response.status_code == 302, _errors(response)
    charge = Charge.objects.get()
    assert charge.properties == {"graduated_ranges": [
        {"from_value": 0, "to_value": 100, "per_unit_amount": "0.12", "flat_amount": "0"},
        {"from_value": 101, "to_value": None, "per_unit_amount": "0.09", "flat_amount": "5"},
    ]}
    page = admin_client.get(reverse("admin:catalog_charge_change", args=[charge.pk])).content.decode()
    # 1,000 units: 100 × 0.12 + 900 × 0.09 + 5 = 98.00
    assert "$98.00 CAD" in page and "$0.12 CAD" in page
    assert 'name="properties"' not in page  # never raw JSON


def test_a_customer_added_in_the_admin_is_the_apis_upsert(admin_client, billing):
    response = admin_client.post(reverse("admin:customers_customer_add"), {
        "service": billing.service.pk, "service_external_id": "cust-9", "name": "Nine", "legal_name": "Nine Inc.",
        "email": "ap@nine.example", "country": "CA", "state": "ON", "currency": "CAD", "net_payment_term": "0",
        "metadata": "[]", "customer_type": "",
    })
    assert response.status_code == 302, _errors(response)
    link = AccountLink.objects.get(service=billing.service, external_id="cust-9")
    assert link.customer.external_id == "nexacloud:cust-9" and link.customer.legal_name == "Nine Inc."
    again = admin_client.post(reverse("admin:customers_customer_add"), {
        "service": billing.service.pk, "service_external_id": "cust-9", "name": "Dup", "net_payment_term": "0",
        "metadata": "[]", "customer_type": "",
    })
    assert "value_already_exist" in _errors(again)
    assert Customer.objects.filter(external_id__startswith="nexacloud:cust-9").count() == 1


def test_a_webhook_endpoint_edited_in_the_admin_meets_the_destination_rule(admin_client, billing, settings):
    from apps.webhooks.models import WebhookEndpoint

    settings.WEBHOOK_ALLOWED_HOSTS = []
    endpoint = WebhookEndpoint.objects.create(service=billing.service, webhook_url="https://hooks.example.com/x")
    change = reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    form = admin_client.get(change).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "webhook_url"}
    data.update({"webhook_url": "http://127.0.0.1:9/hook", "service": billing.service.pk})
    response = admin_client.post(change, data)
    assert response.status_code == 200 and "url_not_allowed" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.webhook_url == "https://hooks.example.com/x"


def test_the_organization_edited_in_the_admin_goes_through_its_service_audited(admin_client):
    from apps.audit.models import OrganizationEvent
    from apps.customers.models import Organization

    organization = Organization.objects.get()
    change = reverse("admin:customers_organization_change", args=[organization.pk])
    form = admin_client.get(change).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["invoice_footer"] = "Questions? billing@nexa.example"
    response = admin_client.post(change, data)
    assert response.status_code == 302, _errors(response)
    organization.refresh_from_db()
    assert organization.invoice_footer == "Questions? billing@nexa.example"
    changed = OrganizationEvent.objects.select_related("pgh_context").get(pgh_label="changed")
    assert changed.pgh_context.metadata["user"] is not None
    assert admin_client.get(reverse("admin:customers_organization_add")).status_code == 403

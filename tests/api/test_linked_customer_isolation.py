"""A customer linked across services gets one invoice; each service sees only its own identifiers (issue 16)."""
from __future__ import annotations

import json

import pytest

from apps.customers.models import AccountLink
from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.invoicing.representations import invoice_out
from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db


def _identifiers(billing: Billing, plan, subscription, charge) -> list[str]:
    return [plan.code, str(plan.lago_id), subscription.external_id, str(subscription.lago_id), str(charge.lago_id),
            charge.billable_metric.code, str(charge.billable_metric.lago_id), billing.service.code, billing.service.name]


def test_an_invoice_billing_two_services_shows_each_only_its_own_lines(cloud, desk, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    cloud_billing, desk_billing = Billing(cloud.service), Billing(desk.service)
    cloud_metric, desk_metric = cloud_billing.metric("cloud-gb"), desk_billing.metric("desk-seats")
    cloud_plan = cloud_billing.plan("cloud-pro", amount_cents=1000, charges=[(cloud_metric, "standard", {"amount": "1"}, {})])
    desk_plan = desk_billing.plan("desk-team", amount_cents=2000, charges=[(desk_metric, "standard", {"amount": "1"}, {})])
    cloud_link = cloud_billing.customer("acme")
    desk_link = desk_billing.customer("acme-desk")
    AccountLink.objects.filter(pk=desk_link.pk).update(customer=cloud_link.customer)  # one billing customer
    cloud_sub = cloud_billing.subscribe("cloud-s1", cloud_plan, customer="acme", when=at(2026, 3, 1, 0, 0))
    desk_sub = desk_billing.subscribe("desk-s1", desk_plan, customer="acme-desk", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert set(invoice.fees.values_list("service_id", flat=True)) == {cloud.service.pk, desk.service.pk}

    views = {}
    for client, own, other in ((cloud, (cloud_billing, cloud_plan, cloud_sub), (desk_billing, desk_plan, desk_sub)),
                               (desk, (desk_billing, desk_plan, desk_sub), (cloud_billing, cloud_plan, cloud_sub))):
        body = client.get(f"/api/v1/invoices/{invoice.lago_id}").json()["invoice"]
        views[client.service.code] = body
        text = json.dumps(body)
        for identifier in _identifiers(other[0], other[1], other[2], other[1].charges.get()):
            assert identifier not in text, (client.service.code, identifier)
        mine = [fee for fee in body["fees"] if fee["item"]["code"] != "other_services"]
        assert {fee["external_subscription_id"] for fee in mine} == {own[2].external_id}
        assert [row["external_subscription_id"] for row in body["billing_periods"]] == [own[2].external_id]
        # Totals still add up: the other service's lines are there, without their identifiers.
        assert sum(fee["amount_cents"] for fee in body["fees"]) == body["fees_amount_cents"] == 3000
        assert invoice_out(invoice, service=client.service) == body  # webhooks render with the same function

    other_lines = [fee for fee in views["nexacloud"]["fees"] if fee["item"]["code"] == "other_services"]
    assert len(other_lines) == 2 and {fee["item"]["name"] for fee in other_lines} == {"Other services"}

    fee = Fee.objects.get(subscription=desk_sub, fee_type="subscription")
    note = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=500)])
    cloud_note = cloud.get(f"/api/v1/credit_notes/{note.lago_id}").json()["credit_note"]
    assert desk_sub.external_id not in json.dumps(cloud_note) and desk_plan.code not in json.dumps(cloud_note)

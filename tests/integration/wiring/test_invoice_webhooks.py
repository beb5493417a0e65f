"""Invoicing's outbound webhooks: drafted, created (finalized), voided, credit_note.created, each only to the
services whose lines the invoice bills, in that service's view of the customer; payments' invoice events too."""
from __future__ import annotations

import pytest
from django.db import transaction

from apps.invoicing.close import invoices_finalize_due, periods_close
from apps.invoicing.models import Invoice
from apps.invoicing.selectors import invoice_service_ids
from apps.invoicing.services import (
    CreditNoteItemIn,
    credit_note_create,
    invoice_void,
)
from apps.payments import events as payment_events
from apps.webhooks.models import WebhookDelivery

from tests.integration.invoicing.conftest import at

from .conftest import events, listen, share_customer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["one_by_one", "batched"])
def close_path(request, settings):
    """Every test through both close paths: customer by customer, and batches, which insert the invoices they
    finalize at once already numbered (the events must read them as the API renders them either way)."""
    settings.INVOICE_CLOSE_BATCH_MIN = 10_000 if request.param == "one_by_one" else 1
    return request.param


def test_draft_then_finalize_then_void_send_drafted_created_voided_once(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    endpoint = listen(billing.service)
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))

    periods_close(as_of=at(2026, 4, 1, 1, 0))
    periods_close(as_of=at(2026, 4, 1, 2, 0))  # rerun: nothing billed, nothing announced again
    invoice = Invoice.objects.get()
    [drafted] = events(billing.service, "invoice.drafted")
    assert drafted["object_type"] == "invoice"
    assert drafted["invoice"]["lago_id"] == str(invoice.lago_id)
    assert drafted["invoice"]["status"] == "draft" and drafted["invoice"]["number"] == ""
    assert drafted["invoice"]["fees_amount_cents"] == 10000  # rendered after the lines were written
    assert drafted["invoice"]["customer"]["external_id"] == "acme"
    assert events(billing.service, "invoice.created") == []

    assert invoices_finalize_due(now=at(2026, 4, 4, 2, 0)) == 1
    invoice.refresh_from_db()
    [created] = events(billing.service, "invoice.created")
    assert created["invoice"]["status"] == "finalized" and created["invoice"]["number"] == invoice.number != ""
    assert created["invoice"]["total_amount_cents"] == invoice.total_amount_cents == 11300  # ON HST 13 %

    invoice_void(invoice_id=invoice.pk)
    invoice_void(invoice_id=invoice.pk)  # idempotent: one event
    [voided] = events(billing.service, "invoice.voided")
    assert voided["invoice"]["status"] == "voided"
    assert [e["webhook_type"] for e in events(billing.service)] == ["invoice.drafted", "invoice.created", "invoice.voided"]
    # Every event got a pending delivery for the endpoint (sent after commit).
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event__object_type="invoice").count() == 3


def test_no_grace_period_sends_only_created_and_credit_note_created(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    listen(billing.service)
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice.status == "finalized"
    assert [e["webhook_type"] for e in events(billing.service)] == ["invoice.created"]

    fee = invoice.fees.get()
    note = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=2500)],
                              reason="order_change")
    [body] = events(billing.service, "credit_note.created")
    assert body["object_type"] == "credit_note"
    assert body["credit_note"]["lago_id"] == str(note.lago_id)
    assert body["credit_note"]["total_amount_cents"] == 2825 == note.total_amount_cents  # 2500 + 13 % HST


def test_a_service_sharing_the_customer_but_not_the_invoice_hears_nothing(billing, other_billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    listen(billing.service)
    listen(other_billing.service)
    link = billing.customer("acme")
    share_customer(link, other_billing.service, "acme-at-mail")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice_service_ids(invoice) == [billing.service.pk]

    with transaction.atomic():  # what payments does when Stripe settles or fails the invoice
        payment_events.invoice_payment_status_updated(invoice)
        payment_events.invoice_payment_failure(invoice, stripe_customer_id="cus_1", error_code="card_declined",
                                               message="declined")
    assert [e["webhook_type"] for e in events(billing.service)] == [
        "invoice.created", "invoice.payment_status_updated", "invoice.payment_failure"]
    assert events(other_billing.service) == []


def test_an_invoice_billing_two_services_reaches_each_with_its_own_customer_view(billing, other_billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    listen(billing.service)
    listen(other_billing.service, event_types=["invoice.payment_status_updated"])  # not invoice.created
    link = billing.customer("acme")
    share_customer(link, other_billing.service, "acme-at-mail")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    other_billing.subscribe("m1", other_billing.plan("mail", amount_cents=500), customer="acme-at-mail",
                            when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice_service_ids(invoice) == sorted([billing.service.pk, other_billing.service.pk])
    assert [e["invoice"]["customer"]["external_id"] for e in events(billing.service, "invoice.created")] == ["acme"]
    assert events(other_billing.service, "invoice.created") == []  # its endpoint does not want it

    with transaction.atomic():
        payment_events.invoice_payment_status_updated(invoice)
    [mine] = events(billing.service, "invoice.payment_status_updated")
    [theirs] = events(other_billing.service, "invoice.payment_status_updated")
    assert mine["invoice"]["customer"]["external_id"] == "acme"
    assert theirs["invoice"]["customer"]["external_id"] == "acme-at-mail"


def test_a_close_announces_each_invoice_as_the_api_renders_it(billing, settings):
    """The close renders all its invoices for `invoice.created` from prefetched rows; each payload is what the
    one-invoice path (the API's `invoice_out`) gives, and the query count does not grow with the invoices."""
    import json

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.invoicing.representations import invoice_out
    from apps.invoicing.services import invoices_webhook_record

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    listen(billing.service)
    metric = billing.metric()
    plan = billing.plan(charges=[(metric, "standard", {"amount": "0.5"}, {})])
    for index in range(6):
        billing.customer(f"c{index}", province=["ON", "QC", "BC"][index % 3])
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1 + index, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 2, 0))

    created = {e["invoice"]["lago_id"]: e["invoice"] for e in events(billing.service, "invoice.created")}
    invoices = list(Invoice.objects.all())
    assert len(created) == len(invoices) == 6
    for invoice in invoices:  # the same JSON as the API's renderer gives, field for field
        expected = json.loads(json.dumps(invoice_out(invoice, service=billing.service), default=str))
        assert created[str(invoice.lago_id)] == expected

    counts = []
    for some in (invoices[:2], invoices):  # the same handful of queries for 2 invoices as for 6
        with CaptureQueriesContext(connection) as queries:
            invoices_webhook_record(invoices=some, event_type="invoice.created")
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 17  # 17: one read of the taxes' ids and descriptions for all the invoices (issue 21)

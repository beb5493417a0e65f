"""Manual payments (POST /payments: cheque, wire), GET /payments, /payments/{id}, /customers/{id}/payments and
/payment_receipts (issue 21): Lago's bodies and errors, through the same money path as Stripe's payments."""
from __future__ import annotations

import threading

import pytest
from django.db import connection
from lago_python_client.client import Client
from lago_python_client.models.payment import Payment as LagoPayment

from apps.audit.models import PaymentEvent
from apps.core.exceptions import ValidationFailed
from apps.integrity.invariants import check_all
from apps.invoicing.models import Invoice
from apps.ledger.models import LedgerPosting
from apps.payments.models import Payment, PaymentReceipt
from apps.payments.services import payment_manual_create
from apps.webhooks.models import WebhookEvent


def _world(service_factory, api_client_for):
    """A one-off invoice of $50.00 + HST 13 % = $56.50, finalized, for NexaCloud's customer acme in Ontario."""
    issued = service_factory("nexacloud", "NexaCloud")
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA", "state": "ON",
                                                "currency": "CAD"}}, format="json")
    api.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 5000,
                                            "amount_currency": "CAD"}}, format="json")
    invoice = api.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "setup"}]}}, format="json").json()["invoice"]
    assert (invoice["status"], invoice["total_amount_cents"]) == ("finalized", 5650)
    return issued, api, invoice["lago_id"]


def _pay(api, invoice_id, amount, reference="CHQ-1001", **extra):
    return api.post("/api/v1/payments", {"payment": {"invoice_id": invoice_id, "amount_cents": amount,
                                                     "reference": reference, **extra}}, format="json")


@pytest.mark.django_db
def test_a_cheque_in_two_parts_pays_the_invoice_through_the_money_path(service_factory, api_client_for):
    _, api, invoice_id = _world(service_factory, api_client_for)
    first = _pay(api, invoice_id, 2000, paid_at="2026-03-02")
    assert first.status_code == 200, first.json()
    body = first.json()["payment"]
    assert {k: body[k] for k in ("invoice_ids", "amount_cents", "amount_currency", "type", "reference", "payment_status",
                                 "payable_type", "external_customer_id", "payment_provider_code")} == {
        "invoice_ids": [invoice_id], "amount_cents": 2000, "amount_currency": "CAD", "type": "manual",
        "reference": "CHQ-1001", "payment_status": "succeeded", "payable_type": "Invoice", "external_customer_id": "acme",
        "payment_provider_code": None}
    invoice = api.get(f"/api/v1/invoices/{invoice_id}").json()["invoice"]
    assert (invoice["total_paid_amount_cents"], invoice["total_due_amount_cents"], invoice["payment_status"]) == (
        2000, 3650, "pending")

    second = _pay(api, invoice_id, 3650, reference="WIRE-77", paid_at="2026-03-05T15:30:00Z").json()["payment"]
    invoice = api.get(f"/api/v1/invoices/{invoice_id}").json()["invoice"]
    assert (invoice["total_paid_amount_cents"], invoice["total_due_amount_cents"], invoice["payment_status"]) == (
        5650, 0, "succeeded")
    row = Invoice.objects.get(lago_id=invoice_id)
    # Odoo gets each payment once, under the hub's id of it; the webhook says "paid" once; both are audited.
    assert sorted(LedgerPosting.objects.filter(kind="payment", invoice=row).values_list("payment_amount_cents", flat=True)) \
        == [2000, 3650]
    assert WebhookEvent.objects.filter(event_type="invoice.payment_status_updated").count() == 1
    assert PaymentEvent.objects.filter(pgh_label="created").count() == 2
    assert list(PaymentReceipt.objects.order_by("payment__paid_at").values_list("number", flat=True)) == [
        "NEXA-RCPT-2026-000001", "NEXA-RCPT-2026-000002"]
    assert Payment.objects.get(lago_id=body["lago_id"]).paid_at.isoformat() == "2026-03-02T00:00:00+00:00"
    assert check_all(customer_ids=[row.customer_id]) == []

    again = _pay(api, invoice_id, 1)  # paid: nothing is owed any more
    assert (again.status_code, again.json()["error_details"]) == (422, {"amount_cents": ["greater_than"]})
    listed = api.get("/api/v1/payments", {"invoice_id": invoice_id}).json()
    assert [p["lago_id"] for p in listed["payments"]] == [second["lago_id"], body["lago_id"]]
    assert listed["meta"]["total_count"] == 2
    assert api.get(f"/api/v1/payments/{body['lago_id']}").json()["payment"]["amount_cents"] == 2000
    assert api.get("/api/v1/customers/acme/payments").json()["meta"]["total_count"] == 2
    assert api.get("/api/v1/payments", {"external_customer_id": "nobody"}).json()["payments"] == []
    receipts_page = api.get("/api/v1/payment_receipts", {"invoice_id": invoice_id}).json()
    assert receipts_page["meta"]["total_count"] == 2
    one = receipts_page["payment_receipts"][0]
    assert api.get(f"/api/v1/payment_receipts/{one['lago_id']}").json()["payment_receipt"]["payment"]["lago_id"] == \
        one["payment"]["lago_id"]


@pytest.mark.django_db
def test_the_same_payment_posted_twice_is_counted_once(service_factory, api_client_for):
    _, api, invoice_id = _world(service_factory, api_client_for)
    assert _pay(api, invoice_id, 5650).status_code == 200
    twice = _pay(api, invoice_id, 5650)
    assert (twice.status_code, twice.json()["error_details"]) == (422, {"amount_cents": ["greater_than"]})
    assert Payment.objects.count() == 1 and PaymentReceipt.objects.count() == 1
    assert Invoice.objects.get(lago_id=invoice_id).total_paid_amount_cents == 5650
    assert LedgerPosting.objects.filter(kind="payment").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_payments_posted_at_once_never_pay_more_than_is_owed(service_factory, api_client_for):
    _, _, invoice_id = _world(service_factory, api_client_for)
    invoice = Invoice.objects.get(lago_id=invoice_id)
    barrier, outcomes = threading.Barrier(2), []

    def post(reference):
        try:
            barrier.wait()
            payment_manual_create(invoice_id=invoice.pk, amount_cents=5650, reference=reference)
            outcomes.append("paid")
        except ValidationFailed as exc:
            outcomes.append(exc.details)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(f"CHQ-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)) == sorted(["paid", str({"amount_cents": ["greater_than"]})])
    invoice.refresh_from_db()
    assert (invoice.total_paid_amount_cents, invoice.payment_status, Payment.objects.count()) == (5650, "succeeded", 1)
    assert check_all(customer_ids=[invoice.customer_id]) == []


@pytest.mark.django_db
def test_lagos_errors_and_isolation(service_factory, api_client_for):
    _, api, invoice_id = _world(service_factory, api_client_for)
    cases = [
        ({"amount_cents": 100, "reference": "x"}, {"invoice_id": ["value_is_mandatory"]}),
        ({"invoice_id": invoice_id, "amount_cents": 0, "reference": "x"}, {"amount_cents": ["invalid_value"]}),
        ({"invoice_id": invoice_id, "amount_cents": "100", "reference": "x"}, {"amount_cents": ["invalid_value"]}),
        ({"invoice_id": invoice_id, "amount_cents": 100}, {"reference": ["value_is_mandatory"]}),
        ({"invoice_id": invoice_id, "amount_cents": 100, "reference": "x" * 41}, {"reference": ["value_is_too_long"]}),
        ({"invoice_id": invoice_id, "amount_cents": 100, "reference": "x", "paid_at": "soon"},
         {"paid_at": ["invalid_date"]}),
        ({"invoice_id": invoice_id, "amount_cents": 5651, "reference": "x"}, {"amount_cents": ["greater_than"]}),
    ]
    for body, details in cases:
        response = api.post("/api/v1/payments", {"payment": body}, format="json")
        assert (response.status_code, response.json().get("error_details")) == (422, details), body
    assert _pay(api, "00000000-0000-0000-0000-000000000000", 100).json()["code"] == "invoice_not_found"
    assert api.post("/api/v1/payments", {}, format="json").status_code == 400
    Invoice.objects.filter(lago_id=invoice_id).update(status="voided")
    voided = _pay(api, invoice_id, 100)
    assert (voided.status_code, voided.json()["code"]) == (403, "feature_unavailable")
    Invoice.objects.filter(lago_id=invoice_id).update(status="finalized")
    paid = _pay(api, invoice_id, 100).json()["payment"]

    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert _pay(desk, invoice_id, 100).json()["code"] == "invoice_not_found"
    assert desk.get(f"/api/v1/payments/{paid['lago_id']}").json()["code"] == "payment_not_found"
    assert desk.get("/api/v1/payments").json()["payments"] == []
    assert desk.get("/api/v1/payment_receipts").json()["payment_receipts"] == []
    assert desk.get("/api/v1/customers/acme/payments").json()["code"] == "customer_not_found"
    assert api.get("/api/v1/payments/not-a-uuid").json()["code"] == "payment_not_found"
    assert api.get("/api/v1/payment_receipts/not-a-uuid").json()["code"] == "payment_receipt_not_found"


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_records_and_reads_payments(live_server, service_factory, api_client_for):
    issued, _, invoice_id = _world(service_factory, api_client_for)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    payment = lago.payments.create(LagoPayment(invoice_id=invoice_id, amount_cents=1500, reference="CHQ-9",
                                               paid_at="2026-03-02"))
    assert (payment.amount_cents, payment.type, payment.reference) == (1500, "manual", "CHQ-9")
    assert lago.payments.find(payment.lago_id).invoice_ids == [invoice_id]
    assert [p.lago_id for p in lago.payments.find_all({"invoice_id": invoice_id})["payments"]] == [payment.lago_id]
    [receipt] = lago.payment_receipts.find_all()["payment_receipts"]
    assert lago.payment_receipts.find(receipt.lago_id).payment.lago_id == payment.lago_id

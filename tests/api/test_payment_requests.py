"""Payment requests (issue 21): POST /payment_requests groups a customer's overdue invoices into one Stripe payment
(a Checkout Session for their total; localstripe here), GET /payment_requests, /payment_requests/{id} and
/customers/{id}/payment_requests; paid, each invoice is settled once, however often Stripe says so."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from apps.integrity.invariants import check_all
from apps.invoicing.models import CustomerCredit, Invoice
from apps.ledger.models import LedgerPosting
from apps.payments.models import Payment, PaymentRequest
from apps.payments.services import checkout_session_event_apply, payment_manual_create, payment_request_settle
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401  (fixtures)

LATER = timedelta(days=3)  # the invoices are due the day they are issued (no payment term): overdue by then


def _world(service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA", "state": "ON",
                                                "currency": "CAD", "email": "billing@acme.test"}}, format="json")
    api.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 5000,
                                            "amount_currency": "CAD"}}, format="json")
    ids = [api.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "setup"}]}}, format="json").json()["invoice"]["lago_id"] for _ in range(2)]
    return issued, api, ids


def _request(api, ids, **extra):
    with time_machine.travel(timezone.now() + LATER):
        return api.post("/api/v1/payment_requests", {"payment_request": {
            "external_customer_id": "acme", "lago_invoice_ids": ids, **extra}}, format="json")


def _completed(request: PaymentRequest, event_id: str, pi: str = "pi_request_1") -> None:
    checkout_session_event_apply(event_id=event_id, event_type="checkout.session.completed", event_created=1, session={
        "id": request.stripe_checkout_session_id, "status": "complete", "mode": "payment", "payment_status": "paid",
        "payment_intent": pi, "amount_total": request.amount_cents,
        "metadata": {"payment_request_id": str(request.lago_id)}})


@pytest.mark.django_db
def test_one_payment_settles_each_overdue_invoice_once(service_factory, api_client_for, stripe_env):
    _, api, ids = _world(service_factory, api_client_for)
    response = _request(api, ids)
    assert response.status_code == 200, response.json()
    body = response.json()["payment_request"]
    assert (body["amount_cents"], body["amount_currency"], body["payment_status"], body["email"]) == (
        11300, "CAD", "pending", "billing@acme.test")
    assert sorted(i["lago_id"] for i in body["invoices"]) == sorted(ids)
    assert body["payment_url"].startswith("http://localstripe.invalid/checkout/")
    request = PaymentRequest.objects.get(lago_id=body["lago_id"])

    # The first invoice is partly paid by cheque meanwhile: what it no longer owes is kept as credit, not lost.
    payment_manual_create(invoice_id=Invoice.objects.get(lago_id=ids[0]).pk, amount_cents=1000, reference="CHQ-1")
    _completed(request, "evt_1")
    _completed(request, "evt_1")  # the same event again
    _completed(request, "evt_2")  # another event for the same session
    payment_request_settle(payment_request_id=str(request.lago_id), session_id=request.stripe_checkout_session_id,
                           payment_intent_id="pi_request_1", amount_cents=11300)  # a late sweep
    assert Payment.objects.filter(payment_request=request).count() == 2
    for lago_id in ids:
        invoice = Invoice.objects.get(lago_id=lago_id)
        assert (invoice.payment_status, invoice.total_paid_amount_cents, invoice.total_due_amount_cents) == (
            "succeeded", 5650, 0)
    assert CustomerCredit.objects.get().amount_cents == 1000
    refs = set(LedgerPosting.objects.filter(kind="payment").values_list("ref", flat=True))
    assert len(refs) == 3  # the cheque and one per invoice of the request, each posted once
    assert check_all(customer_ids=[request.customer_id], only=["I1"]) == []
    shown = api.get(f"/api/v1/payment_requests/{body['lago_id']}").json()["payment_request"]
    assert (shown["payment_status"], shown["payment_url"]) == ("succeeded", None)
    assert api.get("/api/v1/payment_requests", {"payment_status": "succeeded"}).json()["meta"]["total_count"] == 1
    assert api.get("/api/v1/payment_requests", {"payment_status": "pending"}).json()["payment_requests"] == []
    assert api.get("/api/v1/customers/acme/payment_requests").json()["meta"]["total_count"] == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_settling_at_once_pay_once(service_factory, api_client_for, stripe_env):
    _, api, ids = _world(service_factory, api_client_for)
    request = PaymentRequest.objects.get(lago_id=_request(api, ids).json()["payment_request"]["lago_id"])
    barrier = threading.Barrier(2)

    def settle():
        try:
            barrier.wait()
            payment_request_settle(payment_request_id=str(request.lago_id), session_id=request.stripe_checkout_session_id,
                                   payment_intent_id="pi_request_2", amount_cents=request.amount_cents)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Payment.objects.filter(payment_request=request).count() == 2
    assert sorted(Invoice.objects.values_list("total_paid_amount_cents", flat=True)) == [5650, 5650]
    assert CustomerCredit.objects.count() == 0


@pytest.mark.django_db
def test_the_sweep_settles_a_paid_request_whose_webhook_was_lost(service_factory, api_client_for, stripe_env,
                                                                 monkeypatch):
    from apps.payments import stripe_gateway as gateway
    from apps.payments.services import payment_pending_sweep

    _, api, ids = _world(service_factory, api_client_for)
    request = PaymentRequest.objects.get(lago_id=_request(api, ids).json()["payment_request"]["lago_id"])
    paid = gateway.CheckoutSession(id=request.stripe_checkout_session_id, url="", status="complete",
                                   payment_status="paid", payment_intent_id="pi_swept", amount_total=11300)
    monkeypatch.setattr(gateway, "checkout_session_get", lambda *, session_id: paid)  # Stripe's answer, as recorded
    payment_pending_sweep()
    payment_pending_sweep()
    request.refresh_from_db()
    assert (request.payment_status, request.stripe_payment_intent_id) == ("succeeded", "pi_swept")
    assert Payment.objects.filter(payment_request=request).count() == 2


@pytest.mark.django_db
def test_lagos_refusals_and_isolation(service_factory, api_client_for, stripe_env):
    _, api, ids = _world(service_factory, api_client_for)
    not_yet = api.post("/api/v1/payment_requests", {"payment_request": {
        "external_customer_id": "acme", "lago_invoice_ids": ids}}, format="json")  # due today: not overdue yet
    assert (not_yet.status_code, not_yet.json()["code"]) == (405, "invoices_not_overdue")
    Invoice.objects.filter(lago_id=ids[1]).update(currency="USD")
    mixed = _request(api, ids)
    assert (mixed.status_code, mixed.json()["code"]) == (405, "invoices_have_different_currencies")
    assert _request(api, ["00000000-0000-0000-0000-000000000000"]).json()["code"] == "invoice_not_found"
    missing = _request(api, [])
    assert (missing.status_code, missing.json()["error_details"]) == (422, {"lago_invoice_ids": ["value_is_mandatory"]})
    made = _request(api, ids[:1]).json()["payment_request"]
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert _request(desk, ids[:1]).json()["code"] == "customer_not_found"
    assert desk.get(f"/api/v1/payment_requests/{made['lago_id']}").json()["code"] == "payment_request_not_found"
    assert desk.get("/api/v1/payment_requests").json()["payment_requests"] == []
    assert desk.get("/api/v1/customers/acme/payment_requests").json()["code"] == "customer_not_found"


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_makes_and_reads_payment_requests(live_server, service_factory, api_client_for, stripe_env):
    from lago_python_client.client import Client
    from lago_python_client.models.payment_request import PaymentRequest as LagoPaymentRequest

    issued, _, ids = _world(service_factory, api_client_for)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    with time_machine.travel(timezone.now() + LATER, tick=True):
        made = lago.payment_requests.create(LagoPaymentRequest(email="ap@acme.test", external_customer_id="acme",
                                                               lago_invoice_ids=ids))
    assert (made.amount_cents, made.email, made.payment_status) == (11300, "ap@acme.test", "pending")
    assert lago.payment_requests.find(made.lago_id).amount_cents == 11300
    assert [r.lago_id for r in lago.payment_requests.find_all({"external_customer_id": "acme"})["payment_requests"]] \
        == [made.lago_id]

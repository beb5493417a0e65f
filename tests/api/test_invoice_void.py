"""POST /invoices/{id}/void with Lago's body (InvoiceVoidInput): generate_credit_note voids a paid invoice by credit
notes; bad amounts answer Lago's 422 and write nothing; voiding twice answers 405 `not_voidable`. Through the APIClient
and through lago-python-client's `void_invoice(id, options)`."""
from __future__ import annotations

from decimal import Decimal

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError

from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing.services import AddOnFee, invoice_create_one_off
from apps.payments.services import payment_manual_create
from tests.integration.invoicing.conftest import Billing


def _paid_invoice(service) -> Invoice:
    """10000 + HST 1300 = 11300 (Ontario), paid in full by wire."""
    link = Billing(service).customer("acme")
    invoice = invoice_create_one_off(service=service, customer=link.customer, currency="CAD",
                                     fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=10000)])
    payment_manual_create(invoice_id=invoice.pk, amount_cents=11300, reference="wire")
    return invoice


@pytest.mark.django_db
def test_void_with_generate_credit_note_through_the_api(service_factory, api_client_for):
    issued = service_factory("cloud")
    invoice = _paid_invoice(issued.service)
    api = api_client_for(issued.raw_key)
    url = f"/api/v1/invoices/{invoice.lago_id}/void"

    plain = api.post(url)  # no body: a paid invoice is not voidable, as before
    assert (plain.status_code, plain.json()["code"]) == (405, "not_voidable")
    for body, details in (
        ({"generate_credit_note": True, "credit_amount": 11300, "refund_amount": 1},
         {"credit_refund_amount": ["total_amount_exceeds_invoice_amount"]}),
        ({"generate_credit_note": True, "credit_amount": "12.5"}, None),
        ({"generate_credit_note": True, "refund_amount": -1}, None),
        ({"generate_credit_note": True, "credit_amount": 10.5}, None),
    ):
        refused = api.post(url, body, format="json")
        assert refused.status_code == 422, body
        assert refused.json()["code"] == "validation_errors"
        if details:
            assert refused.json()["error_details"] == details
    assert not CreditNote.objects.filter(invoice=invoice).exists()
    assert Invoice.objects.get(pk=invoice.pk).status == "finalized"

    voided = api.post(url, {"generate_credit_note": True, "credit_amount": 3000, "refund_amount": 2000},
                      format="json")
    assert voided.status_code == 200
    body = voided.json()["invoice"]
    assert (body["status"], body["lago_id"]) == ("voided", str(invoice.lago_id))
    notes = api.get("/api/v1/credit_notes", {"external_customer_id": "acme"}).json()["credit_notes"]
    by_total = {note["total_amount_cents"]: note for note in notes}
    assert set(by_total) == {5000, 6300}
    assert (by_total[5000]["credit_amount_cents"], by_total[5000]["refund_amount_cents"],
            by_total[5000]["balance_amount_cents"], by_total[5000]["credit_status"]) == (3000, 2000, 3000, "available")
    assert (by_total[6300]["balance_amount_cents"], by_total[6300]["credit_status"]) == (0, "voided")

    again = api.post(url, {"generate_credit_note": True}, format="json")
    assert (again.status_code, again.json()["code"]) == (405, "not_voidable")
    assert CreditNote.objects.filter(invoice=invoice).count() == 2

    outsider = api_client_for(service_factory("other").raw_key)
    assert outsider.post(url, {"generate_credit_note": True}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_lago_client_voids_a_paid_invoice_with_a_credit_note(live_server, service_factory):
    issued = service_factory("cloud")
    invoice = _paid_invoice(issued.service)
    client = Client(api_key=issued.raw_key, api_url=live_server.url)

    with pytest.raises(LagoApiError) as refused:
        client.invoices.void_invoice(str(invoice.lago_id), {"generate_credit_note": True, "refund_amount": 11301})
    assert refused.value.status_code == 422
    assert not CreditNote.objects.filter(invoice=invoice).exists()

    voided = client.invoices.void_invoice(str(invoice.lago_id), {"generate_credit_note": True,
                                                                 "credit_amount": 1150})
    assert voided.status == "voided"
    requested, rest = CreditNote.objects.filter(invoice=invoice).order_by("sequential_id")
    assert (requested.total_amount_cents, requested.credit_amount_cents) == (1150, 1150)
    assert (rest.total_amount_cents, rest.credit_status) == (11300 - 1150, "voided")

    with pytest.raises(LagoApiError) as twice:
        client.invoices.void_invoice(str(invoice.lago_id), {"generate_credit_note": True})
    assert twice.value.status_code == 405
    assert CreditNote.objects.filter(invoice=invoice).count() == 2

"""PUT /credit_notes/{lago_id}/void (Lago's voidCreditNote): the unused credit is voided once, the customer loses it,
the refund part stands, the answer is the credit note in Lago's shape; a note with nothing left answers Lago's 405
`no_voidable_amount` and writes nothing."""
from __future__ import annotations

import pytest

from apps.invoicing.models import CreditNote
from apps.ledger.models import LedgerPosting
from apps.webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice(cloud):
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    cloud.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 10000,
                                              "amount_currency": "CAD"}}, format="json")
    body = cloud.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "currency": "CAD", "fees": [
        {"add_on_code": "setup", "units": "1", "unit_amount_cents": 10000}]}}, format="json").json()["invoice"]
    assert body["total_amount_cents"] == 11300
    return body


def _note(cloud, invoice, **amounts) -> dict:
    payload = {"credit_note": {"invoice_id": invoice["lago_id"], "reason": "other", **amounts,
                               "items": [{"fee_id": invoice["fees"][0]["lago_id"], "amount_cents": 4000}]}}
    response = cloud.post("/api/v1/credit_notes", payload, format="json")
    assert response.status_code == 200, response.content
    return response.json()["credit_note"]


def _paid(invoice) -> None:
    from apps.invoicing.models import Invoice

    # Paid in full, so the note is not an offset of what is due: its credit is the customer's.
    Invoice.objects.filter(lago_id=invoice["lago_id"]).update(total_paid_amount_cents=11300, payment_status="succeeded")


def test_void_takes_the_balance_and_answers_the_credit_note(cloud, invoice) -> None:
    _paid(invoice)
    note = _note(cloud, invoice, credit_amount_cents=2520, refund_amount_cents=2000)
    assert (note["credit_status"], note["balance_amount_cents"]) == ("available", 2520)
    events = WebhookEvent.objects.count()

    response = cloud.put(f"/api/v1/credit_notes/{note['lago_id']}/void")

    assert response.status_code == 200, response.content
    body = response.json()["credit_note"]
    assert (body["lago_id"], body["credit_status"], body["balance_amount_cents"]) == (note["lago_id"], "voided", 0)
    # The refund part is untouched: its amount and status stay.
    assert (body["refund_amount_cents"], body["refund_status"]) == (2000, note["refund_status"])
    assert (body["credit_amount_cents"], body["total_amount_cents"]) == (2520, 4520)
    row = CreditNote.objects.get(lago_id=note["lago_id"])
    assert (row.voided_amount_cents, row.voided_at is not None) == (2520, True)
    [posting] = LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID)
    assert (posting.credit_note_id, posting.payment_amount_cents) == (row.pk, 2520)
    assert WebhookEvent.objects.count() == events  # Lago sends no webhook for a credit note's void
    assert cloud.get(f"/api/v1/credit_notes/{note['lago_id']}").json()["credit_note"]["credit_status"] == "voided"


def test_voiding_twice_answers_no_voidable_amount_and_writes_nothing(cloud, invoice) -> None:
    _paid(invoice)
    note = _note(cloud, invoice)
    assert cloud.put(f"/api/v1/credit_notes/{note['lago_id']}/void").status_code == 200
    before = CreditNote.objects.values().get(lago_id=note["lago_id"])

    again = cloud.put(f"/api/v1/credit_notes/{note['lago_id']}/void")

    assert again.status_code == 405
    assert again.json() == {"status": 405, "error": "Method Not Allowed", "code": "no_voidable_amount"}
    assert CreditNote.objects.values().get(lago_id=note["lago_id"]) == before
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).count() == 1


def test_a_note_with_no_credit_left_is_not_voidable(cloud, invoice) -> None:
    _paid(invoice)
    note = _note(cloud, invoice, credit_amount_cents=0, refund_amount_cents=4520)  # all refunded
    response = cloud.put(f"/api/v1/credit_notes/{note['lago_id']}/void")
    assert response.status_code == 405 and response.json()["code"] == "no_voidable_amount"
    assert CreditNote.objects.get(lago_id=note["lago_id"]).credit_status == ""
    assert not LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).exists()


def test_another_services_note_and_an_unknown_id_are_not_found(cloud, desk, invoice) -> None:
    _paid(invoice)
    note = _note(cloud, invoice)
    for client, lago_id in ((desk, note["lago_id"]), (cloud, "00000000-0000-0000-0000-000000000000")):
        response = client.put(f"/api/v1/credit_notes/{lago_id}/void")
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found", "code": "credit_note_not_found"}
    assert CreditNote.objects.get(lago_id=note["lago_id"]).balance_amount_cents == 4520

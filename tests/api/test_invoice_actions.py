"""Issue 21: POST /invoices/{id}/lose_dispute and /retry, PUT and DELETE /fees/{id}, POST /credit_notes/{id}/download
and the credit note's metadata (POST replace, PATCH merge, DELETE all, DELETE one key), with Lago's bodies and errors."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client

from apps.invoicing.models import Invoice
from apps.webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _world(service_factory, api_client_for, *, finalize=True):
    """A one-off invoice of $50.00 + HST 13 % for NexaCloud's customer acme in Ontario, and a $10 credit note on it."""
    issued = service_factory("nexacloud", "NexaCloud")
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA", "state": "ON",
                                                "currency": "CAD"}}, format="json")
    api.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 5000,
                                            "amount_currency": "CAD"}}, format="json")
    invoice = api.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "setup"}]}}, format="json").json()["invoice"]
    note = api.post("/api/v1/credit_notes", {"credit_note": {"invoice_id": invoice["lago_id"], "reason": "other", "items": [
        {"fee_id": invoice["fees"][0]["lago_id"], "amount_cents": 1000}]}}, format="json")
    assert note.status_code == 200, note.json()
    return issued, api, invoice, note.json()["credit_note"]


def test_losing_a_dispute_marks_the_invoice_once_and_tells_the_app(service_factory, api_client_for):
    _, api, invoice, _ = _world(service_factory, api_client_for)
    assert api.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": "https://app.example.com/lago"}},
                    format="json").status_code == 200
    lost = api.post(f"/api/v1/invoices/{invoice['lago_id']}/lose_dispute")
    assert lost.status_code == 200, lost.json()
    body = lost.json()["invoice"]
    assert body["payment_dispute_lost_at"] is not None and body["payment_overdue"] is False
    again = api.post(f"/api/v1/invoices/{invoice['lago_id']}/lose_dispute").json()["invoice"]
    assert again["payment_dispute_lost_at"] == body["payment_dispute_lost_at"]
    assert WebhookEvent.objects.filter(event_type="invoice.payment_dispute_lost").count() == 1
    Invoice.objects.filter(lago_id=invoice["lago_id"]).update(status="draft", payment_dispute_lost_at=None)
    draft = api.post(f"/api/v1/invoices/{invoice['lago_id']}/lose_dispute")
    assert (draft.status_code, draft.json()["code"]) == (405, "not_disputable")


def test_retry_answers_lagos_invalid_status_and_fees_are_invoiced(service_factory, api_client_for):
    _, api, invoice, _ = _world(service_factory, api_client_for)
    retry = api.post(f"/api/v1/invoices/{invoice['lago_id']}/retry")
    assert (retry.status_code, retry.json()["code"]) == (405, "invalid_status")
    fee_id = invoice["fees"][0]["lago_id"]
    unchanged = api.put(f"/api/v1/fees/{fee_id}", {"fee": {"invoice_display_name": "ignored"}}, format="json")
    assert (unchanged.status_code, unchanged.json()["fee"]["lago_id"]) == (200, fee_id)
    update = api.put(f"/api/v1/fees/{fee_id}", {"fee": {"payment_status": "succeeded"}}, format="json")
    assert (update.status_code, update.json()["code"]) == (405, "invoiced_fee")
    delete = api.delete(f"/api/v1/fees/{fee_id}")
    assert (delete.status_code, delete.json()["code"]) == (405, "invoiced_fee")
    assert api.delete("/api/v1/fees/00000000-0000-0000-0000-000000000000").json()["code"] == "fee_not_found"
    assert api.post("/api/v1/invoices/00000000-0000-0000-0000-000000000000/retry").json()["code"] == "invoice_not_found"


def test_credit_note_pdf_through_a_signed_link(service_factory, api_client_for, client):
    _, api, invoice, note = _world(service_factory, api_client_for)
    body = api.post(f"/api/v1/credit_notes/{note['lago_id']}/download").json()["credit_note"]
    url = body["file_url"]
    assert url.startswith(f"http://testserver/api/v1/credit_notes/{note['lago_id']}/pdf/")
    pdf = client.get(url.removeprefix("http://testserver"))
    assert (pdf.status_code, pdf["Content-Type"], pdf.content[:5]) == (200, "application/pdf", b"%PDF-")
    token = url.rsplit("/", 1)[1]
    # A credit note's token opens no invoice, and a tampered one nothing.
    assert client.get(f"/api/v1/invoices/{invoice['lago_id']}/pdf/{token}").status_code == 404
    assert client.get(url.removeprefix("http://testserver") + "x").status_code == 404


def test_credit_note_metadata_replace_merge_and_delete(service_factory, api_client_for):
    _, api, _, note = _world(service_factory, api_client_for)
    base = f"/api/v1/credit_notes/{note['lago_id']}/metadata"
    assert api.delete(f"{base}/absent").json()["code"] == "metadata_not_found"
    assert api.post(base, {"metadata": {"a": "1", "b": "2"}}, format="json").json() == {"metadata": {"a": "1", "b": "2"}}
    assert api.patch(base, {"metadata": {"b": "3", "c": None}}, format="json").json() == {
        "metadata": {"a": "1", "b": "3", "c": None}}
    assert api.post(base, {"metadata": {"z": "9"}}, format="json").json() == {"metadata": {"z": "9"}}
    assert api.patch(base, {"metadata": {"y": "8"}}, format="json").json() == {"metadata": {"z": "9", "y": "8"}}
    assert api.delete(f"{base}/z").json() == {"metadata": {"y": "8"}}
    assert api.get(f"/api/v1/credit_notes/{note['lago_id']}").json()["credit_note"]["metadata"] == {"y": "8"}
    assert api.delete(base).json() == {"metadata": None}
    too_many = api.patch(base, {"metadata": {f"k{i}": "v" for i in range(51)}}, format="json")
    assert too_many.status_code == 422
    assert api.post(base, {}, format="json").status_code == 400


def test_isolation(service_factory, api_client_for):
    _, _, invoice, note = _world(service_factory, api_client_for)
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    for method, path in (("post", f"/api/v1/invoices/{invoice['lago_id']}/lose_dispute"),
                         ("post", f"/api/v1/invoices/{invoice['lago_id']}/retry"),
                         ("delete", f"/api/v1/fees/{invoice['fees'][0]['lago_id']}"),
                         ("post", f"/api/v1/credit_notes/{note['lago_id']}/download"),
                         ("delete", f"/api/v1/credit_notes/{note['lago_id']}/metadata")):
        assert getattr(desk, method)(path).status_code == 404, path


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_downloads_and_edits_credit_note_metadata(live_server, service_factory, api_client_for):
    issued, _, invoice, note = _world(service_factory, api_client_for)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    assert lago.credit_notes.download(note["lago_id"]).file_url.startswith(live_server.url)
    assert lago.credit_notes.replace_metadata(note["lago_id"], {"po": "A-1"}) == {"po": "A-1"}
    assert lago.credit_notes.merge_metadata(note["lago_id"], {"dept": "ops"}) == {"po": "A-1", "dept": "ops"}
    assert lago.credit_notes.delete_metadata_key(note["lago_id"], "po") == {"dept": "ops"}
    assert lago.credit_notes.delete_all_metadata(note["lago_id"]) is None
    assert lago.invoices.lose_dispute(invoice["lago_id"]).payment_dispute_lost_at is not None

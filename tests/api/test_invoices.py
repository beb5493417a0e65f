"""Invoices, credit notes and current usage through the Lago-shaped API (APIClient)."""
from __future__ import annotations

import io

import pytest
import time_machine
from pypdf import PdfReader

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(service_factory, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=2500, charges=[(metric, "standard", {"amount": "0.10"}, {})])
    billing.customer("acme")
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                        timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "125"})],
        now=at(2026, 3, 5, 11),
    )
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    return issued, billing, sub


def test_list_detail_finalize_download_void(world, api_client_for, service_factory):
    issued, _, _ = world
    api = api_client_for(issued.raw_key)
    body = api.get("/api/v1/invoices", {"external_customer_id": "acme", "statuses[]": "draft"}).json()
    assert body["meta"]["total_count"] == 1
    invoice = body["invoices"][0]
    # 2500 + 125 × 0.10 = 1250 -> 3750; HST 13%: 325 + 162.5 -> 163 = 488
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"], invoice["total_amount_cents"]) == (3750, 488, 4238)
    assert invoice["customer"]["external_id"] == "acme" and invoice["version_number"] == 4
    assert {fee["item"]["type"] for fee in invoice["fees"]} == {"subscription", "charge"}
    assert api.get("/api/v1/invoices", {"statuses[]": "finalized"}).json()["meta"]["total_count"] == 0
    assert api.get("/api/v1/invoices", {"statuses[]": "bogus"}).status_code == 422
    lago_id = invoice["lago_id"]

    outsider = api_client_for(service_factory("other", "Other").raw_key)
    assert outsider.get(f"/api/v1/invoices/{lago_id}").json()["code"] == "invoice_not_found"
    assert api.post(f"/api/v1/invoices/{lago_id}/download").status_code == 404  # drafts have no file

    finalized = api.put(f"/api/v1/invoices/{lago_id}/finalize").json()["invoice"]
    assert finalized["status"] == "finalized" and finalized["number"].startswith("NEXA-")
    download = api.post(f"/api/v1/invoices/{lago_id}/download").json()["invoice"]
    pdf = api_client_for("nokey").get(download["file_url"].split("testserver", 1)[1])
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert finalized["number"] in text and "42.38 CAD" in text and "4.88 CAD" in text and "13% HST" in text
    assert "NexaCloud" in text

    voided = api.post(f"/api/v1/invoices/{lago_id}/void").json()["invoice"]
    assert voided["status"] == "voided"
    assert api.post(f"/api/v1/invoices/{lago_id}/void").json()["invoice"]["status"] == "voided"


def test_credit_notes_never_exceed_what_is_left(world, api_client_for):
    issued, _, _ = world
    api = api_client_for(issued.raw_key)
    invoice = Invoice.objects.get()
    api.put(f"/api/v1/invoices/{invoice.lago_id}/finalize")
    fee = invoice.fees.get(fee_type="subscription")
    payload = {"credit_note": {"invoice_id": str(invoice.lago_id), "reason": "other",
                               "items": [{"fee_id": str(fee.lago_id), "amount_cents": 2000}]}}
    estimate = api.post("/api/v1/credit_notes/estimate", payload, format="json").json()["estimated_credit_note"]
    assert estimate["taxes_amount_cents"] == 260 and estimate["max_creditable_amount_cents"] == 2260
    assert estimate["max_offsettable_amount_cents"] == 2260  # the invoice (4238) is unpaid
    note = api.post("/api/v1/credit_notes", payload, format="json").json()["credit_note"]
    # Unpaid: the note settles that much of the invoice instead of giving credit for money never received.
    assert (note["total_amount_cents"], note["offset_amount_cents"], note["credit_amount_cents"],
            note["balance_amount_cents"]) == (2260, 2260, 0, 0)
    assert note["number"].endswith("-CN1") and note["credit_status"] is None
    body = api.get(f"/api/v1/invoices/{invoice.lago_id}").json()["invoice"]
    assert (body["total_amount_cents"], body["total_offsetted_credit_note_amount_cents"],
            body["total_due_amount_cents"], body["payment_status"]) == (4238, 2260, 1978, "pending")
    again = api.post("/api/v1/credit_notes", payload, format="json")
    assert again.status_code == 422
    assert again.json()["error_details"] == {"items[0].amount_cents": ["higher_than_remaining_fee_amount"]}
    listed = api.get("/api/v1/credit_notes").json()
    assert listed["meta"]["total_count"] == 1
    # Lago's offset is asked for explicitly too, never above what is due (1978 left).
    other = invoice.fees.get(fee_type="charge")
    items = [{"fee_id": str(other.lago_id), "amount_cents": 1250}]  # 1250 + 163 tax = 1413
    too_much = api.post("/api/v1/credit_notes", {"credit_note": {
        "invoice_id": str(invoice.lago_id), "items": items, "offset_amount_cents": 1414, "credit_amount_cents": 0}},
        format="json")
    assert too_much.status_code == 422
    assert too_much.json()["error_details"] == {"base": ["does_not_match_item_amounts"]}
    second = api.post("/api/v1/credit_notes", {"credit_note": {
        "invoice_id": str(invoice.lago_id), "items": items, "offset_amount_cents": 1413}},
        format="json").json()["credit_note"]
    assert (second["offset_amount_cents"], second["credit_amount_cents"]) == (1413, 0)
    assert api.get(f"/api/v1/invoices/{invoice.lago_id}").json()["invoice"]["total_due_amount_cents"] == 565
    assert api.get(f"/api/v1/credit_notes/{note['lago_id']}").json()["credit_note"]["lago_id"] == note["lago_id"]


def test_one_off_invoice_with_add_on_fees(world, api_client_for):
    issued, _, _ = world
    api = api_client_for(issued.raw_key)
    for code, cents in (("tokens_1m", 2500), ("throttle_removal", 4900)):
        add_on = {"code": code, "name": code, "amount_cents": cents, "amount_currency": "CAD"}
        assert api.post("/api/v1/add_ons", {"add_on": add_on}, format="json").status_code == 200
    body = {"invoice": {"external_customer_id": "acme", "currency": "CAD", "fees": [
        {"add_on_code": "tokens_1m", "units": "3", "unit_amount_cents": 1999, "invoice_display_name": "1M tokens"},
        {"add_on_code": "throttle_removal"},  # the add-on's price
    ]}}
    invoice = api.post("/api/v1/invoices", body, format="json").json()["invoice"]
    assert invoice["invoice_type"] == "one_off" and invoice["status"] == "finalized"
    # 5997 + 4900 = 10897; HST per line 779.61 -> 780, 637 -> 1417
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"]) == (10897, 1417)
    bad = api.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "x", "unit_amount_cents": 1.5}]}}, format="json")
    assert bad.status_code == 422 and Invoice.objects.filter(invoice_type="one_off").count() == 1


def test_current_usage_uses_the_close_engine(world, api_client_for):
    issued, billing, _ = world
    api = api_client_for(issued.raw_key)
    usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id="t9", external_subscription_id="s1", code="gb",
                        timestamp=int(at(2026, 4, 3).timestamp()), properties={"gb": "7.5"})],
        now=at(2026, 4, 3, 11),
    )
    with time_machine.travel(at(2026, 4, 10), tick=False):
        body = api.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "s1"}).json()
        missing = api.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "nope"})
    usage = body["customer_usage"]
    assert usage["from_datetime"] == "2026-04-01T04:00:00Z" and usage["amount_cents"] == 75
    assert usage["taxes_amount_cents"] == 10 and usage["charges_usage"][0]["units"] == "7.5"
    assert missing.status_code == 405 and missing.json()["code"] == "no_active_subscription"

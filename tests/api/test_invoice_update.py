"""PUT /invoices/{lago_id} (issue 21): Lago's invoice metadata; payment status stays the payments' to record."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.models import InvoiceMetadata, InvoiceMetadataList
from lago_python_client.models.invoice import Invoice as InvoiceInput

from apps.invoicing.models import Invoice


def _invoice(client):
    assert client.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                          "state": "ON", "currency": "CAD"}}, format="json").status_code == 200
    assert client.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 1000,
                                                      "amount_currency": "CAD"}}, format="json").status_code == 200
    response = client.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme",
                                                            "fees": [{"add_on_code": "setup"}]}}, format="json")
    assert response.status_code == 200
    return response.json()["invoice"]


def _put(client, lago_id, body):
    return client.put(f"/api/v1/invoices/{lago_id}", {"invoice": body}, format="json")


@pytest.mark.django_db
def test_metadata_is_added_updated_and_removed_as_lago_does(cloud):
    invoice = _invoice(cloud)
    first = _put(cloud, invoice["lago_id"], {"metadata": [{"key": "po", "value": "PO-1"}, {"key": "ref", "value": "A"}]})
    assert first.status_code == 200, first.json()
    metadata = first.json()["invoice"]["metadata"]
    assert [(m["key"], m["value"]) for m in metadata] == [("po", "PO-1"), ("ref", "A")]
    po = metadata[0]
    again = _put(cloud, invoice["lago_id"], {"metadata": [{"id": po["lago_id"], "key": "po", "value": "PO-2"}]})
    assert again.json()["invoice"]["metadata"] == [{**po, "value": "PO-2"}]  # same id and creation time; "ref" gone
    assert cloud.get(f"/api/v1/invoices/{invoice['lago_id']}").json()["invoice"]["metadata"] == [{**po, "value": "PO-2"}]
    same = _put(cloud, invoice["lago_id"], {"metadata": [{"id": po["lago_id"], "key": "po", "value": "PO-2"}]})
    assert same.json()["invoice"] == cloud.get(f"/api/v1/invoices/{invoice['lago_id']}").json()["invoice"]
    assert _put(cloud, invoice["lago_id"], {"metadata": []}).json()["invoice"]["metadata"] == []
    # Only metadata changed: the money did not move.
    assert Invoice.objects.get(lago_id=invoice["lago_id"]).total_amount_cents == invoice["total_amount_cents"]


@pytest.mark.django_db
def test_bad_metadata_and_payment_status_get_lagos_errors_and_change_nothing(cloud, desk):
    invoice = _invoice(cloud)
    lago_id = invoice["lago_id"]
    assert _put(cloud, lago_id, {"metadata": [{"key": "po", "value": "PO-1"}]}).status_code == 200
    cases = [
        ({"metadata": [{"key": "po", "value": "x" * 141}]}, 422, {"metadata.0.value": ["value_is_out_of_range"]}),
        ({"metadata": [{"value": "x"}]}, 422, {"metadata.0.key": ["value_is_mandatory"]}),
        ({"metadata": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}, 422, {"metadata": ["value_already_exist"]}),
        ({"metadata": [{"key": f"k{i}", "value": "v"} for i in range(6)]}, 422, {"metadata": ["value_is_out_of_range"]}),
        ({"metadata": [{"id": "00000000-0000-0000-0000-000000000000", "key": "a", "value": "1"}]}, 422,
         {"metadata.0.id": ["metadata_not_found"]}),
        ({"payment_status": "paid"}, 422, {"payment_status": ["value_is_invalid"]}),
    ]
    for body, status, details in cases:
        response = _put(cloud, lago_id, body)
        assert (response.status_code, response.json().get("error_details")) == (status, details), body
    refused = _put(cloud, lago_id, {"payment_status": "succeeded"})
    assert (refused.status_code, refused.json()["code"]) == (405, "payment_status_not_updatable")
    assert _put(cloud, lago_id, {"payment_status": "pending"}).status_code == 200  # as it already is
    assert [m["value"] for m in cloud.get(f"/api/v1/invoices/{lago_id}").json()["invoice"]["metadata"]] == ["PO-1"]
    assert _put(desk, lago_id, {"metadata": []}).status_code == 404
    missing_root = cloud.put(f"/api/v1/invoices/{lago_id}", {"metadata": []}, format="json")
    assert missing_root.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_updates_invoice_metadata(live_server, service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    invoice = _invoice(api_client_for(issued.raw_key))
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    updated = lago.invoices.update(
        InvoiceInput(metadata=InvoiceMetadataList(__root__=[InvoiceMetadata(key="po", value="PO-7")])),
        invoice["lago_id"])
    assert [(m.key, m.value) for m in updated.metadata.__root__] == [("po", "PO-7")]


def _credit_note(client, invoice):
    fee = invoice["fees"][0]
    response = client.post("/api/v1/credit_notes", {"credit_note": {
        "invoice_id": invoice["lago_id"], "items": [{"fee_id": fee["lago_id"], "amount_cents": 100}],
        "credit_amount_cents": 113}}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["credit_note"]


@pytest.mark.django_db
def test_credit_note_metadata_is_set_and_its_refund_status_is_not_the_apps(cloud, desk):
    note = _credit_note(cloud, _invoice(cloud))
    assert note["metadata"] == {}
    path = f"/api/v1/credit_notes/{note['lago_id']}"
    updated = cloud.put(path, {"credit_note": {"metadata": {"ticket": "T-1", "source": None}}}, format="json")
    assert updated.status_code == 200, updated.json()
    assert updated.json()["credit_note"]["metadata"] == {"ticket": "T-1", "source": None}
    assert cloud.get(path).json()["credit_note"]["metadata"] == {"ticket": "T-1", "source": None}
    replaced = cloud.put(path, {"credit_note": {"metadata": {"ticket": "T-2"}}}, format="json").json()["credit_note"]
    assert replaced["metadata"] == {"ticket": "T-2"}
    assert {k: v for k, v in replaced.items() if k not in ("metadata", "updated_at")} == {
        k: v for k, v in note.items() if k not in ("metadata", "updated_at")}
    refused = cloud.put(path, {"credit_note": {"refund_status": "succeeded"}}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (405, "refund_status_not_updatable")
    bad = cloud.put(path, {"credit_note": {"metadata": {"k": "x" * 256}}}, format="json")
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"metadata.k": ["value_is_out_of_range"]})
    bad = cloud.put(path, {"credit_note": {"refund_status": "refunded"}}, format="json")
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"refund_status": ["value_is_invalid"]})
    assert cloud.get(path).json()["credit_note"]["metadata"] == {"ticket": "T-2"}
    assert desk.put(path, {"credit_note": {"metadata": {}}}, format="json").status_code == 404

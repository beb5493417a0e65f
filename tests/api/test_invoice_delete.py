"""DELETE /invoices/{id} (issue 21): a draft only, as Lago; its period is not billed again by the next close."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client

from apps.integrity.invariants import check_all
from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from apps.webhooks.models import WebhookEvent
from tests.integration.invoicing.conftest import Billing, at


def _world(service_factory, settings):
    """March of a $25 plan with 125 GB at $0.10, closed into a draft (a two-day grace period)."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=2500, charges=[(metric, "standard", {"amount": "0.10"}, {})])
    link = billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, now=at(2026, 3, 5, 11), events=[
        EventIn(transaction_id="t1", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "125"})])
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    return issued, link


@pytest.mark.django_db
def test_a_deleted_draft_is_gone_and_its_period_is_not_billed_again(service_factory, api_client_for, settings):
    issued, link = _world(service_factory, settings)
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": "https://app.example.com/lago"}},
             format="json")
    draft = Invoice.objects.get(status="draft")
    response = api.delete(f"/api/v1/invoices/{draft.lago_id}")
    assert response.status_code == 200, response.json()
    assert (response.json()["invoice"]["status"], response.json()["invoice"]["total_amount_cents"]) == ("deleted", 4238)
    assert api.get(f"/api/v1/invoices/{draft.lago_id}").json()["code"] == "invoice_not_found"
    assert api.get("/api/v1/invoices").json()["invoices"] == []
    assert api.get("/api/v1/fees").json()["fees"] == []
    assert WebhookEvent.objects.filter(event_type="invoice.deleted").count() == 1
    assert api.delete(f"/api/v1/invoices/{draft.lago_id}").status_code == 404

    periods_close(as_of=at(2026, 4, 1, 1, 0))  # the same close again, and past the grace period
    periods_close(as_of=at(2026, 4, 5, 1, 0))
    assert Invoice.objects.exclude(status="deleted").count() == 0  # March is not billed again
    assert Fee.objects.count() == Fee.objects.filter(invoice=draft).count()
    assert check_all(customer_ids=[link.customer_id], only=["I1", "I2", "I3", "I4"]) == []
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    assert Invoice.objects.filter(status="draft").count() == 1  # April bills as usual


@pytest.mark.django_db
def test_only_a_draft_is_deleted_and_only_by_its_service(service_factory, api_client_for, settings):
    issued, _ = _world(service_factory, settings)
    api = api_client_for(issued.raw_key)
    draft = Invoice.objects.get(status="draft")
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert desk.delete(f"/api/v1/invoices/{draft.lago_id}").json()["code"] == "invoice_not_found"
    api.put(f"/api/v1/invoices/{draft.lago_id}/finalize")
    finalized = api.delete(f"/api/v1/invoices/{draft.lago_id}")
    assert (finalized.status_code, finalized.json()["code"]) == (405, "not_deletable")


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_deletes_a_draft(live_server, service_factory, settings):
    issued, _ = _world(service_factory, settings)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    draft = Invoice.objects.get(status="draft")
    assert lago.invoices.destroy(str(draft.lago_id)).status == "deleted"

"""Apps' view of invoices and credit notes: the official lago-python-client against a live hub."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import CreditNote
from lago_python_client.models.credit_note import Item, Items

from apps.invoicing.close import periods_close
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db(transaction=True)


def test_lago_client_reads_finalizes_downloads_credits_and_voids(live_server, service_factory, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 1
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    billing.customer("acme", province="BC")
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    client = Client(api_key=issued.raw_key, api_url=live_server.url)

    listed = client.invoices.find_all({"external_customer_id": "acme", "statuses[]": "draft"})
    assert len(listed["invoices"]) == 1
    draft = listed["invoices"][0]
    # BC: GST 5% + PST 7% on 100.00
    assert (draft.fees_amount_cents, draft.taxes_amount_cents, draft.total_amount_cents) == (10000, 1200, 11200)
    assert client.invoices.find(draft.lago_id).status == "draft"
    assert client.invoices.refresh(draft.lago_id).total_amount_cents == 11200

    final = client.invoices.finalize(draft.lago_id)
    assert final.status == "finalized" and final.number.startswith("NEXA-")
    downloaded = client.invoices.download(draft.lago_id)
    assert downloaded.file_url.startswith(live_server.url) and "/pdf/" in downloaded.file_url

    fee_id = next(fee.lago_id for fee in final.fees.__root__ if fee.item.type == "subscription")
    note = client.credit_notes.create(
        CreditNote(
            invoice_id=draft.lago_id,
            reason="order_change",
            credit_amount_cents=560,
            refund_amount_cents=0,
            items=Items(__root__=[Item(fee_id=fee_id, amount_cents=500)]),
        )
    )
    assert (note.total_amount_cents, note.taxes_amount_cents) == (560, 60)
    assert len(client.credit_notes.find_all()["credit_notes"]) == 1

    with pytest.raises(LagoApiError) as refused:
        client.invoices.finalize("00000000-0000-0000-0000-000000000000")
    assert refused.value.status_code == 404
    assert client.invoices.void(draft.lago_id).status == "voided"

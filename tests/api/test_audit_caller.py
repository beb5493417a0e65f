"""Money changes made through the API record their caller in the audit: the service and its key."""
from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent, InvoiceEvent
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(service_factory, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=2500), when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    return issued, Invoice.objects.get(status="draft")


def test_finalize_and_void_through_the_api_record_the_service_and_its_key(draft, api_client_for, service_factory):
    issued, invoice = draft
    api = api_client_for(issued.raw_key)
    assert api.put(f"/api/v1/invoices/{invoice.lago_id}/finalize").status_code == 200
    assert api.post(f"/api/v1/invoices/{invoice.lago_id}/void").status_code == 200
    changes = list(InvoiceEvent.objects.filter(pgh_obj_id=invoice.pk, pgh_label="changed").order_by("pgh_id"))
    assert [change.status for change in changes] == ["finalized", "voided"]
    prefix = issued.service.api_key_prefix
    for change in changes:
        metadata = change.pgh_context.metadata
        assert (metadata["service"], metadata["service_id"], metadata["api_key"]) == ("nexacloud", issued.service.pk,
                                                                                      prefix)
        assert metadata["actor"] == f"API: nexacloud (key {prefix}…)" and metadata["url"].startswith("/api/v1/")
    assert prefix and prefix in issued.raw_key and issued.raw_key != prefix  # the public part, never the key

    event = AuditEvent.objects.filter(pgh_obj_model="invoicing.Invoice", pgh_obj_id=str(invoice.pk),
                                      pgh_label="changed").order_by("-pgh_created_at", "-pgh_id").first()
    assert event.pgh_context["actor"] == f"API: nexacloud (key {prefix}…)"  # what the audit view shows as "who"


def test_a_refused_key_and_a_change_outside_the_api_name_no_service(draft, api_client_for):
    issued, invoice = draft
    assert api_client_for("not-a-key").put(f"/api/v1/invoices/{invoice.lago_id}/finalize").status_code == 401
    assert not InvoiceEvent.objects.filter(pgh_obj_id=invoice.pk, pgh_label="changed").exists()
    Invoice.objects.filter(pk=invoice.pk).update(taxes_amount_cents=1)  # a shell: audited, with no caller
    change = InvoiceEvent.objects.get(pgh_obj_id=invoice.pk, pgh_label="changed")
    assert change.pgh_context is None

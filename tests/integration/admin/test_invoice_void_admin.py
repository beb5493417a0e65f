"""The invoice admin's "Void with credit notes…": asks why and for Lago's amounts, voids a paid invoice through the
API's service (same refusals, notes and postings), and the audit shows who and why."""
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.invoicing.models import CreditNote, Invoice
from apps.payments.services import payment_manual_create

pytestmark = pytest.mark.django_db
ACTION = "void_with_credit_notes"


def test_void_with_credit_notes_asks_why_and_amounts_refuses_too_much_and_is_audited(admin_client, finalized):
    payment_manual_create(invoice_id=finalized.pk, amount_cents=11300, reference="wire")
    url = reverse("admin:invoicing_invoice_changelist")
    asked = admin_client.post(url, {"action": ACTION, "_selected_action": [finalized.pk]})
    assert asked.status_code == 200 and b"credit_amount_cents" in asked.content

    too_much = admin_client.post(url, {"action": ACTION, "_selected_action": [finalized.pk], "apply": "1",
                                       "reason": "duplicate order", "credit_amount_cents": "11300",
                                       "refund_amount_cents": "1"}, follow=True)
    assert "total_amount_exceeds_invoice_amount" in too_much.content.decode()
    assert Invoice.objects.get(pk=finalized.pk).status == "finalized"
    assert not CreditNote.objects.filter(invoice=finalized).exists()

    admin_client.post(url, {"action": ACTION, "_selected_action": [finalized.pk], "apply": "1",
                            "reason": "duplicate order, credit kept", "credit_amount_cents": "1150",
                            "refund_amount_cents": "0"})
    finalized.refresh_from_db()
    assert (finalized.status, finalized.voided_with_credit_notes) == ("voided", True)
    assert sorted(CreditNote.objects.filter(invoice=finalized).values_list("total_amount_cents", "credit_status")) == [
        (1150, "available"), (10150, "voided")]
    event = AuditEvent.objects.filter(pgh_obj_model="invoicing.Invoice", pgh_obj_id=str(finalized.pk),
                                      pgh_label="changed").order_by("-pgh_created_at", "-pgh_id").first()
    assert (event.pgh_context["actor"], event.pgh_context["reason"]) == ("admin", "duplicate order, credit kept")

    again = admin_client.post(url, {"action": ACTION, "_selected_action": [finalized.pk], "apply": "1",
                                    "reason": "twice", "credit_amount_cents": "0", "refund_amount_cents": "0"},
                              follow=True)
    assert "not_voidable" in again.content.decode() or "is voided" in again.content.decode()
    assert CreditNote.objects.filter(invoice=finalized).count() == 2

"""The credit note admin's "Void credit…" action: asks why, voids through the API's service (same refusal, same
ledger posting), and the audit shows who, why and what changed."""
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from apps.ledger.models import LedgerPosting

pytestmark = pytest.mark.django_db


@pytest.fixture
def note(finalized):
    Invoice.objects.filter(pk=finalized.pk).update(total_paid_amount_cents=11300, payment_status="succeeded")
    fee = finalized.fees.order_by("id").first()
    return credit_note_create(invoice_id=finalized.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=4000)])


def test_void_credit_asks_why_voids_once_and_is_audited(admin_client, note):
    url = reverse("admin:invoicing_creditnote_changelist")
    asked = admin_client.post(url, {"action": "void_credit", "_selected_action": [note.pk]})
    assert asked.status_code == 200 and b"Void the unused credit of these credit notes?" in asked.content
    admin_client.post(url, {"action": "void_credit", "_selected_action": [note.pk], "apply": "1", "reason": ""})
    note.refresh_from_db()
    assert (note.credit_status, note.balance_amount_cents) == ("available", 4520)  # no reason, nothing done

    admin_client.post(url, {"action": "void_credit", "_selected_action": [note.pk], "apply": "1",
                            "reason": "goodwill credit withdrawn, account closed"})
    note.refresh_from_db()
    assert (note.credit_status, note.balance_amount_cents, note.voided_amount_cents) == ("voided", 0, 4520)
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID, credit_note=note).count() == 1
    event = AuditEvent.objects.filter(pgh_obj_model="invoicing.CreditNote", pgh_obj_id=str(note.pk),
                                      pgh_label="changed").order_by("-pgh_created_at", "-pgh_id").first()
    assert (event.pgh_context["actor"], event.pgh_context["reason"]) == (
        "admin", "goodwill credit withdrawn, account closed")

    again = admin_client.post(url, {"action": "void_credit", "_selected_action": [note.pk], "apply": "1",
                                    "reason": "twice"}, follow=True)
    assert "has no credit left to void" in again.content.decode()
    assert LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID).count() == 1
    assert CreditNote.objects.get(pk=note.pk).voided_amount_cents == 4520


def test_the_credit_note_page_stays_read_only(admin_client, note):
    page = admin_client.get(reverse("admin:invoicing_creditnote_change", args=[note.pk]))
    assert page.status_code == 200
    refused = admin_client.post(reverse("admin:invoicing_creditnote_change", args=[note.pk]), {"description": "x"})
    assert refused.status_code == 403

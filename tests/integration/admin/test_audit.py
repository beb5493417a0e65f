"""The money audit (issue 18, third slice): PostgreSQL triggers record every money change whatever path made it,
before and after, with who and why; the rows are append-only; staff read them per object and globally."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.urls import reverse

from apps.audit.models import AuditEvent, InvoiceEvent, PlanEvent, ServiceEvent
from apps.invoicing.models import Invoice

pytestmark = pytest.mark.django_db


def test_an_orm_money_change_outside_any_view_leaves_an_audit_row(finalized):
    """No view, no service, no context: a bare queryset update is still recorded, before and after."""
    Invoice.objects.filter(pk=finalized.pk).update(total_amount_cents=1)
    before, after = InvoiceEvent.objects.filter(pgh_obj_id=finalized.pk).order_by("pgh_id").filter(
        pgh_label__in=("before", "changed"))[::1][-2:]
    assert (before.pgh_label, before.total_amount_cents) == ("before", 11300)
    assert (after.pgh_label, after.total_amount_cents) == ("changed", 1)
    assert after.pgh_context is None  # nobody said who: the row still exists


def test_audit_rows_are_append_only(finalized):
    Invoice.objects.filter(pk=finalized.pk).update(payment_status="succeeded")
    event = InvoiceEvent.objects.filter(pgh_obj_id=finalized.pk).first()
    for change in (lambda: InvoiceEvent.objects.filter(pk=event.pk).update(total_amount_cents=0),
                   lambda: InvoiceEvent.objects.filter(pk=event.pk).delete()):
        with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
            change()
    assert InvoiceEvent.objects.get(pk=event.pk).total_amount_cents == 11300


def test_voiding_in_the_admin_asks_why_and_the_audit_shows_who_why_and_what_changed(admin_client, finalized):
    url = reverse("admin:invoicing_invoice_changelist")
    asked = admin_client.post(url, {"action": "void", "_selected_action": [finalized.pk]})
    assert asked.status_code == 200 and b"Void these invoices?" in asked.content
    refused = admin_client.post(url, {"action": "void", "_selected_action": [finalized.pk], "apply": "1", "reason": ""})
    assert b"This field is required" in refused.content
    finalized.refresh_from_db()
    assert finalized.status == "finalized"  # no reason, nothing done

    admin_client.post(url, {"action": "void", "_selected_action": [finalized.pk], "apply": "1",
                            "reason": "duplicate of NEXA-7, customer called"})
    finalized.refresh_from_db()
    assert finalized.status == "voided"
    event = AuditEvent.objects.filter(pgh_obj_model="invoicing.Invoice", pgh_obj_id=str(finalized.pk),
                                      pgh_label="changed").order_by("-pgh_created_at", "-pgh_id").first()
    assert event.pgh_context["actor"] == "admin"
    assert event.pgh_context["reason"] == "duplicate of NEXA-7, customer called"

    trail = admin_client.get(reverse("admin:audit_auditevent_changelist") + f"?obj=invoicing.Invoice:{finalized.pk}")
    page = trail.content.decode()
    assert trail.status_code == 200
    assert "duplicate of NEXA-7, customer called" in page and "finalized → voided" in page
    invoice_page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[finalized.pk])).content.decode()
    assert f"?obj=invoicing.Invoice:{finalized.pk}" in invoice_page  # the per-object trail is linked


def test_price_changes_and_key_rotations_are_audited_with_before_and_after(admin_client, billing):
    plan = billing.plan("pro", amount_cents=4900)
    response = admin_client.post(reverse("admin:catalog_plan_change", args=[plan.pk]), {
        "code": "pro", "name": "Pro", "description": "", "invoice_display_name": "", "interval": "monthly",
        "amount": "59.00", "amount_currency": "CAD", "trial_period": "0",
        "charges-TOTAL_FORMS": "0", "charges-INITIAL_FORMS": "0",  # the read-only charges inline
    })
    assert response.status_code == 302, response.context["adminform"].form.errors
    change = PlanEvent.objects.filter(pgh_obj_id=plan.pk, pgh_label="changed").get()
    before = PlanEvent.objects.filter(pgh_obj_id=plan.pk, pgh_label="before").get()
    assert (before.amount_cents, change.amount_cents) == (4900, 5900)
    assert change.pgh_context.metadata["user"] is not None  # the admin request's user, from the middleware

    admin_client.post(reverse("admin:customers_service_changelist"), {
        "action": "rotate_key", "_selected_action": [billing.service.pk], "apply": "1", "reason": "key leaked in a log"})
    rotation = ServiceEvent.objects.filter(pgh_obj_id=billing.service.pk, pgh_label="changed").get()
    assert rotation.pgh_context.metadata["reason"] == "key leaked in a log" and rotation.api_key_rotated_at is not None
    assert not hasattr(rotation, "api_key_hash")  # the audit never keeps the key's hash

    listing = admin_client.get(reverse("admin:audit_auditevent_changelist") + "?table=catalog.Plan").content.decode()
    assert "$49.00 CAD → $59.00 CAD" in listing
    staff_only = admin_client.get(reverse("admin:audit_auditevent_changelist") + "?by=staff").content.decode()
    assert "key leaked in a log" in staff_only and "$49.00 CAD → $59.00 CAD" not in staff_only


def test_the_global_list_pages_events_of_every_table_newest_first_read_in_two_steps(admin_client, billing, monkeypatch):
    plans = [billing.plan(f"p{i}", amount_cents=100 + i) for i in range(4)]  # PlanEvent "created" rows
    for i, plan in enumerate(plans[:2]):
        type(plan).objects.filter(pk=plan.pk).update(amount_cents=900 + i)  # "changed" rows
    billing.service.__class__.objects.filter(pk=billing.service.pk).update(name="Renamed")  # another table
    expected = list(AuditEvent.objects.exclude(pgh_label="before").order_by("-pgh_created_at", "-pgh_id", "-pgh_slug")
                    .values_list("pgh_slug", flat=True))
    assert len(expected) >= 7 and len({slug.partition(":")[0] for slug in expected}) >= 2
    monkeypatch.setattr("apps.audit.admin.AuditEventAdmin.list_per_page", 3)
    url = reverse("admin:audit_auditevent_changelist")
    shown = []
    for page in range(1, (len(expected) + 2) // 3 + 1):
        cl = admin_client.get(url, {"p": page}).context["cl"]
        shown += [event.pgh_slug for event in cl.result_list]
        assert all(event.pgh_data for event in cl.result_list)  # whole events, not just their keys
    assert shown == expected

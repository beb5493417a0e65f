"""Admin: invoice list with filters, finalize/void actions through services, close runs with failures."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice

from .conftest import at

pytestmark = pytest.mark.django_db


def test_admin_lists_and_acts_on_invoices_and_shows_close_failures(billing, admin_client, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    billing.customer("good")
    billing.customer("bad", province="ZZ")
    plan = billing.plan()
    billing.subscribe("s1", plan, customer="good", when=at(2026, 3, 1, 0, 0))
    billing.subscribe("s2", plan, customer="bad", when=at(2026, 3, 1, 0, 0))
    run = periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()

    assert admin_client.get("/admin/invoicing/invoice/?status__exact=draft").status_code == 200
    page = admin_client.get(f"/admin/invoicing/invoice/{invoice.pk}/change/")
    assert page.status_code == 200 and b"sub:" in page.content  # fees inline
    admin_client.post("/admin/invoicing/invoice/", {"action": "finalize", "_selected_action": [invoice.pk],
                                                     "apply": "1", "reason": "customer asked for it today"})
    invoice.refresh_from_db()
    assert invoice.status == "finalized" and invoice.number
    pdf = admin_client.post("/admin/invoicing/invoice/", {"action": "download_pdf", "_selected_action": [invoice.pk]})
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    admin_client.post("/admin/invoicing/invoice/", {"action": "void", "_selected_action": [invoice.pk],
                                                     "apply": "1", "reason": "billed twice by mistake"})
    invoice.refresh_from_db()
    assert invoice.status == "voided"
    history = admin_client.get(f"/admin/invoicing/invoice/?customer__id__exact={invoice.customer_id}")
    assert history.status_code == 200

    detail = admin_client.get(f"/admin/invoicing/closerun/{run.pk}/change/")
    assert detail.status_code == 200 and b"ZZ" in detail.content
    assert admin_client.get("/admin/invoicing/closeruncustomer/?outcome__exact=failed").status_code == 200

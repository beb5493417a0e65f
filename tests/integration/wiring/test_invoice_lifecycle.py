"""Invoicing tells payments about its invoices through apps/invoicing/lifecycle.py (payments sit above invoicing and
register in PaymentsConfig.ready): a finalized invoice is collected, a voided one stops being collected."""
from __future__ import annotations

from unittest import mock

import pytest

from apps.invoicing import lifecycle
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.payments import services as payments

from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


def test_payments_listen_to_invoicing_from_startup():
    listener = lifecycle.InvoiceListener(finalized=payments.payment_invoice_finalized,
                                         voided=payments.payment_invoice_voided,
                                         credit_note_created=payments.payment_credit_note_created)
    assert lifecycle._listeners == [listener]


def test_an_invoice_the_close_finalizes_is_collected_once_it_commits(billing, settings,
                                                                     django_capture_on_commit_callbacks):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_wiring"  # configured: no longer the placeholder, nothing is sent here
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    with mock.patch("apps.payments.tasks.payment_collect_for_invoice_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice.status == "finalized" and invoice.total_due_amount_cents == 11300
    delay.assert_called_once_with(invoice.pk)

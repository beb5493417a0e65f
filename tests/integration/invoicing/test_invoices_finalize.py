"""`invoices_finalize`: the one finalize path, for one invoice (API, admin) and a close batch alike."""
from __future__ import annotations

from datetime import datetime, timezone
from unittest import mock

import pytest

from apps.core.exceptions import NotAllowed
from apps.invoicing.models import Invoice
from apps.invoicing.services import invoice_finalize, invoices_finalize
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_postings_create
from tests.integration.ledger.builders import customer_make, invoice_make

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=timezone.utc)


def _drafts(service, count: int) -> list[Invoice]:
    invoices = [invoice_make(service=service, customer=customer_make(), fees_cents=[1000 + i]) for i in range(count)]
    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(status="draft", number="", series="",
                                                                    sequential_id=None)
    return invoices


def test_numbers_follow_the_given_order_and_finalized_ones_are_skipped(service_factory) -> None:
    service = service_factory().service
    a, b, c = _drafts(service, 3)
    first = invoice_finalize(invoice_id=b.pk, now=NOW)
    assert (first.number, first.sequential_id) == ("NEXA-2026-000001", 1)

    out = invoices_finalize(invoice_ids=[c.pk, b.pk, a.pk], now=NOW)

    assert [invoice.pk for invoice in out] == [c.pk, b.pk, a.pk]
    assert [(invoice.number, invoice.status) for invoice in out] == [
        ("NEXA-2026-000002", "finalized"), ("NEXA-2026-000001", "finalized"), ("NEXA-2026-000003", "finalized")]
    stored = dict(Invoice.objects.values_list("pk", "number"))
    assert (stored[c.pk], stored[b.pk], stored[a.pk]) == ("NEXA-2026-000002", "NEXA-2026-000001", "NEXA-2026-000003")
    assert Invoice.objects.get(pk=a.pk).finalized_at == NOW
    assert sorted(LedgerPosting.objects.values_list("invoice_id", "ref")) == sorted(
        [(a.pk, "NEXA/NEXA-2026-000003"), (b.pk, "NEXA/NEXA-2026-000001"), (c.pk, "NEXA/NEXA-2026-000002")])
    again = invoices_finalize(invoice_ids=[a.pk, b.pk, c.pk], now=NOW)
    assert [invoice.number for invoice in again] == ["NEXA-2026-000003", "NEXA-2026-000001", "NEXA-2026-000002"]
    assert LedgerPosting.objects.count() == 3


def test_a_voided_invoice_refuses_the_whole_call(service_factory) -> None:
    service = service_factory().service
    [a] = _drafts(service, 1)
    b = invoice_make(service=service, customer=customer_make(), fees_cents=[700])
    Invoice.objects.filter(pk=b.pk).update(status="voided")
    with pytest.raises(NotAllowed):
        invoices_finalize(invoice_ids=[a.pk, b.pk], now=NOW)
    assert Invoice.objects.get(pk=a.pk).status == "draft" and not LedgerPosting.objects.exists()


def test_bulk_postings_keep_existing_rows_and_enqueue_only_new_ones_on_commit(
    service_factory, settings, django_capture_on_commit_callbacks
) -> None:
    service = service_factory().service
    invoices = [invoice_make(service=service, customer=customer_make(), fees_cents=[500]) for _ in range(3)]
    settings.LEDGER_ENABLED = True
    with mock.patch("apps.ledger.tasks.ledger_posting_send_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            first = ledger_postings_create(invoices=invoices[:1])
        assert delay.call_args_list == [mock.call(first[0])]
        with django_capture_on_commit_callbacks(execute=True):
            created = ledger_postings_create(invoices=invoices)
            assert delay.call_count == 1  # not before commit
    assert len(first) == 1 and len(created) == 2 and first[0] not in created
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted(first + created)
    assert sorted(LedgerPosting.objects.values_list("ref", flat=True)) == sorted(
        f"NEXA/{invoice.number}" for invoice in invoices)
    assert set(LedgerPosting.objects.values_list("status", "kind", "attempts")) == {("pending", "invoice", 0)}

"""Two workers checking one subscription's thresholds at once issue one progressive billing invoice."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.invoicing.models import Invoice
from apps.webhooks.models import WebhookEvent

from .conftest import at
from .test_progressive_billing import _check, _ingest, _setup

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_checks_issue_one_invoice(billing):
    sub = _setup(billing)
    _ingest(billing, "t1", at(2026, 3, 5), "25")
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            start.wait()
            results.append(_check(sub, at(2026, 3, 5, 11)))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(result is None for result in results) == [False, True]
    invoice = Invoice.objects.get(invoice_type="progressive_billing")
    assert invoice.fees_amount_cents == 2500
    assert WebhookEvent.objects.filter(event_type="subscription.usage_threshold_reached").count() == 2

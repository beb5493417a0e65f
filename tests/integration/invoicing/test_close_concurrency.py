"""Two workers closing at once, and a worker killed mid-close then rerun, leave one clean run's invoices."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.invoicing.close import writing as close_module
from apps.invoicing.close import periods_close
from apps.invoicing.models import CloseRun, Fee, Invoice

from .conftest import at

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOMERS = 6


@pytest.fixture(autouse=True)
def closes_only(monkeypatch):
    """These tests race closes over periods all due at once; immediate billing (subscriptions/lifecycle.py, tested
    in test_immediate_invoices.py) would already bill the first period when each subscription starts."""
    from apps.subscriptions import lifecycle

    monkeypatch.setattr(lifecycle, "_listeners", [])


def _world(billing):
    metric = billing.metric()
    plan = billing.plan(charges=[(metric, "standard", {"amount": "0.5"}, {})], pay_in_advance=True)
    for index in range(CUSTOMERS):
        billing.customer(f"c{index}")
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))


def _assert_one_clean_run():
    # March in advance on 03-01, then April in advance + March usage on 04-01: two invoices per customer.
    assert Invoice.objects.count() == 2 * CUSTOMERS
    per_customer_day = Invoice.objects.values_list("customer_id", "issuing_date")
    assert len(set(per_customer_day)) == 2 * CUSTOMERS
    assert Fee.objects.count() == CUSTOMERS * 3
    numbers = sorted(Invoice.objects.values_list("sequential_id", flat=True))
    assert numbers == list(range(1, 2 * CUSTOMERS + 1))
    assert all(invoice.number.endswith(f"{invoice.sequential_id:06d}") for invoice in Invoice.objects.all())


def test_two_connections_closing_at_once_bill_each_period_once(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    _world(billing)
    as_of = at(2026, 4, 1, 2, 0)
    barrier, runs, errors = threading.Barrier(2), [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            runs.append(periods_close(as_of=as_of))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(runs) == 2
    assert sum(run.failures_count for run in runs) == 0
    assert sum(run.invoices_count for run in runs) == 2 * CUSTOMERS
    _assert_one_clean_run()


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so the per-customer guard cannot swallow it."""


def test_close_killed_midway_then_rerun_bills_exactly_once(billing, settings, monkeypatch):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    _world(billing)
    as_of = at(2026, 4, 1, 2, 0)
    real_write, calls = close_module._write_batch, {"n": 0}

    def dying_write(customers, plans, **kwargs):
        calls["n"] += 1
        written = real_write(customers, plans, **kwargs)  # rows written, transaction still open
        if calls["n"] == 4:
            raise WorkerKilled()
        return written

    monkeypatch.setattr(close_module, "_write_batch", dying_write)
    with pytest.raises(WorkerKilled):
        periods_close(as_of=as_of)
    assert Invoice.objects.count() == 3 * 2  # three customers committed, the fourth rolled back
    assert CloseRun.objects.get().status == CloseRun.Status.RUNNING

    monkeypatch.setattr(close_module, "_write_batch", real_write)
    rerun = periods_close(as_of=as_of)
    assert rerun.invoices_count == 3 * 2 and rerun.failures_count == 0
    _assert_one_clean_run()

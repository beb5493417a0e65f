"""The close split into ranges that Celery workers claim and bill (apps/invoicing/close/distributed.py, issue 22).

The last test runs real `celery worker` processes sharing messages through kombu's filesystem transport (a
directory: no broker to install), kills one with SIGKILL while its range is half billed, and checks that once the
lease passes the sweep hands the range out again and every customer-period ends on exactly one invoice, numbered
without gaps.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from apps.catalog.models import Plan
from apps.customers.models import AccountLink, Customer
from apps.customers.services import service_create
from apps.invoicing.close.distributed import (
    _bounds,
    close_distributed_start,
    close_range_claim,
    close_range_run,
    close_ranges_sweep,
)
from apps.invoicing.models import CloseRange, CloseRun, Invoice
from apps.subscriptions.models import Subscription

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
TORONTO = ZoneInfo("America/Toronto")
STARTED = datetime(2026, 1, 1, tzinfo=TORONTO)
AS_OF = datetime(2026, 2, 1, 12, 0, tzinfo=TORONTO)  # January (in arrears) is due for everyone
BOUND = 120  # seconds for each wait on a loaded machine; never reached when all is well


def _customers(count: int) -> list[int]:
    """`count` Ontario customers, each with one monthly in-arrears subscription from January 1st (bulk: the
    subscription services would bill nothing more, and take seconds per hundred)."""
    service = service_create(code="nexacloud", name="NexaCloud").service
    plan = Plan.objects.create(service=service, code="base", name="Base", interval="monthly", amount_cents=1000,
                               amount_currency="CAD")
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"nexacloud:c{i}", country="CA", state="ON", timezone="America/Toronto",
                  currency="CAD") for i in range(count)])
    links = AccountLink.objects.bulk_create(
        [AccountLink(service=service, customer=customer, external_id=f"c{i}") for i, customer in enumerate(customers)])
    Subscription.objects.bulk_create(
        [Subscription(service=service, account_link=link, customer=link.customer, plan=plan, external_id=f"s{i}",
                      status="active", subscription_at=STARTED, started_at=STARTED) for i, link in enumerate(links)])
    return sorted(customer.pk for customer in customers)


def _one_invoice_per_customer(customer_ids: list[int]) -> None:
    per_customer = dict(Invoice.objects.values_list("customer_id").annotate(count=Count("id")))
    assert per_customer == {customer_id: 1 for customer_id in customer_ids}
    numbers = sorted(Invoice.objects.values_list("sequential_id", flat=True))
    assert numbers == list(range(1, len(customer_ids) + 1))


def test_bounds_cover_every_id_once_in_contiguous_ranges():
    ids = [3, 5, 8, 13, 21, 34, 55]
    bounds = _bounds(ids, 3)
    assert [count for _, _, count in bounds] == [2, 2, 3]
    assert bounds[0][0] == 0 and bounds[-1][1] == 2**63 - 1
    assert all(previous[1] + 1 == following[0] for previous, following in zip(bounds, bounds[1:]))
    assert all(sum(first <= i <= last for first, last, _ in bounds) == 1 for i in range(0, 100))
    assert _bounds(ids, 20) == [(first, last, 1) for first, last, _ in _bounds(ids, 7)]
    assert _bounds([], 4) == [(0, 2**63 - 1, 0)]


def test_ranges_billed_in_process_complete_the_run_and_a_second_start_bills_nothing():
    customer_ids = _customers(12)
    run = close_distributed_start(ranges=4, as_of=AS_OF)  # tasks run eagerly here, each range on commit
    run.refresh_from_db()
    assert run.status == CloseRun.Status.SUCCEEDED and run.finished_at is not None
    assert list(run.ranges.values_list("status", flat=True)) == ["done"] * 4
    assert (run.customers_count, run.invoices_count, run.fees_count) == (12, 12, 12)
    _one_invoice_per_customer(customer_ids)

    again = close_distributed_start(ranges=4, as_of=AS_OF)
    again.refresh_from_db()
    assert again.pk != run.pk and again.invoices_count == 0
    _one_invoice_per_customer(customer_ids)


def test_a_claim_is_a_lease_and_a_range_done_is_never_billed_again(settings):
    settings.INVOICE_CLOSE_RANGE_LEASE_SECONDS = 60
    _customers(3)
    run = CloseRun.objects.create(as_of=AS_OF, customers_count=3)
    piece = CloseRange.objects.create(run=run, first_customer_id=0, last_customer_id=2**63 - 1, customers_count=3)
    now = datetime(2026, 2, 1, 13, 0, tzinfo=TORONTO)
    assert close_range_claim(range_id=piece.pk, worker="a:1", now=now) is not None
    assert close_range_claim(range_id=piece.pk, worker="b:2", now=now + timedelta(seconds=59)) is None
    taken = close_range_claim(range_id=piece.pk, worker="b:2", now=now + timedelta(seconds=61))
    assert (taken.claimed_by, taken.attempts) == ("b:2", 2)

    CloseRange.objects.filter(pk=piece.pk).update(claimed_until=None, status="pending")
    assert close_range_run(range_id=piece.pk, worker="c:3").status == "done"
    assert close_range_run(range_id=piece.pk, worker="d:4") is None
    assert close_ranges_sweep(now=now + timedelta(days=1)) == 0
    assert Invoice.objects.count() == 3


def _test_database_url() -> str:
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(connection.settings_dict["NAME"])))


def _wait(condition, what: str, processes=()) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        for process, log in processes:
            assert process.poll() is None, f"{what}: a process exited:\n{log.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {BOUND}s"
        time.sleep(0.05)


def test_a_worker_killed_mid_range_leaves_its_range_to_the_sweep_and_one_invoice_per_customer(tmp_path, settings):
    customer_ids = _customers(450)
    messages = tmp_path / "broker"
    messages.mkdir()
    lease = 60
    env = {
        **os.environ, "DATABASE_URL": _test_database_url(), "DEBUG": "true",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps({"data_folder_in": str(messages),
                                                       "data_folder_out": str(messages),
                                                       "control_folder": str(messages / "control")}),
        # Small batches, one thread: a range takes many transactions, so the kill lands between two of them.
        "INVOICE_CLOSE_BATCH_SIZE": "5", "INVOICE_CLOSE_BATCH_MIN": "1", "INVOICE_CLOSE_WORKERS": "1",
        "INVOICE_CLOSE_RANGE_LEASE_SECONDS": str(lease),
    }
    env.pop("NEXA_TEST_DB_NAME", None)
    workers = []
    try:
        for index in range(3):
            log = tmp_path / f"worker{index}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "nexabilling", "worker", "-Q", "close", "--pool", "solo",
                     "-n", f"close{index}@%h", "-l", "info", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                )
            workers.append((process, log))
        for process, log in workers:
            _wait(lambda log=log: "ready." in log.read_text(errors="replace"), "worker ready", workers)

        started = subprocess.run(
            [sys.executable, "manage.py", "close_periods", "--as-of", AS_OF.isoformat(), "--ranges", "3"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=BOUND,
        )
        assert started.returncode == 0, started.stderr
        run = CloseRun.objects.filter(ranges__isnull=False).distinct().get()

        def half_billed():
            for piece in CloseRange.objects.filter(run=run, status="running"):
                billed = Invoice.objects.filter(customer_id__gte=piece.first_customer_id,
                                                customer_id__lte=piece.last_customer_id).count()
                if 10 <= billed < piece.customers_count - 20:
                    return piece
            return None

        _wait(lambda: half_billed() is not None, "a range half billed", workers)
        victim = half_billed()
        pid = int(victim.claimed_by.rsplit(":", 1)[1])
        killed = next(process for process, _ in workers if process.pid == pid)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        survivors = [(process, log) for process, log in workers if process is not killed]

        victim.refresh_from_db()
        assert victim.status == "running"  # died mid-range: nothing marked it done
        billed_at_kill = Invoice.objects.filter(customer_id__gte=victim.first_customer_id,
                                                customer_id__lte=victim.last_customer_id).count()
        assert 0 < billed_at_kill < victim.customers_count
        _wait(lambda: CloseRange.objects.filter(run=run).exclude(pk=victim.pk).exclude(status="done").count() == 0,
              "the other ranges done", survivors)
        run.refresh_from_db()
        assert run.finished_at is None  # a range is still held by a dead worker

        # Within its lease nobody takes it; after, the sweep sends it again (here the sweep runs in this process,
        # so the range is billed here: tasks are eager without a broker; the clock moves past the lease).
        assert close_ranges_sweep() == 0
        with time_machine.travel(timezone.now() + timedelta(seconds=lease + 1), tick=True):
            assert close_ranges_sweep() == 1
        victim.refresh_from_db()
        run.refresh_from_db()
        assert (victim.status, victim.attempts) == ("done", 2)
        assert run.status == CloseRun.Status.SUCCEEDED and run.finished_at is not None
        _one_invoice_per_customer(customer_ids)
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def test_the_sweep_completes_a_run_whose_last_worker_died_before_completing_it():
    customer_ids = _customers(2)
    run = CloseRun.objects.create(as_of=AS_OF, customers_count=2)
    piece = CloseRange.objects.create(run=run, first_customer_id=0, last_customer_id=2**63 - 1, customers_count=2)
    close_range_run(range_id=piece.pk)
    CloseRun.objects.filter(pk=run.pk).update(finished_at=None, status="running", invoices_count=0)
    assert close_distributed_start(ranges=2, as_of=AS_OF).pk == run.pk  # unfinished: returned, not split again

    assert close_ranges_sweep() == 0
    run.refresh_from_db()
    assert (run.status, run.invoices_count) == ("succeeded", 2) and run.finished_at is not None
    assert close_distributed_start(ranges=2, as_of=AS_OF).pk != run.pk
    _one_invoice_per_customer(customer_ids)


def test_the_admin_shows_a_distributed_runs_ranges(admin_client):
    _customers(4)
    run = close_distributed_start(ranges=2, as_of=AS_OF)
    response = admin_client.get(f"/admin/invoicing/closerun/{run.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Close ranges" in page
    assert page.count(">Done</div>") == 2

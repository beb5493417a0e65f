"""The batched close (many customers per transaction) bills exactly what the one-by-one close bills.

`INVOICE_CLOSE_BATCH_MIN = 1` forces every chunk through `close_batch`; the matrix, the close tests and the
two-closers test are collected again here under that setting, plus tests for what only batches do: a bad
customer inside a batch, a batch that dies or fails mid-write, a customer locked by another worker.
"""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.customers.models import Customer
from apps.invoicing.close import writing as writer_module  # the close calls invoices_finalize from here
from apps.invoicing.close import close_batch, periods_close
from apps.invoicing.models import CloseRun, CloseRunCustomer, Fee, Invoice
from apps.ledger.models import LedgerPosting
from apps.subscriptions.models import Subscription

from . import test_close, test_close_concurrency, test_close_matrix
from .conftest import at, fake_usage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def closes_only(monkeypatch):
    """These tests race closes over periods all due at once; immediate billing (subscriptions/lifecycle.py, tested
    in test_immediate_invoices.py) would already bill the first period when each subscription starts."""
    from apps.subscriptions import lifecycle

    monkeypatch.setattr(lifecycle, "_listeners", [])


@pytest.fixture(autouse=True)
def batched(settings):
    settings.INVOICE_CLOSE_BATCH_MIN = 1
    settings.INVOICE_CLOSE_BATCH_SIZE = 4


# The same scenarios, every customer through close_batch.
test_matrix_batched = test_close_matrix.test_close_bills_exact_base_fees
test_two_closers_batched = pytest.mark.django_db(transaction=True)(
    test_close_concurrency.test_two_connections_closing_at_once_bill_each_period_once
)
for _name in dir(test_close):
    if _name.startswith("test_"):
        globals()[f"{_name}_batched"] = getattr(test_close, _name)


def _world(billing, settings):
    """Nine customers over three batches of four: taxes per province, two currencies, grace periods,
    terminations, two subscriptions on one customer, usage charges with a minimum."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    arrears = billing.plan("arrears", charges=[(metric, "standard", {"amount": "0.125"}, {"min_amount_cents": 500})])
    advance = billing.plan("advance", amount_cents=4999, pay_in_advance=True,
                           charges=[(metric, "graduated", {"graduated_ranges": [
                               {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
                               {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"},
                           ]}, {})])
    usd = billing.plan("usd", amount_cents=1500, currency="USD")
    provinces = ["ON", "QC", "BC", "NS", "AB", "ON", "MB", "NB", "ON"]
    subs, usage = [], {}
    for index, province in enumerate(provinces):
        grace = {"invoice_grace_period": 3} if index % 4 == 1 else {}
        billing.customer(f"c{index}", province=province, **grace)
        plan = advance if index % 2 else arrears
        sub = billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1 + index, 0, 0))
        subs.append(sub)
        usage[(sub.pk, metric.pk)] = (str(3 * index + 1), index + 1)
    subs.append(billing.subscribe("u2", usd, customer="c2", when=at(2026, 3, 5, 0, 0)))
    billing.terminate(subs[3], when=at(2026, 4, 10, 15, 0))
    billing.terminate(subs[6], when=at(2026, 3, 20, 15, 0))
    return fake_usage(usage)


def _snapshot() -> dict:
    """Everything the close wrote, without row ids and creation times."""
    invoices = []
    for invoice in Invoice.objects.select_related("customer").order_by("customer__external_id", "issuing_date",
                                                                        "currency", "close_key"):
        invoices.append((
            invoice.customer.external_id, invoice.close_key, invoice.status, invoice.series, invoice.number,
            invoice.sequential_id, invoice.issuing_date, invoice.payment_due_date, invoice.grace_until,
            invoice.finalized_at, invoice.fees_amount_cents, invoice.taxes_amount_cents, invoice.total_amount_cents,
            invoice.sub_total_including_taxes_amount_cents,
            sorted(invoice.applied_taxes.values_list("tax_code", "tax_rate", "base_amount_cents", "amount_cents")),
            sorted(invoice.billing_periods.values_list("subscription__external_id", "from_datetime", "to_datetime",
                                                       "charges_from_datetime", "charges_to_datetime")),
            sorted(
                (fee.fee_key, fee.fee_type, fee.name, fee.units, fee.events_count, fee.precise_amount, fee.amount_cents,
                 fee.taxes_amount_cents, fee.taxes_rate, repr(fee.applied_taxes), repr(fee.amount_details),
                 fee.from_datetime, fee.to_datetime, fee.service_id)
                for fee in invoice.fees.all()
            ),
        ))
    return {
        "invoices": invoices,
        "ledger": sorted(LedgerPosting.objects.values_list("kind", "ref", "invoice__close_key")),
        "billed_until": sorted(Subscription.objects.values_list("external_id", "usage_billed_until")),
        "outcomes": sorted(CloseRunCustomer.objects.values_list("customer__external_id", "outcome", "invoices_count",
                                                                "fees_count")),
    }


def _closes(settings, usage, *, batch_min: int) -> dict:
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    for as_of in (at(2026, 3, 9, 12, 0), at(2026, 4, 1, 2, 0), at(2026, 4, 11, 0, 30), at(2026, 5, 1, 2, 0)):
        periods_close(as_of=as_of, fetch=usage)
    assert periods_close(as_of=at(2026, 5, 1, 2, 0), fetch=usage).invoices_count == 0
    return _snapshot()


class _Undo(Exception):
    pass


def test_batches_write_the_same_rows_as_one_by_one(billing, settings, caplog):
    usage = _world(billing, settings)
    try:
        with transaction.atomic():
            batched = _closes(settings, usage, batch_min=1)
            raise _Undo()
    except _Undo:
        pass
    # The batches wrote the rows themselves: none failed over to the one-by-one path.
    assert not [record for record in caplog.records if record.getMessage().startswith("close batch failed")]
    assert Invoice.objects.count() == 0
    one_by_one = _closes(settings, usage, batch_min=10_000)
    assert len(batched["invoices"]) >= 20 and any(row[2] == "draft" for row in batched["invoices"])
    assert batched == one_by_one


def test_bad_customer_inside_a_batch_is_recorded_and_the_others_billed(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan()
    for index in range(5):
        billing.customer(f"c{index}", province="ZZ" if index == 2 else "ON")  # ZZ: no tax row lists it: refused
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))

    run = periods_close(as_of=at(2026, 4, 1, 1, 0))

    assert run.status == CloseRun.Status.PARTIAL and run.failures_count == 1 and run.invoices_count == 4
    failed = run.outcomes.get(outcome=CloseRunCustomer.Outcome.FAILED)
    assert failed.customer.external_id.endswith(":c2") and "ZZ" in failed.error
    assert sorted(Invoice.objects.values_list("sequential_id", flat=True)) == [1, 2, 3, 4]
    again = periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert again.invoices_count == 0 and again.failures_count == 1 and Invoice.objects.count() == 4


def test_batch_failing_at_write_falls_back_to_one_by_one(billing, settings, monkeypatch):
    usage = _world(billing, settings)
    real, calls = writer_module.invoices_finalize, {"n": 0}

    def failing(**kwargs):
        calls["n"] += 1
        real(**kwargs)  # numbers taken and rows written, then the batch fails
        if calls["n"] == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module, "invoices_finalize", failing)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0), fetch=usage)
    assert calls["n"] >= 2 and run.failures_count == 0
    numbers = sorted(Invoice.objects.exclude(sequential_id=None).values_list("sequential_id", flat=True))
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) == run.invoices_count - Invoice.objects.filter(
        status="draft").count()
    assert Invoice.objects.values("customer_id", "issuing_date", "currency").distinct().count() == Invoice.objects.count()
    assert periods_close(as_of=at(2026, 4, 1, 2, 0), fetch=usage).invoices_count == 0


class WorkerKilled(BaseException):
    pass


@pytest.mark.django_db(transaction=True)
def test_batch_killed_midway_then_rerun_bills_exactly_once(billing, settings, monkeypatch):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    test_close_concurrency._world(billing)  # six customers: batches of four and two
    real, calls = writer_module.invoices_finalize, {"n": 0}

    def dying(**kwargs):
        calls["n"] += 1
        real(**kwargs)
        if calls["n"] == 2:
            raise WorkerKilled()

    monkeypatch.setattr(writer_module, "invoices_finalize", dying)
    with pytest.raises(WorkerKilled):
        periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert Invoice.objects.count() == 4 * 2  # the first batch committed, the second rolled back
    monkeypatch.setattr(writer_module, "invoices_finalize", real)
    rerun = periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert rerun.invoices_count == 2 * 2 and rerun.failures_count == 0
    test_close_concurrency._assert_one_clean_run()


@pytest.mark.django_db(transaction=True)
def test_batch_skips_a_customer_locked_by_another_worker(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    test_close_concurrency._world(billing)
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_worker():  # a one-by-one close holding customer 3's lock
        try:
            with transaction.atomic():
                Customer.objects.select_for_update().get(pk=ids[3])
                held.set()
                release.wait(timeout=30)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(timeout=10)
        result = close_batch(customer_ids=ids, as_of=at(2026, 4, 1, 2, 0))
        assert result.left == [ids[3]] and sorted(result.billed) == sorted(set(ids) - {ids[3]})
        assert not Invoice.objects.filter(customer_id=ids[3]).exists()
    finally:
        release.set()
        thread.join(timeout=30)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert run.invoices_count == 2 and set(run.outcomes.values_list("customer_id", flat=True)) == {ids[3]}
    test_close_concurrency._assert_one_clean_run()


@pytest.mark.parametrize("change", ["terminated", "plan swapped by raw SQL"])
def test_batch_replans_a_subscription_changed_after_the_prepass(billing, settings, monkeypatch, change):
    """The batch reuses the prepass's rows only if their digest is unchanged under its locks: a change made
    in between (an ORM save, or a raw UPDATE that leaves updated_at alone) is billed as it is at lock time."""
    from apps.invoicing.close import pipeline as close_module

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    full, cheaper = billing.plan("full", amount_cents=3100), billing.plan("cheaper", amount_cents=310)
    subs = []
    for index in range(3):
        billing.customer(f"c{index}")
        subs.append(billing.subscribe(f"s{index}", full, customer=f"c{index}", when=at(2026, 3, 1, 0, 0)))
    real_prepass = close_module.close_prepass

    def prepass_then_change(*args, **kwargs):
        result = real_prepass(*args, **kwargs)
        if change == "terminated":
            billing.terminate(subs[1], when=at(2026, 3, 10, 15, 0))
        else:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE subscriptions_subscription SET plan_id = %s WHERE id = %s", [cheaper.pk, subs[1].pk])
        return result

    monkeypatch.setattr(close_module, "close_prepass", prepass_then_change)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))

    assert run.invoices_count == 3 and run.failures_count == 0
    totals = {invoice.customer.external_id.rsplit(":", 1)[-1]: invoice.fees_amount_cents
              for invoice in Invoice.objects.select_related("customer")}
    # terminated on March 10 (counted): 10 of 31 days of 31.00; swapped: the whole month at 3.10
    assert totals == {"c0": 3100, "c1": 1000 if change == "terminated" else 310, "c2": 3100}
    assert periods_close(as_of=at(2026, 4, 1, 2, 0)).invoices_count == 0


def test_batch_replans_a_customer_billed_after_the_prepass(billing, settings, monkeypatch, caplog):
    """The prepass's lines are reused only if what they were planned from (scan start, billed fees) is the same under
    the locks: a customer another worker billed in between gets nothing more, without a failed batch."""
    from apps.invoicing.close import pipeline as close_module
    from apps.invoicing.close import close_customer

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan("full", amount_cents=3100)
    links = []
    for index in range(3):
        links.append(billing.customer(f"c{index}"))
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))
    real_prepass = close_module.close_prepass

    def prepass_then_other_worker(*args, **kwargs):
        result = real_prepass(*args, **kwargs)
        assert close_customer(customer_id=links[1].customer_id, as_of=at(2026, 4, 1, 2, 0)) == (1, 1)
        return result

    monkeypatch.setattr(close_module, "close_prepass", prepass_then_other_worker)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))

    assert not [record for record in caplog.records if record.getMessage().startswith("close batch failed")]
    assert run.invoices_count == 2 and Invoice.objects.count() == 3 and Fee.objects.count() == 3
    assert sorted(Invoice.objects.values_list("sequential_id", flat=True)) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_batches_on_threads_number_in_customer_order_as_one_thread_does(billing, settings, monkeypatch):
    """Outside a transaction the batches run on INVOICE_CLOSE_WORKERS threads; chunk k takes numbers only after
    chunks 0..k-1 committed, so the numbers come out as a one-thread close gives them: by customer."""
    import time

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_WORKERS = 3
    plan = billing.plan()
    for index in range(11):  # three batches of four on three threads
        billing.customer(f"c{index}")
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))
    first_customer = Customer.objects.order_by("pk").values_list("pk", flat=True)[0]
    threads_seen = set()
    real = writer_module.invoices_finalize

    def first_chunk_slow(**kwargs):
        threads_seen.add(threading.current_thread().name)
        if any(invoice.customer_id == first_customer for invoice in kwargs.get("held") or ()):
            time.sleep(0.5)  # the later chunks are written by now, and must wait for their turn
        return real(**kwargs)

    monkeypatch.setattr(writer_module, "invoices_finalize", first_chunk_slow)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))

    assert run.invoices_count == 11 and run.failures_count == 0
    assert len(threads_seen) > 1 and all(name.startswith("close") for name in threads_seen)
    by_customer = list(Invoice.objects.order_by("customer_id").values_list("sequential_id", flat=True))
    assert by_customer == list(range(1, 12))
    assert periods_close(as_of=at(2026, 4, 1, 2, 0)).invoices_count == 0


def _usage_world(billing, customers: int) -> dict[str, Decimal]:
    """`customers` customers, each with one subscription and a different amount of stored usage in March."""
    from apps.usage.services import usage_events_ingest
    from apps.usage.validation import EventIn

    metric = billing.metric()
    plan = billing.plan("metered", amount_cents=1000, charges=[(metric, "standard", {"amount": "0.25"}, {})])
    expected = {}
    for index in range(customers):
        billing.customer(f"c{index}")
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))
        usage_events_ingest(
            service=billing.service,
            events=[
                EventIn(transaction_id=f"t{index}-{n}", external_subscription_id=f"s{index}", code="gb",
                        timestamp=int(at(2026, 3, 10 + n, 12, 0).timestamp()), properties={"gb": str(index + n)})
                for n in range(2)
            ],
            now=at(2026, 3, 20, 0, 0),
        )
        expected[f"c{index}"] = 1000 + (Decimal(2 * index + 1) * Decimal("0.25") * 100).quantize(Decimal(1))
    return expected


def _fees_by_customer() -> dict[str, int]:
    return {
        invoice.customer.external_id.rsplit(":", 1)[-1]: invoice.fees_amount_cents
        for invoice in Invoice.objects.select_related("customer")
    }


@pytest.mark.django_db(transaction=True)
def test_pipelined_chunks_bill_what_one_sequential_pass_bills(billing, settings, monkeypatch):
    """Outside a transaction the close plans, aggregates and bills chunk by chunk on threads (`_Pipeline`):
    with chunks of three, the aggregate of a later chunk runs while earlier batches bill, and the result is the
    usage-exact invoices a sequential pass gives, numbered by customer."""
    from apps.invoicing.close import pipeline as close_module

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_WORKERS = 2
    settings.INVOICE_CLOSE_BATCH_SIZE = 2
    monkeypatch.setattr(close_module, "CLOSE_PLAN_CHUNK", 3)
    expected = _usage_world(billing, 8)
    aggregated_on = []
    real = close_module._prefetched

    def recording(windows, **kwargs):
        aggregated_on.append((threading.current_thread().name, sorted(pk for ids in windows.values() for pk in ids)))
        return real(windows, **kwargs)

    monkeypatch.setattr(close_module, "_prefetched", recording)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))

    assert run.invoices_count == 8 and run.failures_count == 0
    assert _fees_by_customer() == {name: int(cents) for name, cents in expected.items()}
    assert [len(ids) for _, ids in aggregated_on] == [2, 2, 2, 2]  # one aggregate per chunk (`close_chunks`)
    assert all(name.startswith("close-aggregate") for name, _ in aggregated_on)
    by_customer = list(Invoice.objects.order_by("customer_id").values_list("sequential_id", flat=True))
    assert by_customer == list(range(1, 9))
    assert periods_close(as_of=at(2026, 4, 1, 2, 0)).invoices_count == 0


@pytest.mark.timeout(90)  # the deadlock this guards against would otherwise hang until the suite's limit
@pytest.mark.django_db(transaction=True)
def test_a_failed_aggregate_falls_back_to_live_queries_and_leaves_no_connection_open(billing, settings, monkeypatch):
    from apps.invoicing.close import pipeline as close_module

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_WORKERS = 2
    settings.INVOICE_CLOSE_BATCH_SIZE = 2
    monkeypatch.setattr(close_module, "CLOSE_PLAN_CHUNK", 3)
    expected = _usage_world(billing, 5)

    def failing(windows, **kwargs):
        raise RuntimeError("aggregate lost its connection")

    def backends() -> int:
        with connection.cursor() as cursor:
            # Client connections only: an autovacuum worker on this database is a backend too.
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND backend_type = 'client backend'")
            return cursor.fetchone()[0]

    # Each batch now aggregates inside its own transaction. The rollup's watermark row must already be committed
    # when the first batch starts: two batches inserting it at once wait on each other's insert while the later
    # one waits for the earlier one's turn to number (a deadlock seen in 2 of 6 suite runs before the fix).
    from apps.usage.models import UsageRollupState

    UsageRollupState.objects.all().delete()
    watermark_committed = []
    real_chunk = close_module._close_chunk

    def chunk_recording(*args, **kwargs):
        watermark_committed.append(UsageRollupState.objects.filter(pk=1).exists())  # this thread's own connection
        return real_chunk(*args, **kwargs)

    # ... and the batches' own transactions never read usage (nor hold the watermark's lock): the live
    # queries run on the aggregating thread.
    from apps.usage import aggregation

    read_on = []
    real_totals = aggregation.usage_totals

    def totals_recording(**kwargs):
        read_on.append(threading.current_thread().name)
        return real_totals(**kwargs)

    before = backends()
    monkeypatch.setattr(close_module, "_prefetched", failing)
    monkeypatch.setattr(close_module, "_close_chunk", chunk_recording)
    monkeypatch.setattr(aggregation, "usage_totals", totals_recording)
    run = periods_close(as_of=at(2026, 4, 1, 2, 0))

    assert watermark_committed and all(watermark_committed)
    assert read_on and all(name.startswith("close-aggregate") for name in read_on)
    assert run.invoices_count == 5 and run.failures_count == 0
    assert _fees_by_customer() == {name: int(cents) for name, cents in expected.items()}
    assert backends() == before  # the stage threads' connections were closed


def test_the_close_spaces_young_collections_and_restores_the_threshold(billing, settings, monkeypatch):
    """A close raises the GC's first threshold while it runs (cheaper collections), and puts it back after."""
    import gc

    from apps.invoicing.close import pipeline as close_module

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("c0")
    billing.subscribe("s0", billing.plan(), customer="c0", when=at(2026, 3, 1, 0, 0))
    before = gc.get_threshold()
    seen = []
    real = close_module.close_prepass

    def recording(*args, **kwargs):
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(close_module, "close_prepass", recording)
    assert periods_close(as_of=at(2026, 4, 1, 2, 0)).invoices_count == 1
    assert seen and seen[0][0] >= 50_000 and seen[0][1:] == before[1:]
    assert gc.get_threshold() == before


def test_batch_inserts_invoices_due_at_once_finalized_without_updating_them(billing, settings):
    """An invoice with no grace period is written once, already numbered: no draft row updated afterwards
    (that update cost as much as the insert, and left a dead row per invoice)."""
    from django.db import connection as default_connection
    from django.test.utils import CaptureQueriesContext

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan()
    for index in range(6):
        billing.customer(f"c{index}")
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))
    with CaptureQueriesContext(default_connection) as queries:
        run = periods_close(as_of=at(2026, 4, 1, 2, 0))
    assert run.invoices_count == 6
    assert not [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith("UPDATE \"INVOICING_INVOICE\"")
                or query["sql"].lstrip().upper().startswith("UPDATE INVOICING_INVOICE")]
    invoices = list(Invoice.objects.order_by("customer__external_id"))
    assert [invoice.status for invoice in invoices] == ["finalized"] * 6
    assert [invoice.sequential_id for invoice in invoices] == list(range(1, 7))
    with connection.cursor() as cursor:  # one row version per invoice: inserted, never updated
        cursor.execute("SELECT count(*) FROM invoicing_invoice WHERE xmax = 0")
        assert cursor.fetchone()[0] == 6


def test_the_close_reads_customers_set_based_never_one_by_one(billing, settings):
    """Planning loads customers with only the fields it reads (`_load_subscriptions`); a field read beyond them
    would fetch each customer again, one query per customer: none here."""
    from django.db import connection as default_connection
    from django.test.utils import CaptureQueriesContext

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan()
    for index in range(6):
        billing.customer(f"c{index}")
        billing.subscribe(f"s{index}", plan, customer=f"c{index}", when=at(2026, 3, 1, 0, 0))
    with CaptureQueriesContext(default_connection) as queries:
        assert periods_close(as_of=at(2026, 4, 1, 2, 0)).invoices_count == 6
    one_by_one = [query["sql"] for query in queries
                  if 'FROM "customers_customer"' in query["sql"] and '"customers_customer"."id" = ' in query["sql"]
                  and '"customers_customer"."id" = ANY(' not in query["sql"] and "FOR UPDATE" not in query["sql"]]
    assert one_by_one == []

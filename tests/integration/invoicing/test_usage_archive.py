"""A billed month's raw usage archived and restored: invoices and rollups unchanged, the month re-aggregates to its
invoice (issue 22)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command

from apps.invoicing.close import periods_close
from apps.invoicing.close.planning import current_usage_lines
from apps.invoicing.models import Fee, Invoice
from apps.usage.aggregation import usage_totals
from apps.usage.models import UsageDaily, UsageEvent, UsageRollupState
from apps.usage.partitions import usage_partitions_ensure, usage_partitions_list
from apps.usage.services import usage_events_ingest, usage_rollup_advance
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db

# (transaction id, local day, gb): three closed months and the current one.
USAGE = {
    3: [("m1", 5, "10"), ("m2", 10, "2.5"), ("m3", 20, "7")],
    4: [("a1", 6, "4"), ("a2", 15, "1.25")],
    5: [("y1", 3, "8"), ("y2", 12, "3"), ("y3", 28, "0.5")],
    6: [("j1", 2, "6"), ("j2", 9, "1.5")],
}


def ingest(billing, month: int, rows, *, now):
    return usage_events_ingest(service=billing.service, now=now, events=[
        event for tid, day, gb in rows for event in (
            EventIn(transaction_id=tid, external_subscription_id="s1", code="gb", timestamp=int(at(2026, month, day).timestamp()),
                    properties={"gb": gb}),
            EventIn(transaction_id=f"{tid}-call", external_subscription_id="s1", code="calls",
                    timestamp=int(at(2026, month, day).timestamp()), properties={}),
        )])


def invoices_snapshot() -> list[tuple]:
    return [
        (invoice.pk, invoice.status, invoice.number, invoice.total_amount_cents,
         sorted((fee.fee_type, fee.charge_id, str(fee.units), fee.events_count, fee.amount_cents)
                for fee in invoice.fees.all()))
        for invoice in Invoice.objects.order_by("pk")
    ]


def rollup_snapshot() -> list[tuple]:
    return list(UsageDaily.objects.order_by("day", "billable_metric_id").values_list(
        "day", "billable_metric_id", "events_count", "value_sum", "total_sum"))


def test_an_archived_month_leaves_invoices_and_rollups_alone_and_restores_to_its_invoice_totals(billing, settings, tmp_path):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.USAGE_RAW_RETENTION_MONTHS = 0
    gb, calls = billing.metric(), billing.metric(code="calls", aggregation_type="count_agg")
    plan = billing.plan(amount_cents=1000, charges=[(gb, "standard", {"amount": "0.5"}, {}),
                                                    (calls, "standard", {"amount": "0.1"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage_partitions_ensure(now=at(2026, 3, 1), months_ahead=3)  # March to June, as the beat task keeps them
    for month in (3, 4, 5):
        ingest(billing, month, USAGE[month], now=at(2026, month, 28, 12))
        periods_close(as_of=at(2026, month + 1, 1, 1, 0))
    ingest(billing, 6, USAGE[6], now=at(2026, 6, 10, 12))
    usage_rollup_advance()
    march = Invoice.objects.order_by("pk").first()
    march_fees = {fee.charge.billable_metric_id: fee for fee in march.fees.filter(fee_type="charge")}
    assert (march.status, march_fees[gb.pk].units, march_fees[calls.pk].units) == ("finalized", Decimal("19.5"), 3)
    invoices, rollups = invoices_snapshot(), rollup_snapshot()
    assert len(invoices) == 3

    def current_units():
        _, _, _, lines = current_usage_lines(sub, at=at(2026, 6, 15))
        return {line.charge.billable_metric_id: line.units for line in lines}

    assert current_units() == {gb.pk: Decimal("7.5"), calls.pk: 2}
    out = tmp_path / "march.csv.gz"

    call_command("usage_archive", "--month", "2026-03", "--out", str(out))

    assert date(2026, 3, 1) not in usage_partitions_list() and out.exists()
    assert UsageEvent.objects.filter(transaction_id__startswith="m").count() == 0
    assert UsageEvent.objects.count() == 2 * (2 + 3 + 2)
    assert invoices_snapshot() == invoices and rollup_snapshot() == rollups
    assert current_units() == {gb.pk: Decimal("7.5"), calls.pk: 2}
    # Closing again bills nothing twice; a re-sent archived transaction_id is still a duplicate.
    assert periods_close(as_of=at(2026, 6, 1, 1, 0)).invoices_count == 0
    assert ingest(billing, 3, USAGE[3][:1], now=at(2026, 6, 10, 12)).accepted == 0

    call_command("usage_restore", str(out))

    assert date(2026, 3, 1) in usage_partitions_list()
    assert UsageEvent.objects.filter(transaction_id__startswith="m").count() == 6
    assert invoices_snapshot() == invoices and rollup_snapshot() == rollups
    # Re-aggregate March from the raw rows alone: no rollup rows, a watermark of 0 (usage_totals then reads every
    # row of the period from the usage table), against what March's invoice billed.
    UsageDaily.objects.all().delete()
    UsageRollupState.objects.filter(pk=1).update(last_event_id=0)
    line = march.billing_periods.get()
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=march_fees[gb.pk].from_datetime,
                          to_datetime=march_fees[gb.pk].to_datetime)
    assert {metric: (total.units, total.events_count) for (_, metric), total in totals.items()} == {
        metric: (fee.units, fee.events_count) for metric, fee in march_fees.items()}
    assert line.subscription_id == sub.pk and Fee.objects.filter(invoice=march).count() == 3


def test_the_beat_archiver_archives_an_old_billed_month_leaves_recent_and_unbilled_ones_and_restores_to_its_invoice(
        billing, settings, tmp_path):
    import time_machine
    from django.conf import settings as django_settings

    from apps.usage.models import UsageArchive
    from apps.usage.tasks import usage_months_archive_due_task
    from nexabilling.celery import app

    entry = django_settings.CELERY_BEAT_SCHEDULE["usage-archive"]
    assert entry["task"] == "apps.usage.tasks.usage_months_archive_due_task"
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "usage-maintenance"
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.USAGE_RAW_RETENTION_MONTHS = 0
    settings.USAGE_ARCHIVE_AFTER_MONTHS = 1  # in mid-June: March and April are due, May and June are not
    settings.USAGE_ARCHIVE_DIR = tmp_path
    gb, calls = billing.metric(), billing.metric(code="calls", aggregation_type="count_agg")
    charges = [(gb, "standard", {"amount": "0.5"}, {}), (calls, "standard", {"amount": "0.1"}, {})]
    plan = billing.plan(amount_cents=1000, charges=charges)
    yearly = billing.plan("yearly", interval="yearly", amount_cents=50000, charges=charges)
    billing.customer()
    billing.customer("beta")
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    billing.subscribe("y1", yearly, customer="beta", when=at(2026, 4, 1, 0, 0))  # its year closes in 2027
    usage_partitions_ensure(now=at(2026, 3, 1), months_ahead=3)
    for month in (3, 4, 5):
        ingest(billing, month, USAGE[month], now=at(2026, month, 28, 12))
        if month == 4:  # April holds usage of a period not yet closed: April must stay
            usage_events_ingest(service=billing.service, now=at(2026, 4, 28, 12), events=[EventIn(
                transaction_id="y-april", external_subscription_id="y1", code="gb",
                timestamp=int(at(2026, 4, 10).timestamp()), properties={"gb": "9"})])
        periods_close(as_of=at(2026, month + 1, 1, 1, 0))
    ingest(billing, 6, USAGE[6], now=at(2026, 6, 10, 12))
    usage_rollup_advance()
    march = Invoice.objects.order_by("pk").first()  # the yearly subscription starts after March's close
    march_fees = {fee.charge.billable_metric_id: fee for fee in march.fees.filter(fee_type="charge")}
    assert (march.status, march_fees[gb.pk].units, march_fees[calls.pk].units) == ("finalized", Decimal("19.5"), 3)
    invoices, rollups = invoices_snapshot(), rollup_snapshot()

    with time_machine.travel(at(2026, 6, 15), tick=False):
        usage_months_archive_due_task.delay()
        usage_months_archive_due_task.delay()  # a duplicate message, a second beat: nothing archived twice

    partitions = usage_partitions_list()
    assert date(2026, 3, 1) not in partitions
    assert {date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1)} <= set(partitions)
    archived = UsageArchive.objects.get(month=date(2026, 3, 1))
    assert (archived.status, archived.rows, archived.attempts) == ("archived", 6, 1)
    april = UsageArchive.objects.get(month=date(2026, 4, 1))
    assert (april.status, april.last_error, april.attempts) == (
        "skipped", "2026-04 still holds 1 rows in a period not yet invoiced", 2)
    assert not UsageArchive.objects.filter(month__gte=date(2026, 5, 1)).exists()
    assert UsageEvent.objects.filter(transaction_id__startswith="m").count() == 0
    assert UsageEvent.objects.filter(transaction_id__in=["a1", "y-april", "y1", "j1"]).count() == 4
    assert invoices_snapshot() == invoices and rollup_snapshot() == rollups
    assert periods_close(as_of=at(2026, 6, 1, 1, 0)).invoices_count == 0

    call_command("usage_restore", archived.path)

    assert date(2026, 3, 1) in usage_partitions_list()
    assert UsageEvent.objects.filter(transaction_id__startswith="m").count() == 6
    assert UsageArchive.objects.get(month=date(2026, 3, 1)).restored_at is not None
    assert invoices_snapshot() == invoices and rollup_snapshot() == rollups
    UsageDaily.objects.all().delete()  # re-aggregate March from the raw rows alone, against its invoice
    UsageRollupState.objects.filter(pk=1).update(last_event_id=0)
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=march_fees[gb.pk].from_datetime,
                          to_datetime=march_fees[gb.pk].to_datetime)
    assert {metric: (total.units, total.events_count) for (_, metric), total in totals.items()} == {
        metric: (fee.units, fee.events_count) for metric, fee in march_fees.items()}
    assert sum(fee.amount_cents for fee in march_fees.values()) == 19 * 50 + 25 + 3 * 10  # 19.5 GB at $0.50, 3 calls

    # A month restored by hand stays until staff archive it again: the beat leaves it.
    with time_machine.travel(at(2026, 6, 16), tick=False):
        usage_months_archive_due_task.delay()
    assert date(2026, 3, 1) in usage_partitions_list()

"""Pricing group keys (Lago `pricing_group_keys`, formerly `grouped_by`) through the close and current usage: one fee
per distinct combination of the keys' values in the period's usage, each priced on its own with the charge model.

Expected values: Lago's guide, "Group keys": a Storage charge at $1 per GB (sum of gb) with
`pricing_group_keys: ["region"]`, receiving 10 GB in EU and 15 GB in US, gives two fees, $10.00 and $15.00.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.models import ChargeFilter, UsageThreshold
from apps.invoicing.close import current_usage_lines, periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db


def ingest(billing, rows, *, now, sub="s1", month=3):
    """rows: (transaction id, day of the month of 2026, properties)."""
    result = usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id=sub, code="gb",
                        timestamp=int(at(2026, month, day).timestamp()), properties=props)
                for tid, day, props in rows],
        now=now,
    )
    return result


def _charge_fees(invoice) -> dict:
    return {(fee.charge_filter_id, tuple(sorted(fee.grouped_by.items(), key=lambda item: item[0]))):
            (fee.units, fee.events_count, fee.amount_cents)
            for fee in invoice.fees.filter(fee_type="charge")}


@pytest.fixture
def storage(billing, settings):
    """Lago's documented example: $1 per GB, grouped by region; 10 GB in EU (two events) and 15 GB in US."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["region"]}, {})])
    billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [
        ("t1", 2, {"gb": "4", "region": "EU"}),
        ("t2", 3, {"gb": "15", "region": "US"}),
        ("t3", 4, {"gb": "6", "region": "EU"}),
    ], now=at(2026, 3, 10))
    return billing, subscription, plan.charges.get()


def test_lagos_example_bills_one_fee_per_region_and_a_rerun_bills_nothing_twice(storage):
    _, _, charge = storage
    run = periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert run.failures_count == 0 and run.invoices_count == 1
    invoice = Invoice.objects.get()
    assert _charge_fees(invoice) == {
        (None, (("region", "EU"),)): (Decimal(10), 2, 1000),  # 10 GB × $1
        (None, (("region", "US"),)): (Decimal(15), 1, 1500),  # 15 GB × $1
    }
    assert invoice.fees_amount_cents == 2500
    assert {fee.charge_id for fee in invoice.fees.filter(fee_type="charge")} == {charge.pk}
    keys = sorted(invoice.fees.filter(fee_type="charge").values_list("fee_key", flat=True))
    assert len(set(keys)) == 2 and all(':group:{"region":' in key for key in keys)

    # Closing again, at the same moment and later in the month, bills nothing twice and loses nothing.
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0
    assert periods_close(as_of=at(2026, 4, 15, 1, 0)).invoices_count == 0
    assert sorted(Fee.objects.filter(fee_type="charge").values_list("fee_key", flat=True)) == keys


def test_current_usage_lines_are_split_by_group(storage):
    _, subscription, _ = storage
    _, _, _, lines = current_usage_lines(subscription, at=at(2026, 3, 20))
    assert sorted((line.grouped_by["region"], line.units, line.amount_cents) for line in lines) == [
        ("EU", Decimal(10), 1000), ("US", Decimal(15), 1500)]


def test_events_without_the_key_are_their_own_group_with_a_null_value(storage):
    """Lago groups on `properties->>key`: events without the key form the group where it is null."""
    billing, _, _ = storage
    ingest(billing, [("t4", 5, {"gb": "2"})], now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = _charge_fees(Invoice.objects.get())
    assert fees[(None, (("region", None),))] == (Decimal(2), 1, 200)
    assert len(fees) == 3


def test_a_grouped_charge_without_usage_bills_one_empty_group(billing, settings):
    """Lago's empty grouped result: one zero fee, every key null."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1",
                                                                           "pricing_group_keys": ["region"]}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert _charge_fees(Invoice.objects.get()) == {(None, (("region", None),)): (Decimal(0), 0, 0)}
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0


@pytest.mark.parametrize(("model", "properties", "expected"), [
    # Each group on its own: EU 10 GB in the first tier, US 15 GB: 10 × $1 + 5 × $0.50. Pooled it would be
    # 10 × $1 + 15 × $0.50 = $17.50, not $22.50.
    ("graduated", {"graduated_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "0"}]}, {"EU": 1000, "US": 1250}),
    # Volume: EU 10 GB at the first tier's $1, US 15 GB all at $0.50.
    ("volume", {"volume_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "0"}]}, {"EU": 1000, "US": 750}),
    # Package of 10 GB at $5: EU one package, US two.
    ("package", {"amount": "5", "package_size": 10, "free_units": 0}, {"EU": 500, "US": 1000}),
    # 10% of the amounts, $0.50 per event: EU 2 events, US 1.
    ("percentage", {"rate": "10", "fixed_amount": "0.5"}, {"EU": 200, "US": 200}),
])
def test_each_group_is_priced_on_its_own_with_the_charge_model(billing, settings, model, properties, expected):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, model, {**properties, "pricing_group_keys": ["region"]},
                                                  {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "4", "region": "EU"}), ("t2", 3, {"gb": "15", "region": "US"}),
                     ("t3", 4, {"gb": "6", "region": "EU"})], now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = Invoice.objects.get().fees.filter(fee_type="charge")
    assert {fee.grouped_by["region"]: fee.amount_cents for fee in fees} == expected


def test_two_keys_bill_each_combination_present(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {
        "amount": "1", "pricing_group_keys": ["region", "cloud"]}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "4", "region": "EU", "cloud": "aws"}),
                     ("t2", 3, {"gb": "5", "region": "EU", "cloud": "gcp"}),
                     ("t3", 4, {"gb": "6", "region": "EU", "cloud": "aws"})], now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = Invoice.objects.get().fees.filter(fee_type="charge")
    assert sorted((fee.grouped_by["region"], fee.grouped_by["cloud"], fee.amount_cents) for fee in fees) == [
        ("EU", "aws", 1000), ("EU", "gcp", 500)]


def test_late_usage_of_one_group_is_adjusted_in_that_group_only_and_once(storage):
    billing, _, _ = storage
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    march = Invoice.objects.get()
    result = ingest(billing, [("l1", 20, {"gb": "2", "region": "US"})], now=at(2026, 4, 2, 9))
    assert all(item.is_late for item in result.items)
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    april = Invoice.objects.exclude(pk=march.pk).get()
    adjustments = list(april.fees.filter(is_adjustment=True))
    assert [(fee.grouped_by, fee.units, fee.amount_cents) for fee in adjustments] == [({"region": "US"}, Decimal(2), 200)]
    assert _charge_fees(march) == {  # the March fees are as billed
        (None, (("region", "EU"),)): (Decimal(10), 2, 1000), (None, (("region", "US"),)): (Decimal(15), 1, 1500)}
    assert periods_close(as_of=at(2026, 5, 1, 1, 0)).invoices_count == 0
    assert periods_close(as_of=at(2026, 6, 1, 1, 0)).failures_count == 0
    assert Fee.objects.filter(is_adjustment=True).count() == 1


def test_filters_split_first_then_each_filter_by_its_own_group_keys(billing, settings):
    """Lago: one fee per filter, then per group of that filter's pricing group keys; the events no filter prices
    by the charge's own keys."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric(filters=[{"key": "region", "values": ["eu", "us"]}])
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["cloud"]}, {})])
    charge = plan.charges.get()
    eu = ChargeFilter.objects.create(charge=charge, values={"region": ["eu"]}, invoice_display_name="EU",
                                     properties={"amount": "2", "pricing_group_keys": ["cloud"]})
    billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "10", "region": "eu", "cloud": "aws"}),
                     ("t2", 3, {"gb": "5", "region": "eu", "cloud": "gcp"}),
                     ("t3", 4, {"gb": "15", "region": "us", "cloud": "aws"}),
                     ("t4", 5, {"gb": "1", "region": "us"})], now=at(2026, 3, 10))
    _, _, _, lines = current_usage_lines(subscription, at=at(2026, 3, 20))
    assert sum(line.amount_cents for line in lines) == 2000 + 1000 + 1500 + 100
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert _charge_fees(invoice) == {
        (eu.pk, (("cloud", "aws"),)): (Decimal(10), 1, 2000),  # 10 × $2
        (eu.pk, (("cloud", "gcp"),)): (Decimal(5), 1, 1000),  # 5 × $2
        (None, (("cloud", "aws"),)): (Decimal(15), 1, 1500),  # 15 × $1
        (None, (("cloud", None),)): (Decimal(1), 1, 100),
    }
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0
    assert Fee.objects.filter(fee_type="charge").count() == 4


def test_a_minimum_is_trued_up_over_all_the_groups_once(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["region"]}, {})])
    charge = plan.charges.get()
    charge.min_amount_cents = 3000
    charge.save(update_fields=["min_amount_cents"])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "10", "region": "EU"}), ("t2", 3, {"gb": "15", "region": "US"})],
           now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = Invoice.objects.get().fees.all()
    assert sorted(fee.amount_cents for fee in fees if fee.fee_type == "charge") == [1000, 1500]
    assert [fee.amount_cents for fee in fees if fee.fee_type == "commitment"] == [500]  # $30 − $25, once


def test_progressive_billing_bills_groups_and_the_close_deducts_each_group(billing, settings):
    from apps.invoicing.progressive import progressive_billing_check

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["region"]}, {})])
    UsageThreshold.objects.create(plan=plan, amount_cents=2000)
    billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "10", "region": "EU"}), ("t2", 3, {"gb": "15", "region": "US"})],
           now=at(2026, 3, 10))
    progressive = progressive_billing_check(subscription_id=subscription.pk, at=at(2026, 3, 10, 12))
    assert progressive is not None
    assert sorted((fee.grouped_by["region"], fee.amount_cents) for fee in progressive.fees.all()) == [
        ("EU", 1000), ("US", 1500)]
    assert progressive_billing_check(subscription_id=subscription.pk, at=at(2026, 3, 10, 12)) is None
    ingest(billing, [("t3", 20, {"gb": "3", "region": "EU"})], now=at(2026, 3, 21))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    final = Invoice.objects.exclude(pk=progressive.pk).get()
    # The period's fees less what the progressive invoice billed of the same group: EU 13 − 10, US 15 − 15.
    assert {fee.grouped_by["region"]: fee.amount_cents for fee in final.fees.filter(fee_type="charge")} == {
        "EU": 300, "US": 0}
    billed = Fee.objects.filter(fee_type="charge", invoice__status__in=["finalized", "draft"])
    assert sum(fee.amount_cents for fee in billed) == 2800  # 28 GB × $1, each once


def test_a_group_value_that_looks_like_a_fee_key_segment_is_keyed_by_its_digest(billing, settings):
    """A value such as "a:progressive:b" must not make a period fee read as a progressive billing one."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["region"]}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, {"gb": "3", "region": "a:progressive:b"}), ("t2", 3, {"gb": "2", "region": "EU"})],
           now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = {fee.grouped_by["region"]: fee for fee in Fee.objects.filter(fee_type="charge")}
    assert fees["a:progressive:b"].amount_cents == 300 and ":progressive:" not in fees["a:progressive:b"].fee_key
    assert fees["a:progressive:b"].fee_key.rpartition(":group:")[2].startswith("sha256:")
    assert fees["EU"].fee_key.endswith(':group:{"region":"EU"}')
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0

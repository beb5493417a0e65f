"""Charge filters through the close and current usage: one fee per filter, each event billed once, by the most
specific filter it matches, the rest at the charge's own price (Lago's documented example as expected values)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.models import ChargeFilter
from apps.invoicing.close import current_usage_lines, periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db

REGIONS = {"key": "region", "values": ["africa", "europe", "us"]}
PROVIDERS = {"key": "provider", "values": ["aws", "gcp"]}
ALL = ChargeFilter.ALL_VALUES


def ingest(billing, rows, *, now, code="gb", sub="s1"):
    """rows: (transaction id, day of March 2026, properties)."""
    usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id=sub, code=code,
                        timestamp=int(at(2026, 3, day).timestamp()), properties=props)
                for tid, day, props in rows],
        now=now,
    )


def add_filter(charge, values, properties, name=""):
    return ChargeFilter.objects.create(charge=charge, values=values, properties=properties, invoice_display_name=name)


@pytest.fixture
def lago_example(billing, settings):
    """Lago's guide, "Charges with filters": $2 per unit by default, $1 for Africa & AWS, $0.50 for every other
    region with a provider."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric(filters=[REGIONS, PROVIDERS])
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "2"}, {})])
    charge = plan.charges.get()
    africa_aws = add_filter(charge, {"region": ["africa"], "provider": ["aws"]}, {"amount": "1"}, "Africa & AWS")
    others = add_filter(charge, {"region": [ALL], "provider": [ALL]}, {"amount": "0.5"}, "Other regions and providers")
    billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [
        ("t1", 2, {"gb": "10", "region": "africa", "provider": "aws"}),  # both filters match: the first
        ("t2", 3, {"gb": "4", "region": "europe", "provider": "gcp"}),
        ("t3", 4, {"gb": "6", "region": "africa", "provider": "gcp"}),
        ("t4", 5, {"gb": "3", "region": "africa"}),  # no provider: no filter has only a region
        ("t5", 6, {"gb": "5", "region": "asia", "provider": "aws"}),  # a region the metric does not list
        ("t6", 7, {"gb": "1"}),
    ], now=at(2026, 3, 10))
    return subscription, charge, africa_aws, others


def test_each_filter_bills_its_events_and_the_charge_the_rest(lago_example):
    _, charge, africa_aws, others = lago_example
    run = periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert run.failures_count == 0 and run.invoices_count == 1
    invoice = Invoice.objects.get()
    fees = {fee.charge_filter_id: fee for fee in invoice.fees.filter(fee_type="charge")}
    assert {key: (fee.units, fee.events_count, fee.amount_cents) for key, fee in fees.items()} == {
        africa_aws.pk: (Decimal(10), 1, 1000),  # 10 × $1
        others.pk: (Decimal(10), 2, 500),  # (4 + 6) × $0.50
        None: (Decimal(9), 3, 1800),  # (3 + 5 + 1) × $2
    }
    assert {fee.charge_id for fee in fees.values()} == {charge.pk}
    assert fees[africa_aws.pk].name.endswith("· Africa & AWS")
    assert invoice.fees_amount_cents == 1000 + 1000 + 500 + 1800
    # Closing again bills nothing twice.
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0
    assert Fee.objects.filter(fee_type="charge").count() == 3


def test_current_usage_prices_each_filter_as_the_close_will(lago_example):
    subscription, _, africa_aws, others = lago_example
    _, _, _, lines = current_usage_lines(subscription, at=at(2026, 3, 20))
    assert [(line.charge_filter.pk if line.charge_filter else None, line.units, line.amount_cents) for line in lines] == [
        (africa_aws.pk, Decimal(10), 1000), (others.pk, Decimal(10), 500), (None, Decimal(9), 1800)]


def test_the_more_specific_filter_wins_and_a_minimum_counts_every_filter(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric(code="calls", aggregation_type="count_agg", filters=[REGIONS, PROVIDERS])
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {"min_amount_cents": 2000})])
    charge = plan.charges.get()
    us = add_filter(charge, {"region": ["us"]}, {"amount": "2"})
    us_aws = add_filter(charge, {"region": ["us", "europe"], "provider": ["aws"]}, {"amount": "3"})
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [
        ("t1", 2, {"region": "us", "provider": "aws"}),  # both match: the two-key filter
        ("t2", 2, {"region": "us", "provider": "gcp"}),
        ("t3", 3, {"region": "us"}),
        ("t4", 4, {"region": "europe", "provider": "aws"}),
        ("t5", 5, {"region": "europe"}),
    ], code="calls", now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    fees = {fee.charge_filter_id: fee.amount_cents for fee in invoice.fees.filter(fee_type="charge")}
    assert fees == {us.pk: 2 * 200, us_aws.pk: 2 * 300, None: 100}
    # The $20 minimum is over the charge's three fees together (Lago's true-up): 20.00 - 11.00.
    assert invoice.fees.get(fee_type="commitment").amount_cents == 900


def test_unique_counts_count_a_key_once_per_filter_across_combinations(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric(code="seats", aggregation_type="unique_count_agg", field_name="user",
                            filters=[REGIONS, PROVIDERS])
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "10"}, {})])
    eu = add_filter(plan.charges.get(), {"region": ["europe"]}, {"amount": "15"})
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [
        ("t1", 2, {"user": "ann", "region": "europe", "provider": "aws"}),
        ("t2", 3, {"user": "ann", "region": "europe", "provider": "gcp"}),  # same seat, another combination
        ("t3", 4, {"user": "bob", "region": "us"}),
        ("t4", 5, {"user": "bob", "region": "africa"}),
        ("t5", 6, {"user": "cat", "region": "europe"}),
    ], code="seats", now=at(2026, 3, 10))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = {fee.charge_filter_id: (fee.units, fee.amount_cents) for fee in Fee.objects.filter(fee_type="charge")}
    assert fees == {eu.pk: (Decimal(2), 3000), None: (Decimal(1), 1000)}


def test_late_usage_of_a_filter_is_adjusted_at_its_price(lago_example):
    _, _, africa_aws, others = lago_example
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    march = Invoice.objects.get()
    result = usage_events_ingest(
        service=lago_example[0].service,
        events=[EventIn(transaction_id=tid, external_subscription_id="s1", code="gb",
                        timestamp=int(at(2026, 3, 20).timestamp()), properties=props)
                for tid, props in [("l1", {"gb": "2", "region": "africa", "provider": "aws"}),
                                   ("l2", {"gb": "2", "region": "us", "provider": "gcp"})]],
        now=at(2026, 4, 2, 9),
    )
    assert all(item.is_late for item in result.items)
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    april = Invoice.objects.exclude(pk=march.pk).get()
    adjustments = {fee.charge_filter_id: fee.amount_cents for fee in april.fees.filter(is_adjustment=True)}
    assert adjustments == {africa_aws.pk: 200, others.pk: 100}  # the charge's own price has no late rows

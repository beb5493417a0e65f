"""usage_totals: set-based SQL agrees with the pure rating engine on the same rows."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from apps.invoicing.rating import UsageRecord, aggregate
from apps.usage.aggregation import UsageTotal, usage_per_event_values, usage_totals
from apps.usage.models import UsageEvent
from apps.usage.services import usage_rollup_advance

pytestmark = pytest.mark.django_db

FROM = datetime(2026, 2, 1, 5, tzinfo=timezone.utc)  # a Toronto midnight
TO = datetime(2026, 3, 1, 5, tzinfo=timezone.utc)
_ids = itertools.count(1)


def put(world, sub, code, at, value, *, key=None, late=False, remove=False, **extra):
    metric = world.metrics[code]
    props = dict(extra)
    if metric.field_name:
        props[metric.field_name] = key if key is not None else str(value)
    if remove:
        props["operation_type"] = "remove"
    return UsageEvent.objects.create(
        service=world.service,
        transaction_id=f"tx-{next(_ids)}",
        subscription=sub,
        billable_metric=metric,
        timestamp=at,
        value=Decimal(-1 if remove else 1) if metric.aggregation_type == "unique_count_agg" else Decimal(value),
        properties=props,
        is_late=late,
    )


@pytest.fixture(params=["raw", "rolled-up"], autouse=True)
def storage_path(request, monkeypatch):
    """Run every test twice: rows only in the raw table, and rows folded into the daily rollup."""
    if request.param == "rolled-up":
        real = usage_totals

        def rolled(**kwargs):
            usage_rollup_advance(chunk=3)  # several chunks even for small tests
            return real(**kwargs)

        monkeypatch.setitem(globals(), "usage_totals", rolled)
    return request.param


def at(days, hours=0):
    return FROM + timedelta(days=days, hours=hours)


def test_each_aggregation_type_matches_the_rating_engine(world):
    sub = world.subscription("sub-1")
    rows = {
        "calls": [(at(0), "1"), (at(3), "1"), (at(27), "1")],
        "storage": [(at(1), "2.5"), (at(2), "0.25"), (at(-1), "100")],  # last one before the period
        "peak": [(at(1), "7"), (at(2), "12.125"), (at(3), "3")],
        "gauge": [(at(1), "7"), (at(9), "4"), (at(2), "12")],
        "instances": [(at(0, 6), "3"), (at(10), "-1"), (at(20, 1), "2")],
    }
    for code, events in rows.items():
        for moment, value in events:
            put(world, sub, code, moment, value)
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    for code, events in rows.items():
        metric = world.metrics[code]
        inside = [UsageRecord(timestamp=m, value=Decimal(v)) for m, v in events if FROM <= m < TO]
        expected = aggregate(aggregation_type=metric.aggregation_type, records=inside, period_from=FROM, period_to=TO)
        assert totals[(sub.pk, metric.pk)] == UsageTotal(units=expected.units, events_count=expected.events_count)
    assert totals[(sub.pk, world.metrics["storage"].pk)].units == Decimal("2.75")
    assert totals[(sub.pk, world.metrics["gauge"].pk)].units == Decimal("4")


def test_recurring_metrics_carry_the_earlier_level(world):
    sub = world.subscription("sub-1")
    put(world, sub, "storage_rec", at(-20), "10")
    put(world, sub, "storage_rec", at(-2), "-4")
    put(world, sub, "storage_rec", at(5), "1.5")
    put(world, sub, "instances_rec", at(-3), "2")
    put(world, sub, "instances_rec", at(14), "2")
    put(world, sub, "seats_rec", at(-5), None, key="ann")
    put(world, sub, "seats_rec", at(-4), None, key="bob")
    put(world, sub, "seats_rec", at(-1), None, key="bob", remove=True)
    put(world, sub, "seats_rec", at(3), None, key="cy")
    put(world, sub, "seats_rec", at(4), None, key="cy", remove=True)
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)

    assert totals[(sub.pk, world.metrics["storage_rec"].pk)] == UsageTotal(Decimal("7.5"), 1)
    weighted = aggregate(
        aggregation_type="weighted_sum_agg",
        records=[UsageRecord(timestamp=at(14), value=Decimal(2))],
        period_from=FROM,
        period_to=TO,
        recurring=True,
        carried_value=Decimal(2),
    )
    assert totals[(sub.pk, world.metrics["instances_rec"].pk)] == UsageTotal(weighted.units, 1)
    assert weighted.units == Decimal(3)  # level 2 for 14 days, 4 for 14 days of a 28-day month
    # ann carried (still active), bob removed before the period, cy added then removed inside it
    assert totals[(sub.pk, world.metrics["seats_rec"].pk)] == UsageTotal(Decimal(2), 2)


def test_unique_count_counts_distinct_keys_added_in_the_period(world):
    sub = world.subscription("sub-1")
    for key in ["a", "b", "a", "c"]:
        put(world, sub, "seats", at(2), None, key=key)
    put(world, sub, "seats", at(-2), None, key="d")  # not recurring: ignored
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    assert totals[(sub.pk, world.metrics["seats"].pk)] == UsageTotal(Decimal(3), 4)


def test_bounds_are_half_open_and_late_rows_are_left_out(world):
    sub = world.subscription("sub-1")
    put(world, sub, "storage", FROM, "1")
    put(world, sub, "storage", TO - timedelta(microseconds=1), "2")
    put(world, sub, "storage", TO, "4")
    put(world, sub, "storage", at(3), "8", late=True)
    totals = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    assert totals[(sub.pk, world.metrics["storage"].pk)] == UsageTotal(Decimal(3), 2)


def test_totals_are_per_subscription_and_only_for_the_asked_ones(world):
    one, two, three = world.subscription("s1"), world.subscription("s2"), world.subscription("s3")
    put(world, one, "calls", at(1), "1")
    put(world, two, "calls", at(1), "1")
    put(world, two, "calls", at(2), "1")
    put(world, three, "calls", at(2), "1")
    calls = world.metrics["calls"].pk
    totals = usage_totals(subscription_ids=[one.pk, two.pk], from_datetime=FROM, to_datetime=TO)
    assert totals == {(one.pk, calls): UsageTotal(Decimal(1), 1), (two.pk, calls): UsageTotal(Decimal(2), 2)}
    assert usage_totals(subscription_ids=[], from_datetime=FROM, to_datetime=TO) == {}


def test_per_event_values_come_in_time_order(world):
    sub = world.subscription("s1")
    put(world, sub, "storage", at(3), "3")
    put(world, sub, "storage", at(1), "1")
    put(world, sub, "storage", at(2), "2", late=True)
    values = usage_per_event_values(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    assert values == {(sub.pk, world.metrics["storage"].pk): (Decimal(1), Decimal(3))}


def test_naive_or_empty_periods_are_refused(world):
    with pytest.raises(TypeError):
        usage_totals(subscription_ids=[1], from_datetime=datetime(2026, 1, 1), to_datetime=TO)
    with pytest.raises(ValueError):
        usage_totals(subscription_ids=[1], from_datetime=TO, to_datetime=FROM)


def test_rollup_raw_edges_and_tail_add_up_to_the_raw_answer(world):
    """Bounds off UTC midnight; some rows rolled up, some not yet: same totals as all raw."""
    sub = world.subscription("s1")
    codes = ["calls", "storage", "storage_rec", "peak", "gauge", "instances", "instances_rec"]
    moments = [at(-3), at(-1, 20), at(0), at(0, 1), at(0, 19), at(1), at(12, 7), at(27, 23), at(28, -1), at(28), at(29)]
    for i, moment in enumerate(moments):
        for j, code in enumerate(codes):
            put(world, sub, code, moment, "1" if code == "calls" else str((i * 7 + j * 3) % 11 - 2))
        if i == 5:
            usage_rollup_advance()
    put(world, sub, "storage", at(4), "100", late=True)
    mixed = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    usage_rollup_advance()
    assert usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO) == mixed
    for code in codes:
        metric = world.metrics[code]
        rows = UsageEvent.objects.filter(billable_metric=metric, is_late=False)
        inside = [UsageRecord(timestamp=r.timestamp, value=r.value) for r in rows.order_by("id") if FROM <= r.timestamp < TO]
        carry = sum((r.value for r in UsageEvent.objects.filter(billable_metric=metric, timestamp__lt=FROM)), Decimal(0))
        expected = aggregate(
            aggregation_type=metric.aggregation_type, records=inside, period_from=FROM, period_to=TO,
            recurring=metric.recurring, carried_value=carry if metric.recurring else Decimal(0),
        )
        assert mixed[(sub.pk, metric.pk)] == UsageTotal(expected.units, expected.events_count), code
    # A period shorter than a day reads only raw edges.
    short = usage_totals(subscription_ids=[sub.pk], from_datetime=at(0, 0), to_datetime=at(0, 18))
    assert short[(sub.pk, world.metrics["calls"].pk)].events_count == 2


def test_metrics_with_filters_total_as_before_and_split_by_the_filter_values_their_rows_carry(world):
    """A metric with filters is read raw, grouped by the values of its filter keys: its totals do not change, and
    each combination's share is what the rating engine makes of those rows alone (unique keys united)."""
    sub = world.subscription("s1")
    regions = ["us", "eu", None, "mars", "us", "eu"]  # None: no region; mars: a value the metric does not list
    codes = ["calls", "storage", "storage_rec", "peak", "gauge", "seats", "seats_rec", "instances", "instances_rec"]
    rows: dict[str, list] = {code: [] for code in codes}
    for code in codes:
        put(world, sub, code, at(-3), "5", key="zed", region="us")  # before the period: the recurring carry
        for index, region in enumerate(regions):
            moment, value = at(index * 4, 1), "1" if code == "calls" else str(index + 1)  # a count row is 1
            put(world, sub, code, moment, value, key=f"k{index % 3}", **({"region": region} if region else {}))
            rows[code].append((region if region in ("us", "eu") else None, moment, Decimal(value), f"k{index % 3}"))
    before = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    for metric in world.metrics.values():
        metric.filters = [{"key": "region", "values": ["us", "eu"]}, {"key": "tier", "values": ["gold"]}]
        metric.save()
    after = usage_totals(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    assert after == before
    us, eu, neither = ((("region", "us"),), (("region", "eu"),), ())
    for code in codes:
        total, metric = after[(sub.pk, world.metrics[code].pk)], world.metrics[code]
        assert set(total.parts) == {us, eu, neither}
        assert total.select([us, eu, neither]) == total
        if metric.recurring:
            continue
        for combination, region in ((us, "us"), (eu, "eu"), (neither, None)):
            records = [UsageRecord(timestamp=moment, value=value, unique_key=key)
                       for found, moment, value, key in rows[code] if found == region]
            expected = aggregate(aggregation_type=metric.aggregation_type, records=records,
                                 period_from=FROM, period_to=TO)
            assert total.select([combination]) == UsageTotal(expected.units, expected.events_count), (code, region)
    # Recurring: the carried row (us) counts in the us share only.
    storage_rec = after[(sub.pk, world.metrics["storage_rec"].pk)]
    assert storage_rec.select([us]).units == Decimal(5 + 1 + 5) and storage_rec.select([eu]).units == Decimal(2 + 6)
    seats_rec = after[(sub.pk, world.metrics["seats_rec"].pk)]
    assert seats_rec.select([us]).units == 3 and seats_rec.select([us, eu]).units == 4  # zed, k0, k1 | k2
    values = usage_per_event_values(subscription_ids=[sub.pk], from_datetime=FROM, to_datetime=TO)
    storage = world.metrics["storage"].pk
    assert values[(sub.pk, storage)] == tuple(Decimal(index + 1) for index in range(6))
    assert [row[2] for row in values[(sub.pk, storage, us)]] == [Decimal(1), Decimal(5)]

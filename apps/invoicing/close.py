"""Period close: bill every subscription period that has ended, exactly once.

Exactly once by construction:
- every fee has a deterministic `fee_key` per (subscription, charge, period), unique in the database;
- a customer is billed inside one transaction holding a `SELECT ... FOR UPDATE` on its Customer row,
  and the plan is computed *after* taking the lock, skipping keys already billed;
- one invoice per (customer, billing day, currency): the close appends to that day's draft, or opens
  a new invoice whose `close_key` is unique.
So two workers closing at once serialize per customer, a worker killed mid-customer rolls back, and a
rerun finds nothing left to bill.

Day arithmetic is in the customer's timezone (periods.py); money via rating.py and taxes.py.
"""
from __future__ import annotations

import gc
import json
import logging
import threading
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

import msgspec
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q, prefetch_related_objects
from django.utils import timezone

from apps.catalog.models import Charge, Plan
from apps.core.models import uuid4_many
from apps.customers.models import Customer, Service
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_transitions_apply

from . import rating
from .models import CloseRun, CloseRunCustomer, CreditNote, Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription
from .periods import local_date, local_midnight_utc, period_bounds_utc, period_containing, periods_between
from .taxes import TaxRate, applied_rates, invoice_totals, line_tax_cents, taxes_for

logger = logging.getLogger(__name__)

# Terminated subscriptions are looked at for this long after termination (a yearly period at most).
TERMINATED_LOOKBACK = timedelta(days=400)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Window:
    """A charges window in UTC, [from, to)."""

    start: datetime
    end: datetime


@dataclass
class Line:
    """A fee the close will write (or, for current usage, show)."""

    billing_on: date  # local day the fee is invoiced (invoice issuing_date)
    currency: str
    fee_key: str
    fee_type: str
    subscription: Subscription | None
    name: str
    charge: Charge | None = None
    description: str = ""
    units: Decimal = ZERO
    total_aggregated_units: Decimal = ZERO
    events_count: int = 0
    precise_unit_amount: Decimal = ZERO  # major units
    precise_amount: Decimal = ZERO  # major units, unrounded
    amount_cents: int = 0  # minor units
    amount_details: dict = field(default_factory=dict)
    from_datetime: datetime | None = None
    to_datetime: datetime | None = None
    is_adjustment: bool = False
    window: Window | None = None  # charges: priced once usage is fetched
    period_from: datetime | None = None  # the subscription period the line belongs to (InvoiceSubscription)
    period_to: datetime | None = None
    min_amount_cents: int = 0  # charge minimum to true up once priced
    proration: tuple | None = None  # (period, active_from, active_to) for the minimum
    late_event_ids: tuple[int, ...] = ()  # late usage rows this adjustment bills


def _json(value: Any) -> Any:
    """Make rating details JSON-safe without floats: Decimals and dates become strings."""
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    if isinstance(value, (Decimal, date)):
        return str(value)
    return value


def _is_local_midnight(at: datetime, tz: str) -> bool:
    return at.astimezone(ZoneInfo(tz)).time() == time(0)


def _is_upgrade(subscription: Subscription) -> bool:
    successor = getattr(subscription, "next_subscription", None)
    return (
        successor is not None
        and successor.started_at is not None
        and successor.started_at == subscription.terminated_at
        and successor.plan.yearly_amount_cents >= subscription.plan.yearly_amount_cents
    )


def active_days(subscription: Subscription) -> tuple[date, date | None]:
    """Return the subscription's first active local day and first inactive day (None = still active).

    A termination on day D counts D as used (Lago), except at local midnight (a downgrade taking
    effect at a period boundary) and on an upgrade, whose day belongs to the new plan.
    """
    tz = subscription.customer.applicable_timezone
    started = subscription.started_at or subscription.subscription_at
    first = local_date(started, tz)
    if subscription.terminated_at is None:
        return first, None
    day = local_date(subscription.terminated_at, tz)
    if _is_local_midnight(subscription.terminated_at, tz) or _is_upgrade(subscription):
        return first, day
    return first, day + timedelta(days=1)


def _trial_ends_on(subscription: Subscription, anchor: date) -> date | None:
    trial = subscription.plan.trial_period
    return rating.trial_end_date(started_on=anchor, trial_days=trial) if trial else None


def _base_name(subscription: Subscription) -> str:
    plan = subscription.plan
    return f"{subscription.service.name} · {plan.invoice_display_name or plan.name}"


def _charge_name(subscription: Subscription, charge: Charge) -> str:
    return f"{subscription.service.name} · {charge.invoice_display_name or charge.billable_metric.name}"


def subscription_lines(
    subscription: Subscription,
    *,
    as_of: datetime,
    billed: dict[str, dict],
    scan_from: date | None = None,
) -> list[Line]:
    """Return the not-yet-billed fees of `subscription` due at `as_of` (charges still unpriced).

    `billed` maps fee keys already in the database to their amount_details. Pure apart from
    reading the subscription's loaded relations (plan, charges, customer, service).
    """
    customer, plan = subscription.customer, subscription.plan
    tz = customer.applicable_timezone
    today = local_date(as_of, tz)
    anchor = local_date(subscription.subscription_at, tz)
    first_day, active_to = active_days(subscription)
    terminated_at = subscription.terminated_at
    if terminated_at is not None and terminated_at > as_of:
        # Terminated in the future relative to this close (a past --as-of): bill as still active.
        active_to, terminated_at = None, None
    started = subscription.started_at or subscription.subscription_at
    trial_ends_on = _trial_ends_on(subscription, anchor)
    currency = plan.amount_currency
    begin = max(first_day, scan_from or first_day)
    stop = today + timedelta(days=1) if active_to is None else max(active_to, first_day + timedelta(days=1))
    stop = min(stop, today + timedelta(days=1))
    if stop <= begin:
        return []
    lines: list[Line] = []
    charges = [charge for charge in plan.charges.all() if charge.invoiceable]
    for period in periods_between(
        interval=plan.interval, billing_time=subscription.billing_time, anchor_date=anchor, start=begin, end=stop
    ):
        p_from, p_to = period_bounds_utc(period, tz)
        ends_here = active_to is not None and active_to <= period.end
        if ends_here:
            arrears_on, arrears_due = local_date(terminated_at, tz), True
        else:
            arrears_on, arrears_due = period.end, period.end <= today
        first = max(period.start, first_day)
        base_key = f"sub:{subscription.pk}:base:{period.start}"
        common = {"currency": currency, "subscription": subscription, "period_from": p_from, "period_to": p_to}

        def base_line(billing_on: date, fee: rating.Fee, until: date | None) -> Line:
            return Line(
                billing_on=billing_on,
                fee_key=base_key,
                fee_type=Fee.FeeType.SUBSCRIPTION,
                name=_base_name(subscription),
                units=Decimal(1),
                precise_unit_amount=fee.precise_amount,
                precise_amount=fee.precise_amount,
                amount_cents=fee.amount_cents,
                amount_details={
                    "days": fee.days,
                    "period_days": fee.period_days,
                    "pay_in_advance": plan.pay_in_advance,
                    "active_to": str(until) if until else None,
                },
                from_datetime=p_from,
                to_datetime=p_to,
                **common,
            )

        if plan.pay_in_advance:
            has_days = active_to is None or active_to > first
            if base_key not in billed and first <= today and has_days:
                until = active_to if ends_here else None
                fee = rating.base_fee_for_period(
                    amount_cents=plan.amount_cents, currency=currency, period=period,
                    active_from=first, active_to=until, trial_ends_on=trial_ends_on,
                )
                lines.append(base_line(first, fee, until))
            credit_key = f"sub:{subscription.pk}:credit:{period.start}"
            full = base_key in billed and billed[base_key].get("active_to") is None
            credited = subscription.on_termination_credit_note != Subscription.TerminationCredit.SKIP or _is_upgrade(
                subscription
            )
            if ends_here and full and credited and credit_key not in billed and active_to < period.end:
                credit = rating.upgrade_credit(
                    amount_cents=plan.amount_cents, currency=currency, period=period,
                    upgraded_on=max(active_to, period.start), trial_ends_on=trial_ends_on,
                )
                if credit.amount_cents:
                    lines.append(
                        Line(
                            billing_on=arrears_on,
                            fee_key=credit_key,
                            fee_type=Fee.FeeType.CREDIT,
                            name=f"{_base_name(subscription)}: unused days credited",
                            units=Decimal(1),
                            precise_unit_amount=-credit.precise_amount,
                            precise_amount=-credit.precise_amount,
                            amount_cents=-credit.amount_cents,
                            amount_details={"days": credit.days, "period_days": credit.period_days},
                            from_datetime=p_from,
                            to_datetime=p_to,
                            **common,
                        )
                    )
        elif arrears_due and base_key not in billed and (active_to is None or active_to > first):
            until = active_to if ends_here else None
            fee = rating.base_fee_for_period(
                amount_cents=plan.amount_cents, currency=currency, period=period,
                active_from=first, active_to=until, trial_ends_on=trial_ends_on,
            )
            lines.append(base_line(arrears_on, fee, until))

        if not arrears_due:
            continue
        window = Window(max(p_from, started), min(p_to, terminated_at) if ends_here else p_to)
        if window.end <= window.start:
            continue
        for charge in charges:
            key = f"sub:{subscription.pk}:charge:{charge.pk}:{period.start}"
            if key in billed:
                continue
            lines.append(
                Line(
                    billing_on=arrears_on,
                    fee_key=key,
                    fee_type=Fee.FeeType.CHARGE,
                    name=_charge_name(subscription, charge),
                    charge=charge,
                    from_datetime=window.start,
                    to_datetime=window.end,
                    window=window,
                    min_amount_cents=charge.min_amount_cents,
                    proration=(period, first, active_to if ends_here else None),
                    **common,
                )
            )
    return lines


UsageFetcher = Callable[[list[int], datetime, datetime], dict]


def _usage_totals(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
    from apps.usage.aggregation import usage_totals

    return usage_totals(subscription_ids=subscription_ids, from_datetime=start, to_datetime=end)


PerEventValues = dict  # (Window, subscription id, metric id) -> the events' values in time order


def _usage_per_event_values(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
    from apps.usage.aggregation import usage_per_event_values

    return usage_per_event_values(subscription_ids=subscription_ids, from_datetime=start, to_datetime=end)


def _needs_values(line: Line) -> bool:
    charge = line.charge
    return (
        line.window is not None
        and charge is not None
        and rating.needs_per_event_amounts(charge_model=charge.charge_model, properties=charge.properties)
    )


def per_event_values(lines: list[Line], *, fetch: UsageFetcher = _usage_per_event_values) -> PerEventValues:
    """Fetch the events' values for the charge lines whose pricing needs them (percentage with free events,
    per-transaction min/max, free total + fixed fee): one set-based read per distinct window, none if no line does."""
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if _needs_values(line):
            by_window[line.window].add(line.subscription.pk)
    values: PerEventValues = {}
    for window, subscription_ids in by_window.items():
        for (subscription_id, metric_id), row in fetch(sorted(subscription_ids), window.start, window.end).items():
            values[(window, subscription_id, metric_id)] = row
    return values


def _charge_pricing(charge: Charge) -> rating.ChargePricing:
    """The charge's parsed properties, kept on the instance: a close loads each plan's charges once per chunk
    and prices them for every subscription on the plan. Parsed again if `properties` was replaced."""
    cached = charge.__dict__.get("_pricing")
    if cached is None or cached[0] is not charge.properties or cached[1] != charge.charge_model:
        cached = (charge.properties, charge.charge_model, rating.charge_pricing(charge.charge_model, charge.properties))
        charge.__dict__["_pricing"] = cached
    return cached[2]


def price_charge_line(
    line: Line, *, units: Decimal, events_count: int, per_event_amounts: tuple[Decimal, ...] | None = None
) -> list[Line]:
    """Price a charge line from its usage totals (and, for charges that need them, the events' values in
    time order); return it plus a minimum true-up line if due."""
    charge = line.charge
    metric = charge.billable_metric
    billed_units = units
    if metric.rounding_function:
        billed_units = rating.round_units(
            units, rounding_function=metric.rounding_function, rounding_precision=metric.rounding_precision or 0
        )
    result = rating.price_charge_with(
        _charge_pricing(charge),
        units=billed_units,
        events_count=events_count,
        currency=line.currency,
        per_event_amounts=per_event_amounts,
    )
    line.units = billed_units
    line.total_aggregated_units = units
    line.events_count = events_count
    line.precise_amount = result.precise_amount
    line.amount_cents = result.amount_cents
    line.precise_unit_amount = result.precise_amount / billed_units if billed_units else ZERO
    line.amount_details = _json(result.details)
    lines = [line]
    if line.min_amount_cents and line.proration:
        period, first, until = line.proration
        true_up = rating.charge_minimum_true_up(
            min_amount_cents=line.min_amount_cents,
            charge_amount_cents=result.amount_cents,
            charge_precise_amount=result.precise_amount,
            currency=line.currency,
            period=period,
            active_from=first,
            active_to=until,
        )
        if true_up.amount_cents:
            lines.append(
                Line(
                    billing_on=line.billing_on,
                    currency=line.currency,
                    fee_key=line.fee_key.replace(":charge:", ":minimum:", 1),
                    fee_type=Fee.FeeType.COMMITMENT,
                    subscription=line.subscription,
                    charge=charge,
                    name=f"{line.name}: minimum spend true-up",
                    units=Decimal(1),
                    precise_unit_amount=true_up.precise_amount,
                    precise_amount=true_up.precise_amount,
                    amount_cents=true_up.amount_cents,
                    amount_details={"min_amount_cents": line.min_amount_cents},
                    from_datetime=line.from_datetime,
                    to_datetime=line.to_datetime,
                    period_from=line.period_from,
                    period_to=line.period_to,
                )
            )
    return lines


def price_lines(
    lines: list[Line], *, fetch: UsageFetcher = _usage_totals, values: PerEventValues | None = None
) -> list[Line]:
    """Fetch usage for the charge lines (one aggregate query per distinct window) and price them.

    `values`: the events' values already fetched for these lines (`per_event_values`, e.g. once for a
    whole batch); fetched here otherwise, only for the lines that need them.
    """
    if values is None:
        values = per_event_values(lines)
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if line.window is not None:
            by_window[line.window].add(line.subscription.pk)
    totals: dict[tuple[Window, int, int], Any] = {}
    for window, subscription_ids in by_window.items():
        for (subscription_id, metric_id), total in fetch(sorted(subscription_ids), window.start, window.end).items():
            totals[(window, subscription_id, metric_id)] = total
    priced: list[Line] = []
    for line in lines:
        if line.window is None:
            priced.append(line)
            continue
        total = totals.get((line.window, line.subscription.pk, line.charge.billable_metric_id))
        units = Decimal(total.units) if total is not None else ZERO
        events = int(total.events_count) if total is not None else 0
        amounts = None
        if _needs_values(line):
            amounts = values.get((line.window, line.subscription.pk, line.charge.billable_metric_id), ())
        priced.extend(price_charge_line(line, units=units, events_count=events, per_event_amounts=amounts))
    return priced


# --------------------------------------------------------------------------- taxes and totals


def customer_tax_rates(customer: Customer, *, on: date) -> list[TaxRate]:
    """Return the customer's sales taxes; a customer without a country is untaxed (as in Lago)."""
    if not customer.country:
        return []
    return taxes_for(customer.country, customer.state or None, on=on)


def fee_taxes(amount_cents: int, rates: Iterable[TaxRate]) -> tuple[int, Decimal, list[dict]]:
    """Return (tax cents, summed rate, applied_taxes JSON) for one line, rounded per line and rate."""
    applied = [
        {"code": rate.code, "name": rate.name, "rate": str(rate.rate), "amount_cents": line_tax_cents(amount_cents, rate)}
        for rate in rates
    ]
    return sum(item["amount_cents"] for item in applied), sum((rate.rate for rate in rates), ZERO), applied


def _rates_of(fee: Fee) -> list[TaxRate]:
    return applied_rates(fee.applied_taxes)


def invoice_recompute_totals(invoice: Invoice) -> Invoice:
    """Recompute an invoice's totals and per-rate tax summary from its fees. Call under the invoice's lock."""
    fees = list(invoice.fees.all())
    totals = invoice_totals([(fee.amount_cents, _rates_of(fee)) for fee in fees])
    InvoiceAppliedTax.objects.filter(invoice=invoice).delete()
    InvoiceAppliedTax.objects.bulk_create(
        InvoiceAppliedTax(
            invoice=invoice,
            tax_code=line.code,
            tax_name=line.name,
            tax_rate=line.rate,
            base_amount_cents=line.base_amount_cents,
            amount_cents=line.tax_amount_cents,
        )
        for line in totals.tax_lines
    )
    invoice.fees_amount_cents = totals.untaxed_amount_cents
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = totals.total_amount_cents
    invoice.total_amount_cents = totals.total_amount_cents - invoice.credit_notes_amount_cents
    invoice.save(
        update_fields=[
            "fees_amount_cents", "sub_total_excluding_taxes_amount_cents", "taxes_amount_cents",
            "sub_total_including_taxes_amount_cents", "total_amount_cents", "updated_at",
        ]
    )
    return invoice


def fee_values(line: Line, *, rates: list[TaxRate], taxed: dict | None = None) -> dict[str, Any]:
    """Return the fee row a line becomes (Fee attribute names; no invoice): taxes per line, rounded once.

    `taxed` memoizes `fee_taxes` across a batch's fees (a close bills the same few amounts and provinces
    many times); its `applied_taxes` lists are then shared between rows, which are written, never mutated.
    """
    if taxed is None:
        taxes_cents, taxes_rate, applied = fee_taxes(line.amount_cents, rates)
    else:
        key = (line.amount_cents, *map(id, rates))  # TaxRate rows are module constants: identity names them
        found = taxed.get(key)
        if found is None:
            found = taxed[key] = fee_taxes(line.amount_cents, rates)
        taxes_cents, taxes_rate, applied = found
    subscription = line.subscription
    return {
        "fee_key": line.fee_key,
        "fee_type": line.fee_type,
        "service_id": subscription.service_id if subscription is not None else None,
        "subscription_id": subscription.pk if subscription is not None else None,
        "charge_id": line.charge.pk if line.charge is not None else None,
        "name": line.name,
        "description": line.description,
        "currency": line.currency,
        "units": line.units,
        "total_aggregated_units": line.total_aggregated_units,
        "events_count": line.events_count,
        "precise_unit_amount": line.precise_unit_amount,
        "precise_amount": line.precise_amount,
        "amount_cents": line.amount_cents,
        "taxes_amount_cents": taxes_cents,
        "taxes_rate": taxes_rate,
        "applied_taxes": applied,
        "amount_details": line.amount_details,
        "from_datetime": line.from_datetime,
        "to_datetime": line.to_datetime,
        "is_adjustment": line.is_adjustment,
    }


def fee_from_line(line: Line, *, invoice: Invoice, rates: list[TaxRate]) -> Fee:
    return Fee(invoice=invoice, **fee_values(line, rates=rates))


# --------------------------------------------------------------------------- one customer


def _grace_days(customer: Customer) -> int:
    if customer.invoice_grace_period is not None:
        return customer.invoice_grace_period
    return settings.INVOICE_GRACE_PERIOD_DAYS


def _scan_starts(subscriptions: list[Subscription]) -> dict[int, date]:
    """Return per subscription the local day to start looking from: the last billed charges period."""
    by_id = {subscription.pk: subscription for subscription in subscriptions}
    if not by_id:
        return {}
    with connection.cursor() as cursor:  # ids as one array: the ORM's IN over instances cost ~5 ms per 250
        cursor.execute(
            "SELECT subscription_id, max(charges_from_datetime) FROM invoicing_invoicesubscription"
            " WHERE subscription_id = ANY(%s) GROUP BY subscription_id",
            [list(by_id)],
        )
        return {
            subscription_id: local_date(last, by_id[subscription_id].customer.applicable_timezone)
            for subscription_id, last in cursor.fetchall()
        }


def _billed_keys(subscriptions: list[Subscription], starts: dict[int, date] | None = None) -> dict[str, dict]:
    """All of `_billed_by_subscription` in one mapping (fee keys name their subscription)."""
    merged: dict[str, dict] = {}
    for keys in _billed_by_subscription(subscriptions, starts).values():
        merged.update(keys)
    return merged


def _billed_by_subscription(
    subscriptions: list[Subscription], starts: dict[int, date] | None = None
) -> dict[int, dict[str, dict]]:
    """Return per subscription fee_key -> amount_details of the fees already billed that planning can meet again.

    With `starts` (`_scan_starts`), only the fees from the period containing a subscription's scan start on
    (a day earlier, for any timezone), plus adjustments (no period): planning never revisits earlier periods,
    so each close reads what the last periods billed, not the whole history.
    """
    if not subscriptions:
        return {}
    ids, since = [], []
    for subscription in subscriptions:
        scan = (starts or {}).get(subscription.pk)
        bound = None
        if scan is not None:
            tz = subscription.customer.applicable_timezone
            anchor = local_date(subscription.subscription_at, tz)
            period = period_containing(
                interval=subscription.plan.interval, billing_time=subscription.billing_time,
                anchor_date=anchor, at=max(scan, anchor),
            )
            bound = local_midnight_utc(period.start - timedelta(days=1), tz)
        ids.append(subscription.pk)
        since.append(bound)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT f.subscription_id, f.fee_key, CASE WHEN f.fee_type = %s THEN f.amount_details END
              FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, since)
              JOIN invoicing_fee f ON f.subscription_id = v.id
             WHERE f.subscription_id = ANY(%s)
               AND (v.since IS NULL OR f.from_datetime IS NULL OR f.from_datetime >= v.since)
            UNION ALL
            SELECT n.subscription_id, n.close_key, NULL FROM invoicing_creditnote n
             WHERE n.subscription_id = ANY(%s) AND n.close_key IS NOT NULL
            """,
            # `= ANY` repeats the join key as a plain filter the planner can see: it reads the fees through the
            # subscription index. Joined to the unnest alone, a fee table whose statistics predate the close (a
            # first close, or one that grows past its last ANALYZE) was read whole by every batch: 28 ms vs 1.6 ms
            # at 60,000 fees.
            # The second part: in-advance credits the close issued as credit notes (`termination_credits_issue`).
            [Fee.FeeType.SUBSCRIPTION, ids, since, ids, ids],
        )
        # Only a base fee's details are read (its `active_to`, for upgrade credits).
        billed: dict[int, dict[str, dict]] = defaultdict(dict)
        for subscription_id, key, details in cursor:
            billed[subscription_id][key] = (json.loads(details) if isinstance(details, str) else details) or {}
        return billed


class WindowsNotFenced(Exception):
    """Planning met usage windows whose cut-off is not committed and fenced yet: reading them now could miss an
    event that commits after the read without being flagged late. `cutoffs`: subscription id -> window end."""

    def __init__(self, cutoffs: dict[int, datetime]) -> None:
        super().__init__(f"usage windows of subscriptions {sorted(cutoffs)} are not cut off yet")
        self.cutoffs = cutoffs


_NEVER = datetime.min.replace(tzinfo=ZoneInfo("UTC"))


def unfenced_cutoffs(lines: list[Line], fenced: dict[int, datetime]) -> dict[int, datetime]:
    """The cut-offs the usage windows of `lines` need beyond `fenced` (subscription id -> cut-off committed, then
    fenced, by this close): subscription id -> window end. Empty: every window is safe to read."""
    needed: dict[int, datetime] = {}
    for line in lines:
        if line.window is not None:
            pk = line.subscription.pk
            if line.window.end > fenced.get(pk, _NEVER):
                needed[pk] = max(needed.get(pk, line.window.end), line.window.end)
    return needed


def plan_customer(
    customer: Customer, *, as_of: datetime, fetch: UsageFetcher = _usage_totals,
    fenced: dict[int, datetime] | None = None,
) -> list[Line]:
    """Return every priced line still to bill for `customer` at `as_of` (no writes).

    `fenced`: the cut-offs this close committed and fenced; a window beyond them raises `WindowsNotFenced`
    before any usage is read (None: the caller vouches for the windows).
    """
    subscriptions = _load_subscriptions([customer.pk], as_of=as_of)
    for subscription in subscriptions:
        subscription.customer = customer  # share the locked row
    starts = _scan_starts(subscriptions)
    billed = _billed_keys(subscriptions, starts)
    lines: list[Line] = []
    for subscription in subscriptions:
        lines.extend(subscription_lines(subscription, as_of=as_of, billed=billed, scan_from=starts.get(subscription.pk)))
    if fenced is not None:
        needed = unfenced_cutoffs(lines, fenced)
        if needed:
            raise WindowsNotFenced(needed)
    lines = price_lines(lines, fetch=fetch)
    lines.extend(_late_usage_lines(customer, subscriptions, as_of=as_of, billed=billed, planned=lines))
    return lines


def late_per_event_values(subscriptions: list[Subscription], late: dict) -> dict:
    """Fetch the late rows' values for the (subscription, metric) pairs a charge prices per event (percentage
    with free events, per-transaction min/max, free total + fixed fee): one read, none if no charge needs it."""
    from apps.usage.selectors import late_usage_values

    ids: set[int] = set()  # a metric can back several charges
    for subscription in subscriptions:
        for charge in subscription.plan.charges.all():
            total = late.get((subscription.pk, charge.billable_metric_id))
            if total is not None and rating.needs_per_event_amounts(
                charge_model=charge.charge_model, properties=charge.properties
            ):
                ids.update(total.event_ids)
    return late_usage_values(event_ids=sorted(ids)) if ids else {}


def _late_billing_days(customer, subscriptions, planned: list[Line], *, as_of: datetime) -> dict[int, date]:
    """Per subscription, the day its late usage is billed: that of the next invoice billing its periods.

    One invoice per customer and billing day, whenever the close runs: late lines join the subscription's own
    period lines planned now (a close run days after the period end dates them at the period end, not at the
    run). A subscription with no lines due now bills its late usage later, with its next period, unless it
    has no period to come (terminated): then on the customer's invoice of this close in that currency, or today.
    """
    first_day: dict[int, date] = {}
    by_currency: dict[str, date] = {}
    for line in planned:
        if line.is_adjustment or line.subscription is None:
            continue
        pk = line.subscription.pk
        first_day[pk] = min(first_day.get(pk, line.billing_on), line.billing_on)
        by_currency[line.currency] = min(by_currency.get(line.currency, line.billing_on), line.billing_on)
    today = local_date(as_of, customer.applicable_timezone)
    days: dict[int, date] = {}
    for subscription in subscriptions:
        if subscription.pk in first_day:
            days[subscription.pk] = first_day[subscription.pk]
        elif subscription.terminated_at is not None and subscription.terminated_at <= as_of:
            days[subscription.pk] = by_currency.get(subscription.plan.amount_currency, today)
    return days


def _late_usage_lines(
    customer, subscriptions, *, as_of, billed, planned: list[Line], late: dict | None = None,
    values: dict | None = None,
) -> list[Line]:
    """Return adjustment lines for usage that arrived after its period was invoiced (flagged late at ingest).

    Deviation from Lago (which never bills it): late usage is priced on its own with the charge's model
    and billed on the next invoice of its subscription (`_late_billing_days`; `planned`: the customer's other
    lines of this close); `late_event_ids` are marked billed in the same transaction.
    `values`: the late rows' values (`late_per_event_values`), fetched here if not given.
    """
    from apps.usage.selectors import late_usage_unbilled

    if late is None:
        late = late_usage_unbilled(subscription_ids=[subscription.pk for subscription in subscriptions])
    if not late:
        return []
    days = _late_billing_days(customer, subscriptions, planned, as_of=as_of)
    subscriptions = [subscription for subscription in subscriptions if subscription.pk in days]
    late = {key: total for key, total in late.items() if key[0] in days}
    if not late:
        return []
    if values is None:
        values = late_per_event_values(subscriptions, late)
    lines: list[Line] = []
    for subscription in subscriptions:
        billing_on = days[subscription.pk]
        for charge in subscription.plan.charges.all():
            total = late.get((subscription.pk, charge.billable_metric_id))
            if total is None or not total.events_count:
                continue
            ids = total.event_ids
            key = f"sub:{subscription.pk}:late:{charge.pk}:{ids[0]}:{ids[-1]}:{len(ids)}"
            if key in billed:
                continue
            line = Line(
                billing_on=billing_on,
                currency=subscription.plan.amount_currency,
                fee_key=key,
                fee_type=Fee.FeeType.CHARGE,
                subscription=subscription,
                charge=charge,
                name=f"{_charge_name(subscription, charge)}: late usage adjustment",
                is_adjustment=True,
                late_event_ids=tuple(ids),
            )
            amounts = None
            if rating.needs_per_event_amounts(charge_model=charge.charge_model, properties=charge.properties):
                # Same ids as the totals (customer locked): a count mismatch would make pricing refuse.
                amounts = values.get((subscription.pk, charge.billable_metric_id), ())
            lines.extend(
                price_charge_line(
                    line, units=Decimal(total.units), events_count=int(total.events_count), per_event_amounts=amounts
                )
            )
    return lines


# Columns planning never reads: not loaded (no parsing of 5 datetimes and a UUID per row). Touching one later
# costs a query, not a wrong answer.
_UNPLANNED_COLUMNS = ("lago_id", "created_at", "updated_at", "name", "ending_at", "canceled_at", "usage_billed_until")


def _load_subscriptions(customer_ids: list[int], *, as_of: datetime) -> list[Subscription]:
    """Load the close's subscriptions for many customers: one instance per plan (with its charges and metrics),
    per service and per customer, and each row's successor (`next_subscription`, or None) for upgrades."""
    wanted = Q(status=Subscription.Status.ACTIVE) | Q(
        status=Subscription.Status.TERMINATED, terminated_at__gte=as_of - TERMINATED_LOOKBACK
    )
    subscriptions = list(
        Subscription.objects.filter(customer_id__in=customer_ids).filter(wanted).defer(*_UNPLANNED_COLUMNS).order_by("pk")
    )
    if not subscriptions:
        return []
    successors = {
        successor.previous_subscription_id: successor
        for successor in Subscription.objects.filter(
            previous_subscription_id__in=[subscription.pk for subscription in subscriptions]
        ).defer(*_UNPLANNED_COLUMNS)
    }
    plan_ids = {subscription.plan_id for subscription in subscriptions}
    plan_ids.update(successor.plan_id for successor in successors.values())
    plans = Plan.objects.in_bulk(plan_ids)
    prefetch_related_objects(list(plans.values()), "charges__billable_metric")
    services = Service.objects.in_bulk({subscription.service_id for subscription in subscriptions})
    customers = Customer.objects.in_bulk({subscription.customer_id for subscription in subscriptions})
    next_cache = Subscription.next_subscription.related
    for subscription in subscriptions:
        subscription.plan = plans[subscription.plan_id]
        subscription.service = services[subscription.service_id]
        subscription.customer = customers[subscription.customer_id]
        successor = successors.get(subscription.pk)
        if successor is not None:
            successor.plan = plans[successor.plan_id]
        next_cache.set_cached_value(subscription, successor)  # None: known to have none, no query
    return subscriptions


# What planning reads from a subscription row and its successor (`subscription_lines`, `_is_upgrade`):
# the batch re-reads this digest under its locks and reuses the prepass's rows only where it is unchanged.
# `updated_at` covers any ORM save; the listed columns cover raw UPDATEs (usage_billed_until is not read).
_FINGERPRINT_SQL = """
SELECT s.id, s.customer_id,
       md5(ROW(s.status, s.plan_id, s.service_id, s.billing_time, s.subscription_at, s.started_at,
               s.terminated_at, s.updated_at, n.id, n.plan_id, n.started_at, n.updated_at)::text)
  FROM subscriptions_subscription s
  LEFT JOIN subscriptions_subscription n ON n.previous_subscription_id = s.id
 WHERE s.customer_id = ANY(%s)
   AND (s.status = %s OR (s.status = %s AND s.terminated_at >= %s))
"""


def _subscription_fingerprints(customer_ids: list[int], *, as_of: datetime) -> dict[int, tuple[int, str]]:
    """Return subscription id -> (customer id, digest) for the subscriptions `_load_subscriptions` loads."""
    with connection.cursor() as cursor:
        cursor.execute(
            _FINGERPRINT_SQL,
            [customer_ids, Subscription.Status.ACTIVE, Subscription.Status.TERMINATED, as_of - TERMINATED_LOOKBACK],
        )
        return {sub_id: (customer_id, digest) for sub_id, customer_id, digest in cursor.fetchall()}


@dataclass
class Loaded:
    """Subscriptions the prepass loaded (plans and charges shared), with the digest read *before* loading them.

    Digest first, rows second: a change between the two reads, or after them, shows as a digest that differs
    under the batch's locks, and that customer is reloaded.
    """

    by_customer: dict[int, list[Subscription]] = field(default_factory=dict)
    fingerprints: dict[int, tuple[int, str]] = field(default_factory=dict)
    # subscription id -> (the row, timezone, scan start, billed keys, unpriced lines): `subscription_lines` is
    # pure, so under the locks the same inputs give the same lines, and planning runs once.
    planned: dict[int, tuple[Subscription, str, date | None, dict, list[Line]]] = field(default_factory=dict)

    def lines_if_unchanged(self, subscription: Subscription, *, scan_from: date | None, billed: dict) -> list[Line] | None:
        """The prepass's lines for this row if it planned from the same inputs (used once), else None."""
        memo = self.planned.pop(subscription.pk, None)
        if memo is None:
            return None
        row, tz, start, keys, lines = memo
        same = row is subscription and tz == subscription.customer.applicable_timezone
        return lines if same and start == scan_from and keys == billed else None

    def reusable(self, customer_ids: list[int], *, as_of: datetime) -> tuple[dict[int, list[Subscription]], list[int]]:
        """Return (subscriptions per customer still as loaded, customers to reload), read under their locks."""
        current = _subscription_fingerprints(customer_ids, as_of=as_of)
        now: dict[int, set] = defaultdict(set)
        for sub_id, (customer_id, digest) in current.items():
            now[customer_id].add((sub_id, digest))
        then: dict[int, set] = defaultdict(set)
        for customer_id in customer_ids:
            for subscription in self.by_customer.get(customer_id, ()):
                then[customer_id].add((subscription.pk, self.fingerprints.get(subscription.pk, (0, ""))[1]))
        kept, stale = {}, []
        for customer_id in customer_ids:
            if customer_id in self.by_customer and now[customer_id] == then[customer_id]:
                kept[customer_id] = self.by_customer[customer_id]
            else:
                stale.append(customer_id)
        return kept, stale


def close_prepass(customer_ids: list[int], *, as_of: datetime, chunk: int = 1000):
    """Plan (unpriced, no lock) what is due, in chunks: return (customers with work, usage windows, cut-offs,
    the subscriptions loaded).

    Only a hint: each customer is re-planned under its lock before anything is written, from the rows loaded
    here when their digest is unchanged (`Loaded`). A chunk that fails to plan marks all its customers as
    having work, so their own close records the error.
    """
    from apps.usage.selectors import late_usage_unbilled

    due: set[int] = set()
    windows: dict[Window, set[int]] = {}
    cutoffs: dict[int, datetime] = {}
    loaded = Loaded()
    for index in range(0, len(customer_ids), chunk):
        ids = customer_ids[index : index + chunk]
        try:
            fingerprints = _subscription_fingerprints(ids, as_of=as_of)
            subscriptions = _load_subscriptions(ids, as_of=as_of)
            starts = _scan_starts(subscriptions)
            billed_by = _billed_by_subscription(subscriptions, starts)
            late = late_usage_unbilled(subscription_ids=[subscription.pk for subscription in subscriptions])
            for subscription in subscriptions:
                own = billed_by.get(subscription.pk, {})
                scan_from = starts.get(subscription.pk)
                lines = subscription_lines(subscription, as_of=as_of, billed=own, scan_from=scan_from)
                loaded.planned[subscription.pk] = (
                    subscription, subscription.customer.applicable_timezone, scan_from, own, lines
                )
                if lines or any(key[0] == subscription.pk for key in late):
                    due.add(subscription.customer_id)
                for line in lines:
                    if line.window is not None:
                        windows.setdefault(line.window, set()).add(subscription.pk)
                        if line.window.end > cutoffs.get(subscription.pk, line.window.end - timedelta(1)):
                            cutoffs[subscription.pk] = line.window.end
            loaded.fingerprints.update(fingerprints)
            for subscription in subscriptions:
                if subscription.customer_id in due:
                    loaded.by_customer.setdefault(subscription.customer_id, []).append(subscription)
        except Exception:
            logger.exception("close prepass failed for customers %s..%s", ids[0], ids[-1])
            due.update(ids)
    return due, windows, cutoffs, loaded


def usage_cutoffs_advance(cutoffs: dict[int, datetime]) -> int:
    """Move `usage_billed_until` up to the end of the charges windows about to be billed (monotonic).

    Commit this, then `usage_ingest_fence()`, before reading usage: an event ingested meanwhile is
    then either visible to the close or flagged late (billed as an adjustment), never lost.
    """
    if not cutoffs:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE subscriptions_subscription s SET usage_billed_until = v.cutoff
              FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::timestamptz[]) AS cutoff) v
             WHERE s.id = v.id AND (s.usage_billed_until IS NULL OR s.usage_billed_until < v.cutoff)
            """,
            [list(cutoffs), list(cutoffs.values())],
        )
        return cursor.rowcount


def _invoice_for(customer: Customer, *, billing_on: date, currency: str, as_of: datetime) -> tuple[Invoice, bool]:
    draft = (
        Invoice.objects.select_for_update()
        .filter(
            customer=customer,
            invoice_type=Invoice.InvoiceType.SUBSCRIPTION,
            issuing_date=billing_on,
            currency=currency,
            status=Invoice.Status.DRAFT,
        )
        .order_by("pk")
        .first()
    )
    if draft is not None:
        return draft, False
    prefix = f"close:{customer.pk}:{billing_on}:{currency}"
    count = Invoice.objects.filter(close_key__startswith=prefix + ":").count()
    grace = _grace_days(customer)
    invoice = Invoice.objects.create(
        customer=customer,
        invoice_type=Invoice.InvoiceType.SUBSCRIPTION,
        currency=currency,
        close_key=f"{prefix}:{count + 1}",
        issuing_date=billing_on,
        net_payment_term=customer.net_payment_term,
        payment_due_date=billing_on + timedelta(days=customer.net_payment_term),
        grace_until=as_of + timedelta(days=grace),
    )
    return invoice, True


def write_lines(
    customer: Customer, lines: list[Line], *, as_of: datetime, into: Invoice | None = None
) -> list[Invoice]:
    """Write lines onto invoices grouped by (billing day, currency); return the invoices touched.

    Call inside a transaction holding the customer's lock. `into` forces every line onto one draft
    (refresh).
    """
    groups: dict[tuple[date, str], list[Line]] = defaultdict(list)
    for line in lines:
        groups[(line.billing_on, line.currency)].append(line)
    touched: list[Invoice] = []
    for (billing_on, currency), group in sorted(groups.items(), key=lambda item: item[0]):
        invoice = into or _invoice_for(customer, billing_on=billing_on, currency=currency, as_of=as_of)[0]
        rates = customer_tax_rates(customer, on=billing_on)
        Fee.objects.bulk_create([fee_from_line(line, invoice=invoice, rates=rates) for line in group])
        periods: dict[int, list[Line]] = defaultdict(list)
        for line in group:
            if line.subscription is not None and line.period_from is not None:
                periods[line.subscription.pk].append(line)
        for subscription_id, sub_lines in periods.items():
            _billing_period_merge(invoice, subscription_id, sub_lines)
        invoice_recompute_totals(invoice)
        touched.append(invoice)
    return touched


def _charges_bounds(lines: list[Line]) -> tuple[datetime, datetime]:
    """The usage window a billing period row records: what its charge lines billed. With none (an in-advance base
    fee alone), an empty window at the period start: finalization moves the usage cut-off to the end of this
    window, so it must only ever cover usage the invoice actually billed (else that period's usage is all late)."""
    usage = [line for line in lines if line.window is not None]
    if usage:
        return min(line.from_datetime for line in usage), max(line.to_datetime for line in usage)
    start = min(line.period_from for line in lines)
    return start, start


def _charges_union(kept: tuple[datetime, datetime], added: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """Merge two usage windows of one billing period row; an empty one (no usage billed) adds nothing."""
    if added[0] >= added[1]:
        return kept
    if kept[0] >= kept[1]:
        return added
    return min(kept[0], added[0]), max(kept[1], added[1])


def _billing_period_merge(invoice: Invoice, subscription_id: int, lines: list[Line]) -> None:
    base = [line for line in lines if line.fee_type in (Fee.FeeType.SUBSCRIPTION, Fee.FeeType.CREDIT)]
    period_from = min(line.period_from for line in (base or lines))
    period_to = max(line.period_to for line in (base or lines))
    charges_from, charges_to = _charges_bounds(lines)
    row, created = InvoiceSubscription.objects.get_or_create(
        invoice=invoice,
        subscription_id=subscription_id,
        defaults={
            "from_datetime": period_from,
            "to_datetime": period_to,
            "charges_from_datetime": charges_from,
            "charges_to_datetime": charges_to,
            "invoicing_reason": "subscription_periodic",
        },
    )
    if not created:
        row.from_datetime = min(row.from_datetime, period_from)
        row.to_datetime = max(row.to_datetime, period_to)
        row.charges_from_datetime, row.charges_to_datetime = _charges_union(
            (row.charges_from_datetime, row.charges_to_datetime), (charges_from, charges_to)
        )
        row.save()


def split_credits(lines: list[Line]) -> tuple[list[Line], list[Line]]:
    """Split planned lines into (invoice lines, in-advance credits): the unused part of an in-advance base fee
    is credited by a credit note on the invoice that billed it, never as a negative line of a new invoice
    (which nothing would refund, Odoo refuses, and that could leave an invoice total below zero)."""
    kept = [line for line in lines if line.fee_type != Fee.FeeType.CREDIT]
    return kept, [line for line in lines if line.fee_type == Fee.FeeType.CREDIT]


def termination_credits_issue(credits: list[Line], *, as_of: datetime) -> int:
    """Issue a credit note per in-advance credit line, exactly once (`CreditNote.close_key` is the line's key);
    return how many. Call under the customers' locks, in the close's transaction.

    Credited on the base fee it returns, never beyond what is left to credit on it (staff may have credited
    part already). A base fee still on a draft waits for its finalization (the next close plans the line again);
    one on a voided invoice was never owed, so nothing is credited. An upgrade's credit is kept as credit (Lago);
    a termination's follows the subscription's `on_termination_credit_note`: refund refunds up to what was paid
    and keeps the rest as credit.
    """
    if not credits:
        return 0
    from .services import CreditNoteItemIn, credit_note_create, credit_note_estimate

    bases = {
        fee.fee_key: fee
        for fee in Fee.objects.select_related("invoice").filter(
            fee_key__in=[line.fee_key.replace(":credit:", ":base:", 1) for line in credits]
        )
    }
    issued = 0
    for line in credits:
        base = bases.get(line.fee_key.replace(":credit:", ":base:", 1))
        if base is None or base.invoice.status != Invoice.Status.FINALIZED:
            continue
        left = base.amount_cents - sum(
            item.amount_cents
            for item in base.credit_note_items.exclude(credit_note__credit_status=CreditNote.CreditStatus.VOIDED)
        )
        amount = min(-line.amount_cents, left)
        if amount <= 0:
            continue
        subscription = line.subscription
        items = [CreditNoteItemIn(fee_id=base.pk, amount_cents=amount)]
        upgrade = _is_upgrade(subscription)
        refund = 0
        if not upgrade and subscription.on_termination_credit_note == Subscription.TerminationCredit.REFUND:
            estimate = credit_note_estimate(invoice=base.invoice, items=items)
            refund = min(estimate.total_amount_cents, estimate.max_refundable_amount_cents)
        credit_note_create(
            invoice_id=base.invoice_id,
            items=items,
            reason=CreditNote.Reason.ORDER_CHANGE if upgrade else CreditNote.Reason.ORDER_CANCELLATION,
            description=line.name,
            refund_amount_cents=refund,
            issuing_date=line.billing_on,
            close_key=line.fee_key,
            subscription_id=subscription.pk,
        )
        issued += 1
    return issued


# Tries of `close_customer` to find its usage windows cut off: each further try follows a change of the customer's
# subscriptions between its cut-off and its lock, which a plan change racing the close can cause once, not thrice.
CLOSE_FENCE_TRIES = 3


def close_customer(
    *, customer_id: int, as_of: datetime, fetch: UsageFetcher = _usage_totals,
    fenced: dict[int, datetime] | None = None,
) -> tuple[int, int]:
    """Bill everything due for one customer at `as_of`; return (invoices touched, fees written).

    Runs in its own transaction under the customer's row lock; running it twice bills nothing more.
    Every usage window it bills is cut off and fenced first, whatever planned it: `fenced` holds the cut-offs the
    run already committed and fenced; a window beyond them (a subscription changed since the run planned it, or
    a customer the run could not plan) rolls the try back, its cut-off is committed and fenced
    (`usage_cutoffs_advance`, `usage_ingest_fence`), and the customer is planned again. So an event committing
    while the close reads is on the invoice or flagged late (billed later), never neither.
    Inside a caller's transaction nothing can be committed first: the caller vouches for the windows.
    """
    if connection.in_atomic_block:
        return _close_customer_locked(customer_id=customer_id, as_of=as_of, fetch=fetch, fenced=None)
    from apps.usage.services import usage_ingest_fence

    fenced = dict(fenced or {})
    for _ in range(CLOSE_FENCE_TRIES):
        try:
            return _close_customer_locked(customer_id=customer_id, as_of=as_of, fetch=fetch, fenced=fenced)
        except WindowsNotFenced as missing:
            usage_cutoffs_advance(missing.cutoffs)  # committed (autocommit) before the fence
            usage_ingest_fence()
            fenced.update(missing.cutoffs)
    raise RuntimeError(f"customer {customer_id}: its subscriptions kept changing during the close; next run bills it")


def _close_customer_locked(
    *, customer_id: int, as_of: datetime, fetch: UsageFetcher, fenced: dict[int, datetime] | None
) -> tuple[int, int]:
    from .services import invoices_drafted_record, invoices_finalize  # services imports this module

    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        subscription_transitions_apply(now=as_of, customer_ids=[customer_id])  # plan from what is in force
        lines, credits = split_credits(plan_customer(customer, as_of=as_of, fetch=fetch, fenced=fenced))
        termination_credits_issue(credits, as_of=as_of)  # before finalizing: the invoices below may consume them
        if not lines:
            return 0, 0
        invoices = write_lines(customer, lines, as_of=as_of)
        _late_usage_mark_billed(lines, as_of=as_of)
        due = [invoice.pk for invoice in invoices if _due(invoice, as_of)]
        invoices_finalize(invoice_ids=due, now=as_of)
        invoices_drafted_record(invoices)  # outbound `invoice.drafted` for drafts left open (services.py)
        return len(invoices), len(lines)


def _late_usage_mark_billed(lines: list[Line], *, as_of: datetime) -> None:
    from apps.usage.services import late_usage_mark_billed

    ids = [event_id for line in lines for event_id in line.late_event_ids]
    if ids:
        late_usage_mark_billed(event_ids=ids, billed_at=as_of)


def _prefetched(windows: dict[Window, set[int]], *, live: UsageFetcher = _usage_totals) -> UsageFetcher:
    """Aggregate every due window for all its subscriptions at once (set-based, perf.md §3).

    Safe after the cut-off and fence: rows for a window that arrive later are flagged late and
    excluded from `usage_totals`, so the totals read here cannot change before the close writes them.
    Totals are indexed per subscription, so each lookup costs what it returns; a lookup outside them (a
    customer re-planned under its lock) goes to `live`.
    """
    cache: dict[Window, dict[int, dict]] = {}
    for window, subscription_ids in windows.items():
        ids = sorted(subscription_ids)
        per_subscription: dict[int, dict] = {pk: {} for pk in ids}
        for index in range(0, len(ids), 20_000):
            for key, total in _usage_totals(ids[index : index + 20_000], window.start, window.end).items():
                per_subscription[key[0]][key] = total
        cache[window] = per_subscription

    def fetch(subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        cached = cache.get(Window(start, end))
        if cached is None or any(pk not in cached for pk in subscription_ids):
            return live(subscription_ids, start, end)
        out: dict = {}
        for pk in subscription_ids:
            out.update(cached[pk])
        return out

    return fetch


# --------------------------------------------------------------------------- many customers per transaction

# A run bills its due customers in batches of this many per transaction (INVOICE_CLOSE_BATCH_SIZE);
# a chunk smaller than INVOICE_CLOSE_BATCH_MIN goes customer by customer (little to gain, finer isolation).
CLOSE_BATCH_SIZE = 250
CLOSE_BATCH_MIN = 20
# Customers planned, cut off and aggregated together (`periods_close`): small enough that the first batches
# start early, large enough that each aggregate's fixed cost stays small (1,000: same total as one aggregate
# of 10,000 subscriptions, bench/close.py).
CLOSE_PLAN_CHUNK = 1000
# Threads running batches (INVOICE_CLOSE_WORKERS): two overlap one batch's database work with the next one's
# Python on a 2-core machine (bench/close.py).
CLOSE_WORKERS = 2


@dataclass
class BatchResult:
    billed: dict[int, tuple[int, int]] = field(default_factory=dict)  # customer id -> (invoices, fees)
    left: list[int] = field(default_factory=list)  # locked elsewhere or failed to plan: close one by one


def _plan_batch(
    customers: list[Customer], *, as_of: datetime, fetch: UsageFetcher, loaded: Loaded | None = None,
    fenced: dict[int, datetime] | None = None,
):
    """Plan and price every locked customer of a batch from set-based reads; return (plans, left).

    plans: customer id -> (lines, tax rates per billing day). A customer whose plan or taxes fail
    is left out (nothing is written for it yet) and goes to the one-by-one path, which records it.
    `loaded`: the prepass's rows, reused for customers whose subscriptions are unchanged (others reloaded).
    `fenced`: the cut-offs the run committed and fenced; a customer with a window beyond them is left to the
    one-by-one path, which cuts it off first (`close_customer`). None: the caller vouches for the windows.
    """
    from apps.usage.selectors import late_usage_unbilled

    by_id = {customer.pk: customer for customer in customers}
    if loaded is None:
        subscriptions = _load_subscriptions(list(by_id), as_of=as_of)
    else:
        kept, stale = loaded.reusable(list(by_id), as_of=as_of)
        subscriptions = [subscription for mine in kept.values() for subscription in mine]
        if stale:
            subscriptions.extend(_load_subscriptions(stale, as_of=as_of))
        subscriptions.sort(key=lambda subscription: subscription.pk)
    by_customer: dict[int, list[Subscription]] = defaultdict(list)
    for subscription in subscriptions:
        subscription.customer = by_id[subscription.customer_id]  # share the locked row
        by_customer[subscription.customer_id].append(subscription)
    starts = _scan_starts(subscriptions)
    billed_by = _billed_by_subscription(subscriptions, starts)
    billed = {key: details for keys in billed_by.values() for key, details in keys.items()}
    late = late_usage_unbilled(subscription_ids=[subscription.pk for subscription in subscriptions])
    plans: dict[int, tuple[list[Line], dict]] = {}
    left: list[int] = []
    unpriced: dict[int, list[Line]] = {}
    for customer in customers:
        try:
            lines: list[Line] = []
            for subscription in by_customer.get(customer.pk, []):
                own, scan_from = billed_by.get(subscription.pk, {}), starts.get(subscription.pk)
                planned = loaded.lines_if_unchanged(subscription, scan_from=scan_from, billed=own) if loaded else None
                if planned is None:
                    planned = subscription_lines(subscription, as_of=as_of, billed=own, scan_from=scan_from)
                lines.extend(planned)
        except Exception:
            logger.info("close batch: customer %s planned one by one", customer.pk, exc_info=True)
            left.append(customer.pk)
            continue
        if fenced is not None and unfenced_cutoffs(lines, fenced):
            left.append(customer.pk)  # re-planned beyond the run's cut-offs: cut off first, one by one
            continue
        unpriced[customer.pk] = lines
    # Per-event values only for the charges priced per event, one read per window for the whole batch.
    values = per_event_values([line for lines in unpriced.values() for line in lines])
    late_values = late_per_event_values(subscriptions, late) if late else {}
    for customer in customers:
        if customer.pk not in unpriced:
            continue
        subs = by_customer.get(customer.pk, [])
        try:
            lines = price_lines(unpriced[customer.pk], fetch=fetch, values=values)
            own = {subscription.pk for subscription in subs}
            mine = {key: total for key, total in late.items() if key[0] in own} if late else {}
            lines.extend(
                _late_usage_lines(
                    customer, subs, as_of=as_of, billed=billed, planned=lines, late=mine, values=late_values
                )
            )
            rates = {line.billing_on: None for line in lines}
            rates = {day: customer_tax_rates(customer, on=day) for day in rates}
        except Exception:
            logger.info("close batch: customer %s planned one by one", customer.pk, exc_info=True)
            left.append(customer.pk)
            continue
        if lines:
            plans[customer.pk] = (lines, rates)
    return plans, sorted(left)  # closed one by one in customer order, as the numbers were before


def _period_row(invoice: Invoice, subscription_id: int, lines: list[Line]) -> dict[str, Any]:
    """The billing period row (`InvoiceSubscription` attribute names) `_billing_period_merge` would create."""
    base = [line for line in lines if line.fee_type in (Fee.FeeType.SUBSCRIPTION, Fee.FeeType.CREDIT)]
    charges_from, charges_to = _charges_bounds(lines)
    return {
        "invoice_id": invoice,  # _copy_insert takes its pk
        "subscription_id": subscription_id,
        "from_datetime": min(line.period_from for line in (base or lines)),
        "to_datetime": max(line.period_to for line in (base or lines)),
        "charges_from_datetime": charges_from,
        "charges_to_datetime": charges_to,
        "invoicing_reason": "subscription_periodic",
    }


def _set_totals(invoice: Invoice, fees: list[tuple[int, list[TaxRate]]]) -> list[dict[str, Any]]:
    """Set an invoice's totals from (amount cents, rates) per fee; return its per-rate tax rows (`_copy_insert` dicts)."""
    totals = invoice_totals(fees)
    invoice.fees_amount_cents = totals.untaxed_amount_cents
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = totals.total_amount_cents
    invoice.total_amount_cents = totals.total_amount_cents - invoice.credit_notes_amount_cents
    return [
        {
            "invoice_id": invoice, "tax_code": line.code, "tax_name": line.name, "tax_rate": line.rate,
            "base_amount_cents": line.base_amount_cents, "amount_cents": line.tax_amount_cents,
        }
        for line in totals.tax_lines
    ]


TOTAL_FIELDS = [
    "fees_amount_cents", "sub_total_excluding_taxes_amount_cents", "taxes_amount_cents",
    "sub_total_including_taxes_amount_cents", "total_amount_cents", "updated_at",
]


# msgspec encodes the close's JSON columns (fee details, applied taxes: str, int, list, dict) about 4x
# faster than the json module psycopg uses by default; the values are the same JSON.
_json_dumps = msgspec.json.Encoder().encode


def _ids_draw(model: type, rows: list) -> None:
    """Set primary keys on unsaved instances from the table's identity sequence (one read), as `bulk_create`
    would, so other rows can point at them before they are written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, len(rows)],
        )
        for row, (pk,) in zip(rows, cursor.fetchall()):
            row.pk = pk


def _copy_insert(model: type, rows: list, *, with_ids: bool = False) -> None:
    """Insert rows of `model` with one COPY: the rows `bulk_create` writes, without building SQL per value.

    Rows are unsaved instances or dicts keyed by attribute name (`invoice_id`; a model instance there
    stands for its pk, read at write time). Fees are most of the close's writes (bench/close.py).
    Primary keys are not read back; with `with_ids` (instances only) the rows' own keys, drawn by `_ids_draw`,
    are written and the instances marked saved, as `bulk_create` would.
    `auto_now`/`auto_now_add` fields get one timestamp for all rows; missing dict keys take the field default.
    Unique constraints hold as with INSERT.
    """
    if not rows:
        return
    if with_ids:
        if any(row.pk is None for row in rows):
            raise ValueError(f"{model.__name__}: draw the ids first (_ids_draw)")
        for row in rows:
            row._state.adding, row._state.db = False, connection.alias
    from django.db.models import JSONField, Model

    fields = [field for field in model._meta.concrete_fields if with_ids or not field.primary_key]
    now = timezone.now()
    stamped = {field.attname for field in fields if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)}
    jsons = {field.attname for field in fields if isinstance(field, JSONField)}
    relations = [field for field in fields if field.is_relation]
    attnames = [field.attname for field in fields]
    # Field defaults as Django applies them ("" for a blank CharField); callables (uuid4, list) per row.
    defaults = {
        field.attname: field.default if field.has_default() and callable(field.default) else field.get_default()
        for field in fields
    }
    relation_names = {field.attname for field in relations}
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    # Per column, decided once: most values go to COPY as they are, and only the columns that need it
    # (timestamps, callable defaults, relations given as instances, JSON) are converted per row.
    stamped_at = [index for index, name in enumerate(attnames) if name in stamped]
    # Random ids drawn in one read for the rows that need them (`uuid4_many`: one system call, not one per row).
    drawn = {
        name: iter(uuid4_many(sum(1 for row in rows if isinstance(row, dict) and name not in row)))
        for name, default in defaults.items() if default is uuid.uuid4
    }
    supplied_at = [
        (index, name, drawn[name].__next__ if name in drawn else defaults[name])
        for index, name in enumerate(attnames)
        if name not in stamped and callable(defaults[name])
    ]
    related_at = [index for index, name in enumerate(attnames) if name in relation_names]
    json_at = [index for index, name in enumerate(attnames) if name in jsons]
    absent = [(name, defaults[name]) for name in attnames]

    def fix(values: list, row: dict) -> list:
        for index in stamped_at:
            values[index] = now
        for index, name, supply in supplied_at:
            if name not in row:
                values[index] = supply()
        for index in related_at:
            value = values[index]
            if isinstance(value, Model):
                if value.pk is None:
                    raise ValueError(f"{model.__name__}.{attnames[index]}: related object not saved")
                values[index] = value.pk
        for index in json_at:
            if values[index] is not None:
                values[index] = _json_dumps(values[index]).decode()  # COPY's text format: jsonb parses it as written
        return values

    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                if isinstance(row, Model):
                    for name in stamped:
                        setattr(row, name, now)
                    values = {name: getattr(row, name) for name in attnames}
                    for relation in relations:  # assigned before the related row was saved, as bulk_create allows
                        if values[relation.attname] is None and relation.is_cached(row):
                            values[relation.attname] = relation.get_cached_value(row)
                    row = values
                get = row.get
                copy.write_row(fix([get(name, default) for name, default in absent], row))


def _due(invoice: Invoice, as_of: datetime) -> bool:
    """Whether the close finalizes `invoice` now (its grace period is over, or there is none)."""
    return invoice.grace_until is not None and invoice.grace_until <= as_of


def _write_batch(customers: dict[int, Customer], plans: dict[int, tuple[list[Line], dict]], *, as_of: datetime):
    """Write every planned line of a batch set-based; return (invoices per customer in write order, fees per customer).

    New invoices due at once are returned unwritten, ids drawn: `close_batch` numbers them, then inserts them.

    Same rows as `write_lines` per customer: one invoice per (customer, billing day, currency), appended to
    that day's oldest draft or opened with the next `close_key`; fees, billing periods, tax summary, totals.
    Unique fee_key / close_key make any double write fail the whole batch (rolled back, then one by one).
    """
    ids = list(plans)
    drafts: dict[tuple[int, date, str], Invoice] = {}
    for invoice in (
        Invoice.objects.select_for_update()
        .filter(customer_id__in=ids, invoice_type=Invoice.InvoiceType.SUBSCRIPTION, status=Invoice.Status.DRAFT)
        .order_by("pk")
    ):
        drafts.setdefault((invoice.customer_id, invoice.issuing_date, invoice.currency), invoice)
    days = {line.billing_on for lines, _ in plans.values() for line in lines}
    taken: dict[str, int] = defaultdict(int)
    for key in Invoice.objects.filter(customer_id__in=ids, issuing_date__in=days, close_key__startswith="close:").values_list(
        "close_key", flat=True
    ):
        taken[key.rsplit(":", 1)[0]] += 1

    new_invoices: list[Invoice] = []
    lago_ids = iter(uuid4_many(sum(len({(line.billing_on, line.currency) for line in lines}) for lines, _ in plans.values())))
    touched: dict[int, list[Invoice]] = {}
    fees: list[dict[str, Any]] = []  # Fee rows (`fee_values`), written with COPY
    fees_of: dict[int, list[tuple[int, list[TaxRate]]]] = defaultdict(list)  # id(invoice) -> (cents, rates)
    periods: dict[tuple[int, int], list[Line]] = defaultdict(list)  # (id(invoice), subscription) -> lines
    invoice_of: dict[int, Invoice] = {}
    fee_counts: dict[int, int] = {}
    taxed: dict[tuple, tuple] = {}  # fee_values' memo for this batch
    for customer_id, (lines, rates) in plans.items():
        customer = customers[customer_id]
        groups: dict[tuple[date, str], list[Line]] = defaultdict(list)
        for line in lines:
            groups[(line.billing_on, line.currency)].append(line)
        mine: list[Invoice] = []
        for (billing_on, currency), group in sorted(groups.items(), key=lambda item: item[0]):
            invoice = drafts.get((customer_id, billing_on, currency))
            if invoice is not None:
                invoice.customer = customer  # the locked row (timezone at finalization)
            else:
                prefix = f"close:{customer_id}:{billing_on}:{currency}"
                invoice = Invoice(
                    lago_id=next(lago_ids),
                    customer=customer,
                    invoice_type=Invoice.InvoiceType.SUBSCRIPTION,
                    currency=currency,
                    close_key=f"{prefix}:{taken[prefix] + 1}",
                    issuing_date=billing_on,
                    net_payment_term=customer.net_payment_term,
                    payment_due_date=billing_on + timedelta(days=customer.net_payment_term),
                    grace_until=as_of + timedelta(days=_grace_days(customer)),
                )
                new_invoices.append(invoice)
            invoice_of[id(invoice)] = invoice
            for line in group:
                fee = fee_values(line, rates=rates[billing_on], taxed=taxed)
                fee["invoice_id"] = invoice  # saved below; _copy_insert takes its pk
                fees.append(fee)
                fees_of[id(invoice)].append((fee["amount_cents"], rates[billing_on]))
                if line.subscription is not None and line.period_from is not None:
                    periods[(id(invoice), line.subscription.pk)].append(line)
            mine.append(invoice)
        touched[customer_id] = mine
        fee_counts[customer_id] = len(lines)

    # Totals: a new invoice holds only its new fees; a draft also its earlier ones (one read for all drafts).
    old_drafts = [invoice for invoice in invoice_of.values() if invoice.pk is not None]
    earlier: dict[int, list[tuple[int, list[TaxRate]]]] = defaultdict(list)
    if old_drafts:
        for fee in Fee.objects.filter(invoice__in=old_drafts).only("invoice_id", "amount_cents", "applied_taxes"):
            earlier[fee.invoice_id].append((fee.amount_cents, _rates_of(fee)))
    applied: list[dict[str, Any]] = []
    now = timezone.now()
    for key, invoice in invoice_of.items():
        applied.extend(_set_totals(invoice, earlier.get(invoice.pk, []) + fees_of[key]))
        invoice.updated_at = now

    # Invoices due at once are written by their finalization, numbered (`close_batch`): one insert per row,
    # not an insert of a draft and an update. Every new invoice has its id now, for the rows pointing at it
    # (foreign keys are checked at commit).
    if new_invoices:
        _ids_draw(Invoice, new_invoices)
    _copy_insert(Invoice, [invoice for invoice in new_invoices if not _due(invoice, as_of)], with_ids=True)
    if old_drafts:
        Invoice.objects.bulk_update(old_drafts, TOTAL_FIELDS)
        InvoiceAppliedTax.objects.filter(invoice__in=old_drafts).delete()
    _copy_insert(Fee, fees)  # dicts: no Fee instances for the batch's largest table
    _copy_insert(InvoiceAppliedTax, applied)

    existing: dict[tuple[int, int], InvoiceSubscription] = {}
    if old_drafts:
        existing = {
            (row.invoice_id, row.subscription_id): row
            for row in InvoiceSubscription.objects.filter(invoice__in=old_drafts)
        }
    create, update = [], []
    for (key, subscription_id), lines in periods.items():
        row = _period_row(invoice_of[key], subscription_id, lines)
        found = existing.get((invoice_of[key].pk, subscription_id))
        if found is None:
            create.append(row)
            continue
        found.from_datetime = min(found.from_datetime, row["from_datetime"])
        found.to_datetime = max(found.to_datetime, row["to_datetime"])
        found.charges_from_datetime, found.charges_to_datetime = _charges_union(
            (found.charges_from_datetime, found.charges_to_datetime),
            (row["charges_from_datetime"], row["charges_to_datetime"]),
        )
        update.append(found)
    _copy_insert(InvoiceSubscription, create)
    if update:
        InvoiceSubscription.objects.bulk_update(
            update, ["from_datetime", "to_datetime", "charges_from_datetime", "charges_to_datetime"]
        )
    return touched, fee_counts


def close_batch(
    *,
    customer_ids: list[int],
    as_of: datetime,
    fetch: UsageFetcher = _usage_totals,
    loaded: Loaded | None = None,
    before_numbering: Callable[[], None] | None = None,
    fenced: dict[int, datetime] | None = None,
) -> BatchResult:
    """Bill many customers in one transaction; return who was billed and who is left for one-by-one.

    Locks the customers with `FOR UPDATE SKIP LOCKED` in id order (a customer another worker holds is
    left, not waited for), re-plans under the locks from set-based reads, writes set-based, finalizes
    due drafts with one `services.invoices_finalize` call (one numbering lock per series). Any write error rolls the whole batch back (raised).
    """
    from .services import invoices_drafted_record, invoices_finalize  # services imports this module

    result = BatchResult()
    with transaction.atomic():
        customers = list(
            Customer.objects.select_for_update(skip_locked=True).filter(pk__in=customer_ids).order_by("pk")
        )
        locked = {customer.pk: customer for customer in customers}
        result.left = [customer_id for customer_id in customer_ids if customer_id not in locked]
        if locked:
            # Plan changes and ending dates due by `as_of` take effect before planning, under the customers'
            # locks: a period is always planned from the subscription in force at its start.
            subscription_transitions_apply(now=as_of, customer_ids=list(locked))
        plans, failed = _plan_batch(customers, as_of=as_of, fetch=fetch, loaded=loaded, fenced=fenced)
        result.left.extend(failed)
        credits: list[Line] = []
        for customer_id in list(plans):
            lines, rates = plans[customer_id]
            lines, mine = split_credits(lines)
            credits.extend(mine)
            if lines:
                plans[customer_id] = (lines, rates)
            else:
                del plans[customer_id]
        termination_credits_issue(credits, as_of=as_of)  # before finalizing: the invoices below may consume them
        if not plans:
            return result
        touched, fee_counts = _write_batch(locked, plans, as_of=as_of)
        _late_usage_mark_billed([line for lines, _ in plans.values() for line in lines], as_of=as_of)
        due = [invoice for customer_id in sorted(touched) for invoice in touched[customer_id] if _due(invoice, as_of)]
        # Numbers follow the one-by-one order: customers by id, each customer's invoices in write order.
        if before_numbering is not None:
            _check_written_references()  # while earlier chunks commit, not after: see its docstring
            before_numbering()  # parallel close: wait for the earlier chunks to commit (_Turns)
        invoices_finalize(held=due, now=as_of, write_unsaved=lambda invoices: _copy_insert(Invoice, invoices, with_ids=True))
        finalized = {invoice.pk for invoice in due}
        invoices_drafted_record([invoice for mine in touched.values() for invoice in mine if invoice.pk not in finalized])
        result.billed = {customer_id: (len(touched[customer_id]), fee_counts[customer_id]) for customer_id in touched}
    return result


_EARLY_CHECKED_SQL = """
SELECT string_agg(quote_ident(conname), ', ' ORDER BY conname) FROM pg_constraint
 WHERE contype = 'f' AND condeferrable AND confrelid <> %s::regclass AND conrelid = ANY(%s::regclass[])
"""
_early_checked: dict[str, str] = {}  # database alias -> constraint names (the schema's, fixed per process)


def _check_written_references() -> None:
    """Run now the deferred foreign-key checks of the batch's fees and billing periods that do not point at
    invoices (service, subscription, charge): ~4,500 row checks per batch. A threaded close commits its
    batches one at a time in numbering order (`_Turns`); checked at commit, they ran while the next batch
    waited for its turn. The checks on invoice references stay deferred: due invoices are written later,
    once numbered."""
    names = _early_checked.get(connection.alias)
    if names is None:
        with connection.cursor() as cursor:
            cursor.execute(
                _EARLY_CHECKED_SQL,
                [Invoice._meta.db_table, [Fee._meta.db_table, InvoiceSubscription._meta.db_table]],
            )
            names = _early_checked[connection.alias] = cursor.fetchone()[0] or ""
    if names:
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {names} IMMEDIATE")


def customers_to_close(*, as_of: datetime) -> list[int]:
    """Return ids of customers with subscriptions the close must look at."""
    return list(
        Subscription.objects.filter(
            Q(status=Subscription.Status.ACTIVE)
            | Q(status=Subscription.Status.TERMINATED, terminated_at__gte=as_of - TERMINATED_LOOKBACK)
        )
        .filter(subscription_at__lte=as_of)
        .values_list("customer_id", flat=True)
        .distinct()
        .order_by("customer_id")
    )


class _Turns:
    """Chunks take invoice numbers in chunk order: chunk k numbers only once chunks 0..k-1 are done.

    With several threads, chunk k plans and writes while chunk k-1 finishes, then waits here (holding only
    its own customers' locks, which no earlier chunk needs) before taking numbers; so numbers follow customer
    order as in a sequential run, and the numbering row lock is never waited on in a cycle.
    """

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._next = 0
        self._changed = threading.Condition()

    def wait(self, chunk: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._next >= chunk)

    def done(self, chunk: int) -> None:
        with self._changed:
            self._done.add(chunk)
            while self._next in self._done:
                self._next += 1
            self._changed.notify_all()


@dataclass
class _ChunkOutcome:
    billed: list[tuple[int, int, int]] = field(default_factory=list)  # (customer id, invoices, fees)
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (customer id, error, traceback)


def _close_chunk(
    chunk: list[int], *, as_of: datetime, fetch: UsageFetcher, loaded: Loaded | None, smallest: int,
    before_numbering: Callable[[], None] | None = None, fenced: dict[int, datetime] | None = None,
) -> _ChunkOutcome:
    """Bill one chunk of customers: one batch, then one by one for those it left or could not write."""
    outcome = _ChunkOutcome()
    one_by_one = chunk
    if len(chunk) >= smallest:
        try:
            result = close_batch(
                customer_ids=chunk, as_of=as_of, fetch=fetch, loaded=loaded, before_numbering=before_numbering,
                fenced=fenced,
            )
        except Exception:  # rolled back as a whole: each customer again on its own, errors recorded there
            logger.exception("close batch failed for customers %s..%s", chunk[0], chunk[-1])
        else:
            outcome.billed.extend((customer_id, *counts) for customer_id, counts in result.billed.items())
            one_by_one = result.left
    if one_by_one and before_numbering is not None:
        before_numbering()
    for customer_id in one_by_one:
        try:
            invoices, fees = close_customer(customer_id=customer_id, as_of=as_of, fetch=fetch, fenced=fenced)
        except Exception as exc:  # task boundary per customer: record and go on
            logger.exception("close failed for customer %s", customer_id)
            outcome.failed.append((customer_id, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        outcome.billed.append((customer_id, invoices, fees))
    return outcome


class _Pending:
    """A UsageFetcher whose totals another thread is still aggregating: the first lookup waits for them.

    If that aggregate failed, lookups fall back to live per-window queries (`live`; slower, same totals):
    the run goes on, and the error is logged once.
    """

    def __init__(self, future: Future, *, live: UsageFetcher) -> None:
        self._future = future
        self._live = live
        self._fetch: UsageFetcher | None = None

    def __call__(self, subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        if self._fetch is None:
            try:
                self._fetch = self._future.result()
            except Exception:
                logger.exception("close: usage aggregate failed; querying per window instead")
                self._fetch = self._live
        return self._fetch(subscription_ids, start, end)


class _Pipeline:
    """Run the close's stages so they overlap: while this thread plans chunk k+1 (Python), one thread
    aggregates chunk k's usage (mostly PostgreSQL's work) and `workers` threads bill the batches whose
    usage is in (`_close_chunk`); the aggregate is the longest single step of a close (bench/close.py).

    With `workers` 0 every stage runs at once in the calling thread, in the same order. Batches take
    invoice numbers in the order they were added (`_Turns`), so numbers follow customer order either way.
    Each stage thread keeps one database connection for the run; they are closed at the end.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._turns = _Turns()
        self._batches: list[Future | _ChunkOutcome] = []
        self._connections: list = []
        self._connections_lock = threading.Lock()
        if workers:
            self._aggregator = ThreadPoolExecutor(1, "close-aggregate", initializer=self._thread_started)
            self._billers = ThreadPoolExecutor(workers, "close", initializer=self._thread_started)

    def _thread_started(self) -> None:
        # Opened lazily in this thread, closed from the caller's once the pools are done.
        wrapper = connections[DEFAULT_DB_ALIAS]
        wrapper.inc_thread_sharing()
        with self._connections_lock:
            self._connections.append(wrapper)

    def aggregate(self, windows: dict[Window, set[int]]) -> UsageFetcher:
        """Aggregate the windows' usage (after their cut-offs and the fence); return the fetcher batches use."""
        if not self._workers:
            return _prefetched(windows)
        return _Pending(self._aggregator.submit(lambda: _prefetched(windows, live=self._live)), live=self._live)

    def _live(self, subscription_ids: list[int], start: datetime, end: datetime) -> dict:
        # On the aggregating thread's connection, in its own short transaction: a batch reading usage itself
        # would hold the rollup watermark's share lock until it commits, across its wait for its numbering
        # turn; a rollup advance queued on that row could then stall an earlier batch behind it (a cycle
        # PostgreSQL cannot see). Usage read here is as safe as the prefetched totals (cut-off and fence).
        return self._aggregator.submit(_usage_totals, subscription_ids, start, end).result()

    def bill(self, chunk: list[int], **kwargs) -> None:
        """Bill one batch of customers, after the batches added before it as far as numbers go."""
        index = len(self._batches)
        if not self._workers:
            self._batches.append(_close_chunk(chunk, **kwargs))
            return

        def run() -> _ChunkOutcome:
            try:
                return _close_chunk(chunk, before_numbering=lambda: self._turns.wait(index), **kwargs)
            finally:
                self._turns.done(index)

        self._batches.append(self._billers.submit(run))

    def outcomes(self) -> list[_ChunkOutcome]:
        return [batch.result() if isinstance(batch, Future) else batch for batch in self._batches]

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if not self._workers:
            return
        if error is not None:  # the caller failed (or a batch raised): start nothing more
            for batch in self._batches:
                if isinstance(batch, Future):
                    batch.cancel()
        self._billers.shutdown(wait=True, cancel_futures=error is not None)  # first: running batches may still read usage
        self._aggregator.shutdown(wait=True, cancel_futures=error is not None)
        for wrapper in self._connections:
            wrapper.close()
            wrapper.dec_thread_sharing()


@contextmanager
def _young_collections_spaced(threshold: int = 50_000):
    """Run a block with the cyclic GC's first generation collected every `threshold` allocations, not 700.

    A close allocates millions of short-lived objects (rows, lines, dicts) while holding ~10^5 long-lived
    ones (loaded subscriptions, plans, lines), and the collections this triggers cost 1.2-2.3 s of CPU in a
    10,000-customer close (bench/close.py, 4 paired runs). Nothing here makes cycles that need collecting early;
    the default threshold is restored after, whatever happens.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(threshold, previous[0]), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def periods_close(*, as_of: datetime | None = None, fetch: UsageFetcher = _usage_totals) -> CloseRun:
    """Bill every subscription period ended at `as_of` (default now), in batches of customers.

    Customers are planned in chunks (`close_prepass`); each chunk's usage cut-offs are committed and fenced,
    its usage aggregated set-based, then its customers billed in batches, one transaction each (`close_batch`);
    customers a batch could not lock or plan, and every customer of a batch that failed to write, are then
    closed one by one (`close_customer`). A failing customer is recorded on the run (admin) and the others go
    on; the next run retries it. The stages overlap on threads (`_Pipeline`: one aggregating, INVOICE_CLOSE_WORKERS
    billing, default 2) unless the caller holds a transaction open (the threads' connections could not see its
    rows): then one after the other.
    """
    with _young_collections_spaced():
        return _periods_close(as_of=as_of, fetch=fetch)


def _periods_close(*, as_of: datetime | None, fetch: UsageFetcher) -> CloseRun:
    from apps.usage.aggregation import rollup_state_ensure
    from apps.usage.services import usage_ingest_fence

    as_of = as_of or timezone.now()
    run = CloseRun.objects.create(as_of=as_of)
    # What time made due is applied first, so the prepass plans (and cuts usage off) from the subscriptions in
    # force; a change racing in later is applied again under each batch's locks.
    subscription_transitions_apply(now=as_of)
    customer_ids = customers_to_close(as_of=as_of)
    run.customers_count = len(customer_ids)
    size = max(1, int(getattr(settings, "INVOICE_CLOSE_BATCH_SIZE", CLOSE_BATCH_SIZE)))
    smallest = int(getattr(settings, "INVOICE_CLOSE_BATCH_MIN", CLOSE_BATCH_MIN))
    workers = max(1, int(getattr(settings, "INVOICE_CLOSE_WORKERS", CLOSE_WORKERS)))
    parallel = workers > 1 and not connection.in_atomic_block
    rollup_state_ensure()  # committed before the threads start: see its docstring
    with _Pipeline(workers if parallel else 0) as pipeline:
        for index in range(0, len(customer_ids), CLOSE_PLAN_CHUNK):
            due, windows, cutoffs, loaded = close_prepass(customer_ids[index : index + CLOSE_PLAN_CHUNK], as_of=as_of)
            chunk_fetch, fenced = fetch, None
            if fetch is _usage_totals:
                usage_cutoffs_advance(cutoffs)
                usage_ingest_fence()
                chunk_fetch, fenced = pipeline.aggregate(windows), cutoffs
            billable = [customer_id for customer_id in customer_ids[index : index + CLOSE_PLAN_CHUNK] if customer_id in due]
            for start in range(0, len(billable), size):
                pipeline.bill(
                    billable[start : start + size], as_of=as_of, fetch=chunk_fetch, loaded=loaded, smallest=smallest,
                    fenced=fenced,
                )
        results = pipeline.outcomes()

    outcomes: list[dict[str, Any]] = []  # CloseRunCustomer rows, one COPY (one per billed customer)
    for result in results:
        for customer_id, invoices, fees in result.billed:
            if invoices:
                run.invoices_count += invoices
                run.fees_count += fees
                outcomes.append(
                    {
                        "run_id": run.pk, "customer_id": customer_id, "outcome": CloseRunCustomer.Outcome.BILLED,
                        "invoices_count": invoices, "fees_count": fees,
                    }
                )
        for customer_id, error, trace in result.failed:
            run.failures_count += 1
            outcomes.append(
                {
                    "run_id": run.pk, "customer_id": customer_id, "outcome": CloseRunCustomer.Outcome.FAILED,
                    "error": error, "traceback": trace,
                }
            )
    _copy_insert(CloseRunCustomer, outcomes)
    run.status = CloseRun.Status.PARTIAL if run.failures_count else CloseRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()
    return run


def current_usage_lines(subscription: Subscription, *, at: datetime, fetch: UsageFetcher = _usage_totals) -> tuple:
    """Return (period, from, to, priced charge lines) for the period containing `at`, by the close's engine."""
    tz = subscription.customer.applicable_timezone
    anchor = local_date(subscription.subscription_at, tz)
    first_day, _ = active_days(subscription)
    period = period_containing(
        interval=subscription.plan.interval, billing_time=subscription.billing_time,
        anchor_date=anchor, at=max(local_date(at, tz), anchor),
    )
    p_from, p_to = period_bounds_utc(period, tz)
    started = subscription.started_at or subscription.subscription_at
    window = Window(max(p_from, started), p_to)
    lines = [
        Line(
            billing_on=period.end,
            currency=subscription.plan.amount_currency,
            fee_key=f"usage:{subscription.pk}:{charge.pk}",
            fee_type=Fee.FeeType.CHARGE,
            subscription=subscription,
            charge=charge,
            name=_charge_name(subscription, charge),
            window=window,
            period_from=p_from,
            period_to=p_to,
        )
        for charge in subscription.plan.charges.all()
    ]
    return period, p_from, p_to, price_lines(lines, fetch=fetch)

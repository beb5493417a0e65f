"""The close's planning stage: which fees of which subscription periods are due, and not billed yet.

Pure planning (`subscription_lines`) over rows loaded set-based (`_load_subscriptions`), the fee keys already
billed, late usage to bill, and the lock-free prepass that plans a chunk of customers ahead of their batches.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q, prefetch_related_objects

from apps.catalog.models import Charge, Plan, plan_commitment
from apps.customers.models import Customer, Service
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import local_date, local_midnight_utc, period_bounds_utc, period_containing, periods_between

from .. import rating
from ..fees import ZERO, Line, Window, customer_tax_rates
from ..models import Fee
from ..selectors import group_canon, progressive_billed, tax_schedule
from .pricing import group_lines, line_combinations, price_charge_line, price_lines
from .usage import UsageFetcher, WindowsNotFenced, _usage_totals, per_event_values, unfenced_cutoffs

logger = logging.getLogger(__name__)


# Terminated subscriptions are looked at for this long after termination (a yearly period at most).
TERMINATED_LOOKBACK = timedelta(days=400)


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
    grouped_billed = {key.partition(":group:")[0].partition(":filter:")[0] for key in billed if ":group:" in key}
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
            # A charge's filter and group lines are written with it, in one invoice; a grouped charge's own line is
            # written as its groups' (`pricing.group_lines`), under keys that extend its own.
            if key in billed or key in grouped_billed:
                continue
            lines.extend(
                charge_lines(
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
            )
        commitment = plan_commitment(plan)
        key = f"sub:{subscription.pk}:commitment:{period.start}"
        if commitment is not None and commitment.amount_cents and key not in billed:
            # Priced once the period's other fees are known (`commitment_true_ups`), on the invoice that bills the
            # period's usage: in arrears with the base fee, in advance with the next period's base fee (Lago).
            lines.append(
                Line(
                    billing_on=arrears_on,
                    fee_key=key,
                    fee_type=Fee.FeeType.COMMITMENT,
                    name=f"{subscription.service.name} · {commitment.invoice_display_name or 'Minimum commitment true-up'}",
                    units=Decimal(1),
                    from_datetime=p_from,
                    to_datetime=p_to,
                    min_amount_cents=commitment.amount_cents,
                    proration=(period, first, active_to if ends_here else None),
                    **common,
                )
            )
    return lines


def _period_fee_totals(lines: list[Line]) -> dict[tuple[int, datetime], tuple[int, Decimal]]:
    """Per (subscription id, period start) of the commitment lines: (cents, precise) of the fees already written
    for that period that count towards its commitment (base fee, usage charges and their minimum true-ups)."""
    pairs = sorted({(line.subscription.pk, line.period_from, line.period_to) for line in lines})
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT v.id, v.p_from, coalesce(sum(f.amount_cents), 0), coalesce(sum(f.precise_amount), 0)
              FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, p_from, p_to)
              JOIN invoicing_fee f ON f.subscription_id = v.id
              JOIN invoicing_invoice i ON i.id = f.invoice_id AND i.status <> 'voided'
             WHERE f.fee_type = ANY(%s) AND NOT f.is_adjustment AND f.fee_key NOT LIKE %s
               AND f.from_datetime >= v.p_from AND f.to_datetime <= v.p_to
             GROUP BY v.id, v.p_from
            """,
            [[pair[0] for pair in pairs], [pair[1] for pair in pairs], [pair[2] for pair in pairs],
             [Fee.FeeType.SUBSCRIPTION, Fee.FeeType.CHARGE, Fee.FeeType.COMMITMENT], "sub:%:commitment:%"],
        )
        return {(sub_id, p_from): (int(cents), Decimal(precise)) for sub_id, p_from, cents, precise in cursor}


def _period_charge_lines(lines: list[Line]) -> list[Line]:
    return [line for line in lines if line.fee_type == Fee.FeeType.CHARGE and line.charge is not None
            and line.window is not None and not line.is_adjustment and line.period_from is not None]


def progressive_billed_for(lines: list[Line]) -> dict:
    """What progressive billing invoices billed of the period charges among `lines` (a whole batch: one query)."""
    charged = _period_charge_lines(lines)
    return progressive_billed([(line.subscription.pk, line.period_from, line.period_to) for line in charged])


def progressive_deduct(lines: list[Line], billed: dict) -> list[Line]:
    """Take off each period charge line what progressive billing invoices already billed of that charge in that
    period (Lago's progressive billing credit, per fee here): the line is priced on the whole period's usage, so
    the two together bill it exactly once. The charge's minimum was already trued up on the whole amount.
    `billed`: `progressive_billed_for` of these lines (or of their whole batch)."""
    if not billed:
        return lines
    for line in _period_charge_lines(lines):
        filter_id = line.charge_filter.pk if line.charge_filter is not None else None
        group = group_canon(line.grouped_by or {})
        cents, precise = billed.get((line.subscription.pk, line.charge.pk, filter_id, group, line.period_from),
                                    (0, ZERO))
        if not cents and not precise:
            continue
        # Usage may fall after a progressive invoice (a sum with negative corrections): the period's fee then goes
        # to zero, never below. Nothing is refunded, as Lago caps its progressive credit at the fee.
        cents, precise = min(cents, max(line.amount_cents, 0)), min(precise, max(line.precise_amount, ZERO))
        line.amount_cents -= cents
        line.precise_amount -= precise
        line.amount_details = {**line.amount_details, "progressive_billed_amount_cents": cents}
    return lines


def commitment_true_ups(lines: list[Line]) -> list[Line]:
    """Price the plan commitment lines among a customer's priced `lines`; drop those with nothing to true up.

    Lago's rule: the period's base fee and usage fees (charges, their minimum true-ups) below the commitment,
    prorated by the period's active days, are lifted to it; add-ons, credits and late-usage adjustments do not
    count. What counts is what this close bills for the period plus what earlier invoices billed for it.
    """
    pending = [line for line in lines if line.fee_type == Fee.FeeType.COMMITMENT and line.charge is None]
    if not pending:
        return lines
    written = _period_fee_totals(pending)
    pending_ids = {id(line) for line in pending}
    out: list[Line] = []
    for line in lines:
        if id(line) not in pending_ids:
            out.append(line)
            continue
        cents, precise = written.get((line.subscription.pk, line.period_from), (0, ZERO))
        for other in lines:
            if (other.subscription is not None and other.subscription.pk == line.subscription.pk
                    and other.period_from == line.period_from and not other.is_adjustment
                    and id(other) not in pending_ids
                    and other.fee_type in (Fee.FeeType.SUBSCRIPTION, Fee.FeeType.CHARGE, Fee.FeeType.COMMITMENT)):
                cents += other.amount_cents
                precise += other.precise_amount
        period, first, until = line.proration
        true_up = rating.charge_minimum_true_up(
            min_amount_cents=line.min_amount_cents, charge_amount_cents=cents, charge_precise_amount=precise,
            currency=line.currency, period=period, active_from=first, active_to=until,
        )
        if not true_up.amount_cents:
            continue
        line.precise_unit_amount = line.precise_amount = true_up.precise_amount
        line.amount_cents = true_up.amount_cents
        line.amount_details = {
            "commitment_amount_cents": line.min_amount_cents,
            "days": true_up.days,
            "period_days": true_up.period_days,
            "fees_amount_cents": cents,
        }
        out.append(line)
    return out


def charge_lines(line: Line) -> list[Line]:
    """A charge's line, preceded by one line per filter of the charge (Lago's fee per filter): each filter's line
    bills the events it prices (`apps/invoicing/filters.py`), the charge's own line the rest. The minimum applies
    to the charge's lines together, so it stays on the charge's own line (priced last: `price_lines`)."""
    filters = line.charge.live_filters
    if not filters:
        return [line]
    return [
        replace(line, fee_key=f"{line.fee_key}:filter:{item.pk}", charge_filter=item,
                name=f"{line.name} · {item.display_name}", min_amount_cents=0, proration=None)
        for item in filters
    ] + [line]


def _scan_starts(subscriptions: list[Subscription]) -> dict[int, date]:
    """Return per subscription the local day to start looking from: the last billed charges period."""
    by_id = {subscription.pk: subscription for subscription in subscriptions}
    if not by_id:
        return {}
    with connection.cursor() as cursor:  # ids as one array: the ORM's IN over instances cost ~5 ms per 250
        cursor.execute(
            # A progressive billing invoice bills part of a period the close has still to bill: not a scan start.
            "SELECT subscription_id, max(charges_from_datetime) FROM invoicing_invoicesubscription"
            " WHERE subscription_id = ANY(%s) AND invoicing_reason <> 'progressive_billing' GROUP BY subscription_id",
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
    with transaction.atomic(), connection.cursor() as cursor:
        # JIT off, for this transaction only: with the fee table's statistics stale, the estimate passes
        # jit_above_cost and compiling the plan (inlined, optimized) took ~250 ms of a 300 ms statement whose
        # index probes take a few: most of a 100,000-subscription rerun (docs/performance.md, session 10).
        cursor.execute("SELECT set_config('jit', 'off', true)")
        cursor.execute(
            """
            SELECT v.id, f.fee_key, f.details
              FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, since)
              CROSS JOIN LATERAL (
                SELECT fee.fee_key, CASE WHEN fee.fee_type = %s THEN fee.amount_details END AS details
                  FROM invoicing_fee fee
                 WHERE fee.subscription_id = v.id
                   AND (v.since IS NULL OR fee.from_datetime IS NULL OR fee.from_datetime >= v.since)
                OFFSET 0
              ) f
            UNION ALL
            SELECT n.subscription_id, n.close_key, NULL FROM invoicing_creditnote n
             WHERE n.subscription_id = ANY(%s) AND n.close_key IS NOT NULL
            """,
            # One index probe per subscription whatever the fee table's statistics say: `OFFSET 0` keeps the
            # planner from flattening the LATERAL into a join it may run as a hash join over every fee. Joined
            # plainly, a fee table whose statistics predate the close (a first close; one that grew past its last
            # ANALYZE) was read whole by each chunk: 0.6-1.1 s per chunk at 600,000 fees, so a rerun of 100,000
            # subscriptions took 113 s against 1.4 s at 10,000 (docs/performance.md, session 10).
            # The second part: in-advance credits the close issued as credit notes (`termination_credits_issue`).
            [ids, since, Fee.FeeType.SUBSCRIPTION, ids],
        )
        # Only a base fee's details are read (its `active_to`, for upgrade credits).
        billed: dict[int, dict[str, dict]] = defaultdict(dict)
        for subscription_id, key, details in cursor:
            billed[subscription_id][key] = (json.loads(details) if isinstance(details, str) else details) or {}
        return billed


def late_per_event_values(subscriptions: list[Subscription], late: dict) -> dict:
    """Fetch the late rows' values for the (subscription, metric) pairs a charge prices per event (percentage
    with free events, per-transaction min/max, free total + fixed fee): one read, none if no charge needs it."""
    from apps.usage.selectors import late_usage_values

    ids: set[int] = set()  # a metric can back several charges
    for subscription in subscriptions:
        for charge in subscription.plan.charges.all():
            total = late.get((subscription.pk, charge.billable_metric_id))
            if total is not None and any(
                rating.needs_per_event_amounts(charge_model=charge.charge_model, properties=properties)
                for properties in (charge.properties, *(item.properties for item in charge.live_filters))
            ):
                ids.update(total.event_ids)
    return late_usage_values(event_ids=sorted(ids)) if ids else {}


def _late_billing_days(customer, subscriptions, planned: list[Line], *, as_of: datetime) -> dict[int, date]:
    """Per subscription, the day its late usage is billed: that of the next invoice billing its periods.

    One invoice per customer and billing day, whenever the close runs: late lines join the subscription's own
    period lines planned now (a close run days after the period end dates them at the period end, not at the
    run). A subscription with no lines due now bills its late usage later, with its next period, unless it
    has no period to come (terminated): then on the customer's first invoice of this close in that currency
    dated on or after the termination, or today. Never on an earlier day: a draft's refresh re-plans old
    periods (`rescan_from`), and an invoice issued while the subscription still ran is not where its late
    usage goes (the state machine's finding: an upgrade's draft of the first day took the late usage of the
    plan that replaced it).
    """
    first_day: dict[int, date] = {}
    days_by_currency: dict[str, set[date]] = defaultdict(set)
    for line in planned:
        if line.is_adjustment or line.subscription is None:
            continue
        pk = line.subscription.pk
        first_day[pk] = min(first_day.get(pk, line.billing_on), line.billing_on)
        days_by_currency[line.currency].add(line.billing_on)
    tz = customer.applicable_timezone
    today = local_date(as_of, tz)
    days: dict[int, date] = {}
    for subscription in subscriptions:
        if subscription.pk in first_day:
            days[subscription.pk] = first_day[subscription.pk]
        elif subscription.terminated_at is not None and subscription.terminated_at <= as_of:
            ended_on = local_date(subscription.terminated_at, tz)
            later = [day for day in days_by_currency[subscription.plan.amount_currency] if day >= ended_on]
            days[subscription.pk] = min(later, default=today)
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
    grouped_billed = {key.partition(":group:")[0].partition(":filter:")[0] for key in billed if ":group:" in key}
    for subscription in subscriptions:
        billing_on = days[subscription.pk]
        for charge in subscription.plan.charges.all():
            total = late.get((subscription.pk, charge.billable_metric_id))
            if total is None or not total.events_count:
                continue
            ids = total.event_ids
            key = f"sub:{subscription.pk}:late:{charge.pk}:{ids[0]}:{ids[-1]}:{len(ids)}"
            if key in billed or key in grouped_billed:
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
            # A charge with filters: each filter's late rows at its price, the rest at the charge's (only the
            # lines with late rows; the rows are marked billed with them, so none is billed twice).
            # Charges with pricing group keys: each group's late rows on their own line (`group_lines`).
            parts = [grouped for part in charge_lines(line) for grouped in group_lines(part, total.parts)]
            for part in parts:
                mine = total
                if part.charge_filter is not None or charge.live_filters or part.grouped_by is not None:
                    mine = total.select(line_combinations(part, total.parts))
                    if not mine.events_count:
                        continue
                    part.late_event_ids = mine.event_ids
                amounts = None
                if rating.needs_per_event_amounts(charge_model=charge.charge_model, properties=part.properties):
                    # Same ids as the totals (customer locked): a count mismatch would make pricing refuse.
                    if part.late_event_ids != tuple(ids):
                        amounts = _late_values_of(part.late_event_ids)
                    else:
                        amounts = values.get((subscription.pk, charge.billable_metric_id), ())
                lines.extend(price_charge_line(
                    part, units=Decimal(mine.units), events_count=int(mine.events_count), per_event_amounts=amounts,
                    events_amount_cents=mine.prices,
                ))
    return lines


def _late_values_of(event_ids: tuple[int, ...]) -> tuple:
    """The values of some of a metric's late rows (one filter's), in time order."""
    from apps.usage.selectors import late_usage_values

    found = late_usage_values(event_ids=list(event_ids))
    return next(iter(found.values()), ())


# Columns planning never reads: not loaded (no parsing of 5 datetimes and a UUID per row). Touching one later
# costs a query, not a wrong answer.
_UNPLANNED_COLUMNS = ("lago_id", "created_at", "updated_at", "name", "ending_at", "canceled_at", "usage_billed_until")


def _lago_billed() -> list[int]:
    """Services still billed by Lago (apps.migration, phase `lago`): the close leaves them alone."""
    from apps.migration.hooks import close_excluded_service_ids

    return close_excluded_service_ids()


def _load_subscriptions(customer_ids: list[int], *, as_of: datetime) -> list[Subscription]:
    """Load the close's subscriptions for many customers: one instance per plan (with its charges and metrics),
    per service and per customer, and each row's successor (`next_subscription`, or None) for upgrades."""
    wanted = Q(status=Subscription.Status.ACTIVE) | Q(
        status=Subscription.Status.TERMINATED, terminated_at__gte=as_of - TERMINATED_LOOKBACK
    )
    subscriptions = list(
        Subscription.objects.filter(customer_id__any=customer_ids).filter(wanted).exclude(service_id__in=_lago_billed())
        .defer(*_UNPLANNED_COLUMNS).order_by("pk")
    )
    if not subscriptions:
        return []
    successors = {
        successor.previous_subscription_id: successor
        for successor in Subscription.objects.filter(
            previous_subscription_id__any=[subscription.pk for subscription in subscriptions]
        ).defer(*_UNPLANNED_COLUMNS)
    }
    plan_ids = {subscription.plan_id for subscription in subscriptions}
    plan_ids.update(successor.plan_id for successor in successors.values())
    plans = Plan.objects.select_related("minimum_commitment").in_bulk(plan_ids)
    prefetch_related_objects(list(plans.values()), "charges__billable_metric", "charges__charge_filters")
    services = Service.objects.in_bulk({subscription.service_id for subscription in subscriptions})
    # Planning reads only the time zone; a batch bills with its own locked rows (`plan_locked`). A field read
    # beyond these would cost a query per customer, which the close's query-count test would show.
    customers = {
        customer.pk: customer
        for customer in Customer.objects.filter(pk__any={subscription.customer_id for subscription in subscriptions})
        .only("id", "timezone").order_by()
    }
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


def split_credits(lines: list[Line]) -> tuple[list[Line], list[Line]]:
    """Split planned lines into (invoice lines, in-advance credits): the unused part of an in-advance base fee
    is credited by a credit note on the invoice that billed it, never as a negative line of a new invoice
    (which nothing would refund, Odoo refuses, and that could leave an invoice total below zero)."""
    kept = [line for line in lines if line.fee_type != Fee.FeeType.CREDIT]
    return kept, [line for line in lines if line.fee_type == Fee.FeeType.CREDIT]


def plan_locked(
    customers: list[Customer], *, as_of: datetime, fetch: UsageFetcher, loaded: Loaded | None = None,
    fenced: dict[int, datetime] | None = None, strict: bool = False, rescan_from: dict[int, datetime] | None = None,
):
    """Plan and price locked customers from set-based reads (one customer or a batch); return (plans, left).

    plans: customer id -> (lines, tax rates per billing day). A customer whose plan or taxes fail
    is left out (nothing is written for it yet) and goes to the one-by-one path, which records it.
    `loaded`: the prepass's rows, reused for customers whose subscriptions are unchanged (others reloaded).
    `fenced`: the cut-offs the run committed and fenced; a customer with a window beyond them is left to the
    one-by-one path, which cuts it off first (`close_customer`). None: the caller vouches for the windows.
    `strict` (the one-by-one path): nothing is left; a failure is raised, a window not fenced raises
    `WindowsNotFenced` before any usage is read.
    `rescan_from`: subscription id -> an instant whose period planning must look at again although a later
    period was billed since (a draft's refresh re-plans the periods of the fees it deleted).
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
    for subscription in subscriptions:
        moment = (rescan_from or {}).get(subscription.pk)
        if moment is not None and subscription.pk in starts:
            day = local_date(moment, subscription.customer.applicable_timezone)
            starts[subscription.pk] = min(starts[subscription.pk], day)
    billed_by = _billed_by_subscription(subscriptions, starts)
    billed = {key: details for keys in billed_by.values() for key, details in keys.items()}
    late = late_usage_unbilled(subscription_ids=[subscription.pk for subscription in subscriptions])
    schedule = tax_schedule()  # once per batch: the rates in force on each billing day
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
            if strict:
                raise
            logger.info("close batch: customer %s planned one by one", customer.pk, exc_info=True)
            left.append(customer.pk)
            continue
        needed = unfenced_cutoffs(lines, fenced) if fenced is not None else {}
        if needed:
            if strict:
                raise WindowsNotFenced(needed)
            left.append(customer.pk)  # re-planned beyond the run's cut-offs: cut off first, one by one
            continue
        unpriced[customer.pk] = lines
    # Per-event values only for the charges priced per event, one read per window for the whole batch.
    values = per_event_values([line for lines in unpriced.values() for line in lines])
    late_values = late_per_event_values(subscriptions, late) if late else {}
    progressive = progressive_billed_for([line for lines in unpriced.values() for line in lines])
    for customer in customers:
        if customer.pk not in unpriced:
            continue
        subs = by_customer.get(customer.pk, [])
        try:
            lines = progressive_deduct(price_lines(unpriced[customer.pk], fetch=fetch, values=values), progressive)
            own = {subscription.pk for subscription in subs}
            mine = {key: total for key, total in late.items() if key[0] in own} if late else {}
            lines.extend(
                _late_usage_lines(
                    customer, subs, as_of=as_of, billed=billed, planned=lines, late=mine, values=late_values
                )
            )
            lines = commitment_true_ups(lines)
            rates = {line.billing_on: None for line in lines}
            rates = {day: customer_tax_rates(customer, on=day, schedule=schedule) for day in rates}
        except Exception:
            if strict:
                raise
            logger.info("close batch: customer %s planned one by one", customer.pk, exc_info=True)
            left.append(customer.pk)
            continue
        if lines:
            plans[customer.pk] = (lines, rates)
    return plans, sorted(left)  # closed one by one in customer order, as the numbers were before


def customers_to_close(*, as_of: datetime) -> list[int]:
    """Return ids of customers with subscriptions the close must look at."""
    return list(
        Subscription.objects.filter(
            Q(status=Subscription.Status.ACTIVE)
            | Q(status=Subscription.Status.TERMINATED, terminated_at__gte=as_of - TERMINATED_LOOKBACK)
        )
        .filter(subscription_at__lte=as_of)
        .exclude(service_id__in=_lago_billed())
        .values_list("customer_id", flat=True)
        .distinct()
        .order_by("customer_id")
    )


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
        line
        for charge in subscription.plan.charges.all()
        for line in charge_lines(
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
        )
    ]
    return period, p_from, p_to, price_lines(lines, fetch=fetch)

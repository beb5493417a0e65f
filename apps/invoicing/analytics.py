"""Lago's revenue analytics (GET /analytics/*), read from the hub's invoices and fees, per calling service.

Each report is one SQL statement, ported from Lago's own (lago-api app/models/analytics/*.rb), over the months
from the service's creation (Lago: the organization's) to the current one, or the last `months` of them. Two
scopes, as the rest of the API draws them: reports on invoices (gross revenue, collection, overdue balance) read
the invoices GET /invoices lists to the service (`selectors.invoice_list`), so their figures add up to what the
service can list (a customer shared by two services gets one invoice, counted in full by each); reports on fees
(MRR, invoiced usage, usage) read only the service's own lines, as GET /fees does. Money is integer minor units
of each row's currency; a figure Lago spreads over months (MRR) is rounded half-up once, per month and currency.
Lago's months are timestamps at midnight UTC (`2023-11-01T00:00:00.000Z`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from apps.catalog.models import BillableMetric, Charge, Plan
from apps.customers.models import AccountLink, Customer, Service
from apps.subscriptions.models import Subscription

from .models import CreditNote, Fee, Invoice
from .selectors import invoice_list

MAX_MONTHS_BACK = 12 * 1000  # `months` past any service's life reads as "since the service began"


@dataclass(frozen=True)
class MonthRange:
    first: date  # first day of the first month reported
    last: date  # first day of the current month (UTC)


def month_range(*, service: Service, months: int | None, today: date | None = None) -> MonthRange:
    """The months Lago reports: from the service's creation month, or the last `months` (1 or less: the current
    month only), to the current month, UTC."""
    today = today or timezone.now().astimezone(UTC).date()
    last = today.replace(day=1)
    first = service.created_at.astimezone(UTC).date().replace(day=1)
    if months is not None:
        back = min(max(months, 1) - 1, MAX_MONTHS_BACK)
        index = last.year * 12 + last.month - 1 - back
        first = max(first, date(max(index // 12, 1), index % 12 + 1, 1))
    return MonthRange(first=min(first, last), last=last)


def lago_month(value: date) -> str:
    return f"{value:%Y-%m-%d}T00:00:00.000Z"


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _visible_invoices(service: Service, external_customer_id: str | None) -> tuple[str, list]:
    """The ids of the invoices GET /invoices lists to the service, as SQL and its parameters."""
    queryset = invoice_list(service=service, external_customer_id=external_customer_id).order_by().values("id")
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


MONTHS_SQL = "SELECT generate_series(%s::date, %s::date, interval '1 month')::date AS month"

T = {
    "invoice": Invoice._meta.db_table,
    "fee": Fee._meta.db_table,
    "credit_note": CreditNote._meta.db_table,
    "charge": Charge._meta.db_table,
    "metric": BillableMetric._meta.db_table,
    "plan": Plan._meta.db_table,
    "subscription": Subscription._meta.db_table,
    "customer": Customer._meta.db_table,
    "link": AccountLink._meta.db_table,
}


def gross_revenues(*, service: Service, currency: str | None, external_customer_id: str | None,
                   months: int | None) -> list[dict]:
    """Per month and currency: finalized invoices' totals less what their credit notes refunded, and how many.

    Lago: app/models/analytics/gross_revenue.rb (the invoice's issuing month; months without invoices are left
    out). The hub has no fee billed outside an invoice, Lago's other source.
    """
    span = month_range(service=service, months=months)
    visible, visible_params = _visible_invoices(service, external_customer_id)
    currency_sql = "AND i.currency = %s" if currency else ""
    sql = f"""
        WITH months AS ({MONTHS_SQL}),
        issued AS (
            SELECT date_trunc('month', i.issuing_date)::date AS month, i.currency,
                   i.total_amount_cents - COALESCE(
                       (SELECT SUM(cn.refund_amount_cents) FROM {T['credit_note']} cn WHERE cn.invoice_id = i.id), 0
                   ) AS amount_cents
            FROM {T['invoice']} i
            WHERE i.status = %s AND i.id IN ({visible}) {currency_sql}
        )
        SELECT m.month, issued.currency, COUNT(*) AS invoices_count, SUM(issued.amount_cents) AS amount_cents
        FROM months m JOIN issued ON issued.month = m.month
        GROUP BY m.month, issued.currency
        ORDER BY m.month, issued.currency
    """
    params = [span.first, span.last, Invoice.Status.FINALIZED, *visible_params, *([currency] if currency else [])]
    return [{"month": lago_month(month), "amount_cents": int(amount), "currency": code,
             "invoices_count": count} for month, code, count, amount in _rows(sql, params)]


def invoice_collections(*, service: Service, currency: str | None, months: int | None) -> list[dict]:
    """Per month, payment status and currency: how many finalized invoices were issued and their total.

    Lago: app/models/analytics/invoice_collection.rb. Every month of the range is listed: one without invoices as
    a row with no payment status nor currency and zero counts, unless a currency is asked for.
    """
    span = month_range(service=service, months=months)
    visible, visible_params = _visible_invoices(service, None)
    currency_sql = "WHERE per_status.currency = %s" if currency else ""
    sql = f"""
        WITH months AS ({MONTHS_SQL}),
        per_status AS (
            SELECT date_trunc('month', i.issuing_date)::date AS month, i.currency, i.payment_status,
                   COUNT(*) AS invoices_count, SUM(i.total_amount_cents) AS amount_cents
            FROM {T['invoice']} i
            WHERE i.status = %s AND i.id IN ({visible})
            GROUP BY 1, 2, 3
        )
        SELECT m.month, per_status.payment_status, per_status.currency,
               COALESCE(per_status.invoices_count, 0), COALESCE(per_status.amount_cents, 0)
        FROM months m LEFT JOIN per_status ON per_status.month = m.month
        {currency_sql}
        ORDER BY m.month, per_status.payment_status, per_status.currency
    """
    params = [span.first, span.last, Invoice.Status.FINALIZED, *visible_params, *([currency] if currency else [])]
    return [{"month": lago_month(month), "payment_status": status, "invoices_count": count,
             "amount_cents": int(amount), "currency": code}
            for month, status, code, count, amount in _rows(sql, params)]


def overdue_balances(*, service: Service, currency: str | None, external_customer_id: str | None,
                     months: int | None) -> list[dict]:
    """Per month of the due date and currency: what overdue invoices still ask for, and which invoices.

    Lago: app/models/analytics/overdue_balance.rb: total less paid less what credit notes offset
    (`Invoice.offset_amount_cents`, the hub's running sum of the same).
    """
    span = month_range(service=service, months=months)
    visible, visible_params = _visible_invoices(service, external_customer_id)
    currency_sql = "AND i.currency = %s" if currency else ""
    sql = f"""
        WITH months AS ({MONTHS_SQL})
        SELECT m.month, i.currency,
               SUM(i.total_amount_cents - i.total_paid_amount_cents - i.offset_amount_cents) AS amount_cents,
               array_agg(i.lago_id::text ORDER BY i.payment_due_date, i.id) AS lago_invoice_ids
        FROM months m
        JOIN {T['invoice']} i ON date_trunc('month', i.payment_due_date)::date = m.month
        WHERE i.payment_overdue AND i.id IN ({visible}) {currency_sql}
        GROUP BY m.month, i.currency
        ORDER BY m.month, i.currency
    """
    params = [span.first, span.last, *visible_params, *([currency] if currency else [])]
    return [{"month": lago_month(month), "amount_cents": int(amount), "currency": code, "lago_invoice_ids": ids}
            for month, code, amount, ids in _rows(sql, params)]


def mrrs(*, service: Service, currency: str | None, months: int | None) -> list[dict]:
    """Per month and currency: the monthly recurring revenue of the service's subscription fees (after coupons,
    with tax) on finalized invoices.

    Lago: app/models/analytics/mrr.rb. Monthly plans count in the issuing month; weekly ones as the month's average
    fee × 4.33; quarterly, semiannual and yearly fees are spread over the months the period spans (`billed_months`:
    its length in days / 30.44), forward from the issuing month when paid in advance (the first month pro rata to
    the days left in it, the last month taking what remains), backward when paid in arrears (the earliest month
    taking what remains). Lago's periods end at 23:59:59 and its day count drops the seconds, so a period of D
    whole minutes counts as D - 1 minute; the hub's periods end exclusively and are counted the same way. Every
    month of the range is listed, one without fees with no currency and no amount, unless a currency is asked
    for. The sums are rounded half-up to the cent per month and currency (Lago sends the unrounded decimal).
    Semiannual fees in advance are spread like quarterly and yearly ones: Lago's query gives each of the four
    months before the last one a remainder as well (its `CEIL(billed_months) - 2..4` cases), so its months add up to
    more than the fee; the hub has no semiannual plans yet either.
    """
    span = month_range(service=service, months=months)
    currency_sql = "WHERE mrr.currency = %s" if currency else ""
    sql = f"""
        WITH months AS ({MONTHS_SQL}),
        details AS (
            SELECT (f.amount_cents - f.coupons_amount_cents + f.taxes_amount_cents)::numeric AS amount,
                   f.currency, i.issuing_date, p.interval AS plan_interval, p.pay_in_advance,
                   ((EXTRACT(EPOCH FROM f.to_datetime - f.from_datetime) - 60) / 86400 / 30.44)::numeric
                       AS billed_months,
                   ((date_trunc('month', i.issuing_date) + interval '1 month')::date - i.issuing_date)::numeric
                   / ((date_trunc('month', i.issuing_date) + interval '1 month')::date
                      - date_trunc('month', i.issuing_date)::date) AS first_share
            FROM {T['fee']} f
            JOIN {T['invoice']} i ON i.id = f.invoice_id
            JOIN {T['subscription']} s ON s.id = f.subscription_id
            JOIN {T['plan']} p ON p.id = s.plan_id
            WHERE f.service_id = %s AND f.fee_type = %s AND i.status = %s
        ),
        spread AS (
            SELECT CASE WHEN d.pay_in_advance THEN date_trunc('month', d.issuing_date) + make_interval(months => k)
                        ELSE date_trunc('month', d.issuing_date) - make_interval(months => k) END::date AS month,
                   CASE
                       WHEN d.pay_in_advance AND k = 0 THEN d.amount / d.billed_months * d.first_share
                       WHEN d.pay_in_advance AND k = CEIL(d.billed_months) - 1
                           THEN d.amount - d.amount / d.billed_months * (FLOOR(d.billed_months) - 1 + d.first_share)
                       WHEN d.pay_in_advance THEN d.amount / d.billed_months
                       WHEN k < CEIL(d.billed_months) - 1 THEN d.amount / d.billed_months
                       ELSE d.amount - d.amount / d.billed_months * (CEIL(d.billed_months) - 1)
                   END AS amount,
                   d.currency
            FROM details d, LATERAL generate_series(0, CEIL(d.billed_months)::int - 1) AS k
            WHERE d.plan_interval IN ('quarterly', 'semiannual', 'yearly') AND d.billed_months > 0
        ),
        mrr AS (
            SELECT month, amount, currency FROM spread
            UNION ALL
            SELECT date_trunc('month', issuing_date)::date, amount, currency FROM details
            WHERE plan_interval = 'monthly'
            UNION ALL
            SELECT date_trunc('month', issuing_date)::date, SUM(amount) / COUNT(*) * 4.33, currency FROM details
            WHERE plan_interval = 'weekly' GROUP BY 1, currency
        )
        SELECT m.month, mrr.currency, ROUND(SUM(mrr.amount)) AS amount_cents
        FROM months m LEFT JOIN mrr ON mrr.month = m.month
        {currency_sql}
        GROUP BY m.month, mrr.currency
        ORDER BY m.month, mrr.currency
    """
    params = [span.first, span.last, service.pk, Fee.FeeType.SUBSCRIPTION, Invoice.Status.FINALIZED,
              *([currency] if currency else [])]
    return [{"month": lago_month(month), "amount_cents": None if amount is None else int(amount), "currency": code}
            for month, code, amount in _rows(sql, params)]


def invoiced_usages(*, service: Service, currency: str | None, months: int | None) -> list[dict]:
    """Per month the fee was written, metric and currency: the service's usage fees, after coupons, before tax.

    Lago: app/models/analytics/invoiced_usage.rb, which reads the usage fees of every invoice whatever its status;
    newest month first, largest amount first.
    """
    span = month_range(service=service, months=months)
    currency_sql = "AND f.currency = %s" if currency else ""
    sql = f"""
        WITH months AS ({MONTHS_SQL})
        SELECT m.month, bm.code, f.currency, SUM(f.amount_cents - f.coupons_amount_cents) AS amount_cents
        FROM months m
        JOIN {T['fee']} f ON date_trunc('month', f.created_at AT TIME ZONE 'UTC')::date = m.month
        JOIN {T['charge']} c ON c.id = f.charge_id
        JOIN {T['metric']} bm ON bm.id = c.billable_metric_id
        WHERE f.service_id = %s AND f.fee_type = %s {currency_sql}
        GROUP BY m.month, bm.code, f.currency
        ORDER BY m.month DESC, amount_cents DESC, bm.code, f.currency
    """
    params = [span.first, span.last, service.pk, Fee.FeeType.CHARGE, *([currency] if currency else [])]
    return [{"month": lago_month(month), "code": code, "currency": cur, "amount_cents": int(amount)}
            for month, code, cur, amount in _rows(sql, params)]


GRANULARITIES = {"daily": ("day", "1 day"), "weekly": ("week", "1 week"), "monthly": ("month", "1 month")}


def _units_text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def usages(*, service: Service, time_granularity: str = "daily", currency: str | None = None,
           from_date: date | None = None, to_date: date | None = None, customer_type: str | None = None,
           external_customer_id: str | None = None, customer_country: str | None = None,
           external_subscription_id: str | None = None, is_billable_metric_recurring: bool | None = None,
           plan_code: str | None = None, billable_metric_code: str | None = None) -> list[dict]:
    """Per period (day, ISO week or month, UTC), metric and currency: the units and amount the service's usage
    fees on finalized invoices billed, dated by the start of the billing period they price.

    Lago answers this from its separate data service (lago-data, not open source), from the usage it has billed;
    the hub reads its fees. A period runs from `start_of_period_dt` to `end_of_period_dt`, both included.
    """
    trunc, step = GRANULARITIES[time_granularity]
    where, params = ["f.service_id = %s", "f.fee_type = %s", "i.status = %s"], [
        service.pk, Fee.FeeType.CHARGE, Invoice.Status.FINALIZED]
    for clause, value in (
        ("f.currency = %s", currency),
        ("cu.customer_type = %s", customer_type),
        ("cu.country = %s", customer_country),
        ("s.external_id = %s", external_subscription_id),
        ("p.code = %s", plan_code),
        ("bm.code = %s", billable_metric_code),
        ("bm.recurring = %s", is_billable_metric_recurring),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    if external_customer_id:
        where.append(f"EXISTS (SELECT 1 FROM {T['link']} l WHERE l.customer_id = i.customer_id AND l.service_id = %s "
                     "AND l.external_id = %s AND l.deleted_at IS NULL)")
        params += [service.pk, external_customer_id]
    having, having_params = [], []
    if from_date is not None:
        having.append("start_of_period_dt >= %s")
        having_params.append(from_date)
    if to_date is not None:
        having.append("start_of_period_dt <= %s")
        having_params.append(to_date)
    sql = f"""
        SELECT * FROM (
            SELECT date_trunc('{trunc}', f.from_datetime AT TIME ZONE 'UTC')::date AS start_of_period_dt,
                   (date_trunc('{trunc}', f.from_datetime AT TIME ZONE 'UTC') + interval '{step}'
                    - interval '1 day')::date AS end_of_period_dt,
                   f.currency, bm.code, bm.deleted_at IS NOT NULL AS deleted,
                   SUM(f.units) AS units, SUM(f.amount_cents) AS amount_cents
            FROM {T['fee']} f
            JOIN {T['invoice']} i ON i.id = f.invoice_id
            JOIN {T['customer']} cu ON cu.id = i.customer_id
            JOIN {T['charge']} c ON c.id = f.charge_id
            JOIN {T['metric']} bm ON bm.id = c.billable_metric_id
            LEFT JOIN {T['subscription']} s ON s.id = f.subscription_id
            LEFT JOIN {T['plan']} p ON p.id = s.plan_id
            WHERE {' AND '.join(where)}
            GROUP BY 1, 2, 3, 4, 5
        ) usage
        {'WHERE ' + ' AND '.join(having) if having else ''}
        ORDER BY start_of_period_dt, code, currency
    """
    organization_id = str(service.lago_id)
    return [{"organization_id": organization_id, "start_of_period_dt": start.isoformat(),
             "end_of_period_dt": end.isoformat(), "amount_currency": cur, "amount_cents": int(amount),
             "billable_metric_code": code, "units": _units_text(units), "is_billable_metric_deleted": deleted}
            for start, end, cur, code, deleted, units, amount in _rows(sql, params + having_params)]

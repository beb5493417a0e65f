"""What the staff dashboard shows (/admin/): money billed and collected, MRR, invoices by status, the queues that
need someone, usage coming in. Reads only; each figure is one grouped query, so the page stays cheap at volume."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from apps.catalog.models import Plan
from apps.core.money import money_display
from apps.integrity.models import CheckRun
from apps.invoicing.models import CloseRunCustomer, Fee, Invoice
from apps.ledger.models import LedgerPosting
from apps.payments.models import Payment, PaymentAttempt
from apps.subscriptions.models import Subscription
from apps.usage.models import UsageEvent
from apps.usage.selectors import usage_ingested_by_hour
from apps.webhooks.models import WebhookDelivery

# A plan's base fee per month, for MRR: how many of its intervals a month holds (weekly: 52 a year).
MONTHLY_FACTOR = {Plan.Interval.WEEKLY: (52, 12), Plan.Interval.MONTHLY: (1, 1), Plan.Interval.QUARTERLY: (1, 3),
                  Plan.Interval.YEARLY: (1, 12)}


@dataclass(frozen=True)
class Period:
    label: str
    start: date
    end: date  # exclusive


@dataclass
class Dashboard:
    periods: list[Period]
    billed: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (service, currency) -> per period
    collected: dict[str, list[int]] = field(default_factory=dict)  # currency -> per period
    # (service, currency) -> per period: each payment split over its invoice's services (see _collected_per_service)
    collected_by_service: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    mrr: dict[str, int] = field(default_factory=dict)  # currency -> minor units a month
    invoices_by_status: dict[str, int] = field(default_factory=dict)
    overdue: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> (count, minor units due)
    queues: dict[str, int] = field(default_factory=dict)
    ingestion_by_hour: list[tuple[datetime, int]] = field(default_factory=list)
    revenue_by_month: dict[str, dict[date, int]] = field(default_factory=dict)  # "service currency" -> month -> cents


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _previous_month(day: date) -> date:
    return _month_start(_month_start(day) - timedelta(days=1))


# A payment pays an invoice, and an invoice may bill several services: each service gets the payment times its
# fees' share of the invoice (fees with their tax), floored to the cent, and the cents the flooring left go one
# each to the largest remainders (ties: lowest service id), so the shares add up to the payment exactly. An
# invoice without fees (or whose fees sum to nothing) puts the whole payment on one row ("other" when no service).
COLLECTED_SQL = """
WITH paid AS (
    SELECT p.id, p.invoice_id, p.amount_cents, p.currency,
           CASE WHEN p.paid_at >= %(start_0)s THEN 0 ELSE 1 END AS period
      FROM payments_payment p
     WHERE p.paid_at >= %(start_1)s AND p.paid_at < %(end_0)s
), shares AS (
    SELECT f.invoice_id, f.service_id, sum(f.amount_cents + f.taxes_amount_cents) AS share
      FROM invoicing_fee f
     WHERE f.invoice_id IN (SELECT invoice_id FROM paid)
     GROUP BY 1, 2
), split AS (
    SELECT paid.id, paid.period, paid.currency, paid.amount_cents, s.service_id, coalesce(s.share, 0) AS share,
           sum(coalesce(s.share, 0)) OVER (PARTITION BY paid.id) AS total,
           row_number() OVER (PARTITION BY paid.id ORDER BY s.service_id) AS position
      FROM paid LEFT JOIN shares s ON s.invoice_id = paid.invoice_id
), floored AS (
    SELECT *,
           CASE WHEN total > 0 THEN amount_cents * share / total WHEN position = 1 THEN amount_cents ELSE 0 END AS base,
           CASE WHEN total > 0 THEN amount_cents * share %% total ELSE 0 END AS rest
      FROM split
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY id ORDER BY rest DESC, service_id) AS rank,
           amount_cents - sum(base) OVER (PARTITION BY id) AS left_over
      FROM floored
)
SELECT period, svc.code, currency, sum(base + CASE WHEN rank <= left_over THEN 1 ELSE 0 END)::bigint
  FROM ranked LEFT JOIN customers_service svc ON svc.id = ranked.service_id
 GROUP BY 1, 2, 3
"""


def _collected_per_service(periods: list[Period]) -> list[tuple[int, str | None, str, int]]:
    """Return (period index, service code or None, currency, minor units collected) for the two periods."""
    from django.db import connection

    tz = timezone.get_current_timezone()
    bounds = {f"{edge}_{i}": datetime.combine(getattr(period, edge), datetime.min.time(), tz)
              for i, period in enumerate(periods) for edge in ("start", "end")}
    with connection.cursor() as cursor:
        cursor.execute(COLLECTED_SQL, bounds)
        return [(period, service, currency, cents) for period, service, currency, cents in cursor.fetchall()]


def dashboard_get(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    today = timezone.localdate(now)
    this_month = _month_start(today)
    last_month = _previous_month(today)
    next_month = _month_start(this_month + timedelta(days=32))
    board = Dashboard(periods=[Period("This month", this_month, next_month), Period("Last month", last_month, this_month)])

    # Billed per service and month over six months, in one grouped read; the two periods above are its last two
    # months (one query for the chart and the table instead of three over the same fees).
    finalized = Q(invoice__status=Invoice.Status.FINALIZED)
    six_months = _month_start(this_month - timedelta(days=150))
    starts = {period.start: index for index, period in enumerate(board.periods)}
    for row in (Fee.objects.filter(finalized, invoice__issuing_date__gte=six_months,
                                   invoice__issuing_date__lt=next_month)
                .annotate(month=TruncMonth("invoice__issuing_date"))
                .values("service__code", "invoice__currency", "month").annotate(total=Sum("amount_cents"))
                .order_by()):
        service, currency, total = row["service__code"] or "other", row["invoice__currency"], row["total"] or 0
        month = row["month"].date() if isinstance(row["month"], datetime) else row["month"]
        board.revenue_by_month.setdefault(f"{service} {currency}", {})[month] = total
        if month in starts:
            board.billed.setdefault((service, currency), [0] * len(board.periods))[starts[month]] = total
    for index, service, currency, cents in _collected_per_service(board.periods):
        board.collected_by_service.setdefault((service or "other", currency), [0] * len(board.periods))[index] = cents
        board.collected.setdefault(currency, [0] * len(board.periods))[index] += cents

    for row in (Subscription.objects.filter(status=Subscription.Status.ACTIVE)
                .values("plan__interval", "plan__amount_currency").annotate(total=Sum("plan__amount_cents"))
                .order_by()):
        times, per = MONTHLY_FACTOR[row["plan__interval"]]
        board.mrr[row["plan__amount_currency"]] = board.mrr.get(row["plan__amount_currency"], 0) + (
            (row["total"] or 0) * times // per)

    # Invoices by status, overdue per currency and failed payments: one pass over the invoices, not three.
    finalized_invoice = Q(status=Invoice.Status.FINALIZED)
    overdue = finalized_invoice & Q(payment_due_date__lt=today) & ~Q(payment_status=Invoice.PaymentStatus.SUCCEEDED)
    payments_failing = 0
    for row in (Invoice.objects.values("status", "currency")
                .annotate(count=Count("id"),
                          failing=Count("id", filter=finalized_invoice & Q(
                              payment_status=Invoice.PaymentStatus.FAILED)),
                          overdue=Count("id", filter=overdue),
                          due=Sum(F("total_amount_cents") - F("total_paid_amount_cents"), filter=overdue))
                .order_by()):
        board.invoices_by_status[row["status"]] = board.invoices_by_status.get(row["status"], 0) + row["count"]
        payments_failing += row["failing"]
        if row["overdue"]:
            count, due = board.overdue.get(row["currency"], (0, 0))
            board.overdue[row["currency"]] = (count + row["overdue"], due + (row["due"] or 0))

    latest_check = CheckRun.objects.order_by("-started_at", "-id").values_list("violations_count", flat=True).first()
    board.queues = {
        "payments_failing": payments_failing,
        "attempts_failed": PaymentAttempt.objects.filter(status=PaymentAttempt.Status.FAILED).count(),
        "postings_failed": LedgerPosting.objects.filter(status=LedgerPosting.Status.FAILED).count(),
        "postings_mismatched": LedgerPosting.objects.filter(status=LedgerPosting.Status.MISMATCH).count(),
        "webhooks_failing": WebhookDelivery.objects.filter(
            status__in=(WebhookDelivery.Status.FAILED, WebhookDelivery.Status.RETRYING)).count(),
        "close_errors": CloseRunCustomer.objects.filter(outcome=CloseRunCustomer.Outcome.FAILED).count(),
        "late_usage": UsageEvent.objects.filter(is_late=True, late_billed_at__isnull=True).count(),
        "billing_check": latest_check or 0,
    }

    # Hours of the rollup (usage_rollup_advance), not a count of the raw rows: millions a day.
    board.ingestion_by_hour = [(timezone.localtime(hour), count)
                               for hour, count in usage_ingested_by_hour(since=now - timedelta(hours=23))]
    return board


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # invoice, credit note, payment, posting, webhook
    text: str
    admin: str  # admin URL name of the row's page
    pk: int
    amount_cents: int | None = None  # minor units of `currency`
    currency: str = ""


@dataclass
class Customer360:
    customer: object
    links: list
    subscriptions: list
    owed: dict[str, int]  # currency -> minor units due on finalized invoices
    credit: dict[str, int]  # currency -> minor units of credit available (credit notes and customer credit)
    payment_method: str
    timeline: list[TimelineEntry]
    wallets: list = None  # active wallets (prepaid credits), each with its service


def customer_360_get(*, customer_id: int, limit: int = 60) -> Customer360:
    """One customer's story across services: accounts, subscriptions, money owed and available, and a timeline of
    invoices, credit notes, payments, postings and webhooks, newest first."""
    from apps.customers.models import AccountLink, Customer
    from apps.invoicing.models import CreditNote, CustomerCredit, Wallet
    from apps.payments.models import StripeCustomer
    from apps.webhooks.models import WebhookEvent

    customer = Customer.objects.get(pk=customer_id)
    links = list(AccountLink.objects.filter(customer=customer).select_related("service").order_by("service__code"))
    subscriptions = list(Subscription.objects.filter(customer=customer).select_related("plan", "service")
                         .order_by("-created_at")[:50])
    owed: dict[str, int] = {}
    for row in (Invoice.objects.filter(customer=customer, status=Invoice.Status.FINALIZED)
                .exclude(payment_status=Invoice.PaymentStatus.SUCCEEDED).values("currency")
                .annotate(due=Sum(F("total_amount_cents") - F("total_paid_amount_cents")))):
        owed[row["currency"]] = row["due"] or 0
    credit: dict[str, int] = {}
    for model in (CreditNote, CustomerCredit):
        for row in model.objects.filter(customer=customer, balance_amount_cents__gt=0).values("currency").annotate(
                total=Sum("balance_amount_cents")):
            credit[row["currency"]] = credit.get(row["currency"], 0) + (row["total"] or 0)
    stripe = StripeCustomer.objects.filter(customer=customer).first()
    payment_method = (stripe.default_payment_method_id if stripe and stripe.default_payment_method_id
                      else "none on file")

    timeline: list[TimelineEntry] = []
    invoices = list(Invoice.objects.filter(customer=customer).order_by("-created_at")[:limit])
    for invoice in invoices:
        timeline.append(TimelineEntry(invoice.created_at, "invoice", f"{invoice.number or 'draft'} · {invoice.status}"
                                      f" · payment {invoice.payment_status}", "admin:invoicing_invoice_change",
                                      invoice.pk, invoice.total_amount_cents, invoice.currency))
    for note in CreditNote.objects.filter(customer=customer).order_by("-created_at")[:limit]:
        voided = (f" · credit voided {money_display(note.voided_amount_cents, note.currency)}"
                  if note.voided_amount_cents else "")
        timeline.append(TimelineEntry(note.created_at, "credit note", f"{note.number} · {note.reason}{voided}",
                                      "admin:invoicing_creditnote_change", note.pk, note.total_amount_cents,
                                      note.currency))
    for payment in Payment.objects.filter(invoice__customer=customer).select_related("invoice").order_by("-paid_at")[:limit]:
        timeline.append(TimelineEntry(payment.paid_at, "payment", f"paid {payment.invoice.number}",
                                      "admin:payments_payment_change", payment.pk, payment.amount_cents,
                                      payment.currency))
    for posting in LedgerPosting.objects.filter(invoice__customer=customer).order_by("-created_at")[:limit]:
        timeline.append(TimelineEntry(posting.created_at, "posting", f"{posting.ref} · {posting.status}"
                                      + (f" · {posting.last_error[:80]}" if posting.last_error else ""),
                                      "admin:ledger_ledgerposting_change", posting.pk))
    object_ids = [str(invoice.lago_id) for invoice in invoices] + [str(s.lago_id) for s in subscriptions]
    for event in WebhookEvent.objects.filter(object_id__in=object_ids).order_by("-created_at")[:limit]:
        timeline.append(TimelineEntry(event.created_at, "webhook", event.event_type,
                                      "admin:webhooks_webhookevent_change", event.pk))
    wallets = list(Wallet.objects.filter(customer=customer, status=Wallet.Status.ACTIVE).select_related("service")
                   .order_by("priority", "created_at"))
    timeline.sort(key=lambda entry: entry.at, reverse=True)
    return Customer360(customer, links, subscriptions, owed, credit, payment_method, timeline[:limit], wallets)


@dataclass
class UsageSoFar:
    """An active subscription's usage in its current period, priced by the close's engine: what its charges would
    bill if the period ended now (before coupons, credits and prepaid credits, which come off at finalization)."""

    subscription: object
    period_from: datetime
    period_to: datetime
    lines: list  # apps.invoicing.fees.Line: name, units, events_count, amount_cents
    amount_cents: int
    taxes_cents: int
    currency: str


def customer_usage_so_far(*, customer_id: int, at: datetime | None = None, limit: int = 10) -> list[UsageSoFar]:
    """The customer 360 page's current usage: one entry per active subscription (the `limit` newest), through the
    same code as the API's `current_usage` (`current_usage_lines`, taxes at the period end's rates)."""
    from django.db.models import Prefetch

    from apps.catalog.models import Charge
    from apps.invoicing.close import current_usage_lines
    from apps.invoicing.fees import customer_tax_rates, fee_taxes

    at = at or timezone.now()
    subscriptions = (Subscription.objects.filter(customer_id=customer_id, status=Subscription.Status.ACTIVE)
                     .select_related("plan", "customer", "service")
                     .prefetch_related(Prefetch("plan__charges", queryset=Charge.objects.select_related("billable_metric")),
                                       "plan__charges__charge_filters")
                     .order_by("-started_at", "-id")[:limit])
    found = []
    for subscription in subscriptions:
        period, p_from, p_to, lines = current_usage_lines(subscription, at=at)
        rates = customer_tax_rates(subscription.customer, on=period.end)
        found.append(UsageSoFar(
            subscription=subscription, period_from=p_from, period_to=p_to, lines=lines,
            amount_cents=sum(line.amount_cents for line in lines),
            taxes_cents=sum(fee_taxes(line.amount_cents, rates)[0] for line in lines),
            currency=subscription.plan.amount_currency,
        ))
    return found

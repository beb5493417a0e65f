"""What the staff dashboard shows (/admin/): money billed and collected, MRR, invoices by status, the queues that
need someone, usage coming in. Reads only; each figure is one grouped query, so the page stays cheap at volume."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour, TruncMonth
from django.utils import timezone

from apps.catalog.models import Plan
from apps.integrity.models import CheckRun
from apps.invoicing.models import CloseRunCustomer, Fee, Invoice
from apps.ledger.models import LedgerPosting
from apps.payments.models import Payment, PaymentAttempt
from apps.subscriptions.models import Subscription
from apps.usage.models import UsageEvent
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


def dashboard_get(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    today = timezone.localdate(now)
    this_month = _month_start(today)
    last_month = _previous_month(today)
    next_month = _month_start(this_month + timedelta(days=32))
    board = Dashboard(periods=[Period("This month", this_month, next_month), Period("Last month", last_month, this_month)])

    finalized = Q(invoice__status=Invoice.Status.FINALIZED)
    for index, period in enumerate(board.periods):
        for row in (Fee.objects.filter(finalized, invoice__issuing_date__gte=period.start,
                                       invoice__issuing_date__lt=period.end)
                    .values("service__code", "invoice__currency").annotate(total=Sum("amount_cents"))):
            key = (row["service__code"] or "other", row["invoice__currency"])
            board.billed.setdefault(key, [0] * len(board.periods))[index] = row["total"] or 0
        for row in (Payment.objects.filter(paid_at__date__gte=period.start, paid_at__date__lt=period.end)
                    .values("currency").annotate(total=Sum("amount_cents"))):
            board.collected.setdefault(row["currency"], [0] * len(board.periods))[index] = row["total"] or 0

    for row in (Subscription.objects.filter(status=Subscription.Status.ACTIVE)
                .values("plan__interval", "plan__amount_currency").annotate(total=Sum("plan__amount_cents"))):
        times, per = MONTHLY_FACTOR[row["plan__interval"]]
        board.mrr[row["plan__amount_currency"]] = board.mrr.get(row["plan__amount_currency"], 0) + (
            (row["total"] or 0) * times // per)

    board.invoices_by_status = dict(Invoice.objects.values_list("status").annotate(count=Count("id")).order_by())
    for row in (Invoice.objects.filter(status=Invoice.Status.FINALIZED, payment_due_date__lt=today)
                .exclude(payment_status=Invoice.PaymentStatus.SUCCEEDED)
                .values("currency").annotate(count=Count("id"), due=Sum(F("total_amount_cents")
                                                                       - F("total_paid_amount_cents")))):
        board.overdue[row["currency"]] = (row["count"], row["due"] or 0)

    latest_check = CheckRun.objects.order_by("-started_at", "-id").values_list("violations_count", flat=True).first()
    board.queues = {
        "payments_failing": Invoice.objects.filter(status=Invoice.Status.FINALIZED,
                                                   payment_status=Invoice.PaymentStatus.FAILED).count(),
        "attempts_failed": PaymentAttempt.objects.filter(status=PaymentAttempt.Status.FAILED).count(),
        "postings_failed": LedgerPosting.objects.filter(status=LedgerPosting.Status.FAILED).count(),
        "postings_mismatched": LedgerPosting.objects.filter(status=LedgerPosting.Status.MISMATCH).count(),
        "webhooks_failing": WebhookDelivery.objects.filter(
            status__in=(WebhookDelivery.Status.FAILED, WebhookDelivery.Status.RETRYING)).count(),
        "close_errors": CloseRunCustomer.objects.filter(outcome=CloseRunCustomer.Outcome.FAILED).count(),
        "late_usage": UsageEvent.objects.filter(is_late=True, late_billed_at__isnull=True).count(),
        "billing_check": latest_check or 0,
    }

    since = now - timedelta(hours=24)
    board.ingestion_by_hour = list(UsageEvent.objects.filter(created_at__gte=since)
                                   .annotate(hour=TruncHour("created_at")).values_list("hour")
                                   .annotate(count=Count("id")).order_by("hour"))

    six_months = _month_start(this_month - timedelta(days=150))
    for row in (Fee.objects.filter(finalized, invoice__issuing_date__gte=six_months)
                .annotate(month=TruncMonth("invoice__issuing_date"))
                .values("service__code", "invoice__currency", "month").annotate(total=Sum("amount_cents"))):
        key = f"{row['service__code'] or 'other'} {row['invoice__currency']}"
        month = row["month"].date() if isinstance(row["month"], datetime) else row["month"]
        board.revenue_by_month.setdefault(key, {})[month] = row["total"] or 0
    return board

"""The admin's front page (/admin/): the dashboard (django-unfold's DASHBOARD_CALLBACK, settings.UNFOLD)."""
from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from apps.core.admin_kit import chart_options
from apps.core.money import from_minor_units, money_display

from .selectors import dashboard_get

# Queue -> (title, admin list it opens). Counts only; each list shows the error first.
QUEUES = {
    "payments_failing": ("Invoices with failed payment", "admin:invoicing_invoice_changelist",
                         "?status__exact=finalized&payment_status__exact=failed"),
    "attempts_failed": ("Payment attempts failed", "admin:payments_paymentattempt_changelist", "?status__exact=failed"),
    "postings_failed": ("Ledger postings failed", "admin:ledger_ledgerposting_changelist", "?status__exact=failed"),
    "postings_mismatched": ("Ledger postings mismatched", "admin:ledger_ledgerposting_changelist",
                            "?status__exact=mismatch"),
    "webhooks_failing": ("Webhooks failing", "admin:webhooks_webhookdelivery_changelist", "?failing=yes"),
    "close_errors": ("Close errors", "admin:invoicing_closeruncustomer_changelist", "?outcome__exact=failed"),
    "late_usage": ("Late usage not yet billed", "admin:usage_usageevent_changelist", "?is_late__exact=1"),
    "billing_check": ("Billing check violations (latest run)", "admin:integrity_checkviolation_changelist", ""),
}
PALETTE = ("#0d9488", "#6366f1", "#f59e0b", "#ef4444", "#10b981", "#8b5cf6")


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    if not request.user.has_perm("invoicing.view_invoice"):
        return context  # the app list only: the figures are money staff of this role may not read
    board = dashboard_get()
    billed = [{"service": service, "currency": currency, "values": [money_display(v, currency) for v in values]}
              for (service, currency), values in sorted(board.billed.items())]
    collected = [{"service": service, "currency": currency, "values": [money_display(v, currency) for v in values]}
                 for (service, currency), values in sorted(board.collected_by_service.items())]
    collected_total = [{"currency": currency, "values": [money_display(v, currency) for v in values]}
                       for currency, values in sorted(board.collected.items())]
    queues = [{"key": key, "title": title, "count": board.queues.get(key, 0), "url": reverse(name) + query}
              for key, (title, name, query) in QUEUES.items()]
    months = sorted({month for series in board.revenue_by_month.values() for month in series})
    revenue_chart = {
        "labels": [month.strftime("%b %Y") for month in months],
        "datasets": [{"label": key, "backgroundColor": PALETTE[i % len(PALETTE)],
                      "data": [str(from_minor_units(series.get(month, 0), key.split()[-1])) for month in months]}
                     for i, (key, series) in enumerate(sorted(board.revenue_by_month.items()))],
    }
    ingestion_chart = {
        "labels": [hour.strftime("%H:00") for hour, _ in board.ingestion_by_hour],
        "datasets": [{"label": "usage events per hour", "borderColor": PALETTE[0],
                      "data": [count for _, count in board.ingestion_by_hour]}],
    }
    context.update({
        "dashboard": True,
        "periods": [period.label for period in board.periods],
        "billed": billed,
        "collected": collected,
        "collected_total": collected_total,
        "mrr": [money_display(cents, currency) for currency, cents in sorted(board.mrr.items())],
        "invoices_by_status": sorted(board.invoices_by_status.items()),
        "overdue": [{"currency": c, "count": n, "due": money_display(due, c)} for c, (n, due) in
                    sorted(board.overdue.items())],
        "queues": queues,
        "ingestion_24h": sum(count for _, count in board.ingestion_by_hour),
        "revenue_chart": json.dumps(revenue_chart),
        "revenue_chart_options": chart_options(x_title="month (finalized invoices' issuing date)",
                                               y_title="billed, currency units", stacked=True),
        "ingestion_chart": json.dumps(ingestion_chart),
        "ingestion_chart_options": chart_options(x_title="hour (local time)", y_title="usage events accepted"),
    })
    return context

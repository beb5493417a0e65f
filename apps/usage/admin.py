from __future__ import annotations

import json
from datetime import datetime, time

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html

from apps.core.admin_kit import BoundedCountPaginator, NexaModelAdmin, chart_options
from apps.customers.models import Service
from apps.subscriptions.models import Subscription

from .models import UsageArchive, UsageEvent
from .selectors import usage_daily_for_subscription, usage_summary


CHART_COLOURS = ("#0d9488", "#6366f1", "#f59e0b", "#ef4444", "#10b981", "#8b5cf6")


@admin.register(UsageEvent)
class UsageEventAdmin(NexaModelAdmin):
    """Raw usage rows (read-only: rows are written by ingestion only), a summary and a chart."""

    list_display = ("transaction_id", "subscription", "billable_metric", "timestamp", "value", "source", "is_late", "late_billed_at", "chart")
    list_filter = ("is_late", "source", "service")
    search_fields = ("=transaction_id",)
    raw_id_fields = ("service", "subscription", "billable_metric")
    # Both columns print their service's code: without it, two queries per row.
    list_select_related = ("subscription__service", "billable_metric__service")
    # count(*) over tens of millions of rows on every page is too slow: no total, and a bounded count.
    show_full_result_count = False
    paginator = BoundedCountPaginator
    # Sorting by any other column reads and sorts every row (7 s for `value` at 5M rows); time has an index.
    sortable_by = ("timestamp",)
    change_list_template = "admin/usage/usageevent_change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="chart")
    def chart(self, obj):
        return format_html('<a href="{}">usage over time</a>', reverse("admin:usage_chart", args=[obj.subscription_id]))

    def get_urls(self):
        own = [
            path("summary/", self.admin_site.admin_view(self.summary_view), name="usage_summary"),
            path("chart/<int:subscription_id>/", self.admin_site.admin_view(self.chart_view), name="usage_chart"),
            path("chart/", self.admin_site.admin_view(self.chart_find_view), name="usage_chart_find"),
        ]
        return own + super().get_urls()

    def chart_find_view(self, request):
        """Open the usage chart of the subscription named by its external id (the dashboard's form): its chart when
        one subscription has it, a choice when several services use the id, the usage list when none."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        external_id = request.GET.get("subscription", "").strip()
        found = list(Subscription.objects.filter(external_id=external_id).select_related("service", "customer")
                     .order_by("service__code")[:20]) if external_id else []
        if len(found) == 1:
            return redirect("admin:usage_chart", found[0].pk)
        if not found:
            messages.warning(request, f"No subscription has the external id {external_id!r}." if external_id
                             else "Name a subscription by its external id.")
            return redirect("admin:index")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Subscriptions with the external id {external_id}", "found": found}
        return TemplateResponse(request, "admin/usage/chart_find.html", context)

    def summary_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        """Usage per subscription and metric, filtered by service, subscription, metric, dates, lateness."""
        query = request.GET
        tz = timezone.get_current_timezone()
        start, end = parse_date(query.get("from", "") or ""), parse_date(query.get("to", "") or "")
        service_id = query.get("service", "")
        rows = usage_summary(
            service_id=int(service_id) if service_id.isdigit() else None,
            subscription_external_id=query.get("subscription", "").strip(),
            metric_code=query.get("metric", "").strip(),
            from_datetime=datetime.combine(start, time.min, tz) if start else None,
            to_datetime=datetime.combine(end, time.min, tz) if end else None,
            late_only=query.get("late") == "1",
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Usage per subscription and metric",
            "rows": rows,
            "services": Service.objects.order_by("code").values_list("id", "code"),
            "query": query,
        }
        return TemplateResponse(request, "admin/usage/summary.html", context)

    def chart_view(self, request, subscription_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        """Daily usage for one subscription: a bar chart per metric with titled axes (Chart.js as unfold serves it,
        no CDN), and the values as a table."""
        subscription = get_object_or_404(Subscription, pk=subscription_id)
        days = usage_daily_for_subscription(subscription_id=subscription.pk)
        series: dict[str, list] = {}
        for day in days:
            series.setdefault(day.metric_code, []).append(day)
        charts = []
        for index, (code, points) in enumerate(series.items()):
            data = {"labels": [p.day.isoformat() for p in points],
                    "datasets": [{"label": f"{code}: units per day", "data": [str(p.units.normalize()) for p in points],
                                  "backgroundColor": CHART_COLOURS[index % len(CHART_COLOURS)],
                                  "maxBarThickness": 24}]}
            charts.append({
                "code": code,
                "data": json.dumps(data),
                "options": chart_options(x_title="day (UTC)", y_title=f"{code} (metric units)"),
                "rows": [{"day": p.day, "units": p.units.normalize(), "events": p.events_count} for p in points],
            })
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Usage over time: {subscription.external_id}",
            "subscription": subscription,
            "charts": charts,
        }
        return TemplateResponse(request, "admin/usage/chart.html", context)


@admin.register(UsageArchive)
class UsageArchiveAdmin(NexaModelAdmin):
    """Months of raw usage archived (file, rows, checksum), and those the archiver skipped and why. Read-only:
    rows are written by the archiver (beat `usage-archive`, `manage.py usage_archive`) and `usage_restore`."""

    list_display = ("month", "status", "last_error", "rows", "path", "short_sha256", "archived_at", "restored_at",
                    "attempts", "last_attempt_at")
    list_filter = ("status",)
    ordering = ("-month",)
    readonly_fields = ("month", "status", "last_error", "path", "rows", "sha256", "late_billed", "archived_at",
                       "restored_at", "attempts", "last_attempt_at", "claimed_until")
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="sha256")
    def short_sha256(self, obj):
        return obj.sha256[:12]

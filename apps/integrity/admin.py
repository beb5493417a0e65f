"""Billing check runs and their violations in the admin: read-only; the violations list opens on the latest run."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin_kit import ReadOnlyAdmin
from apps.core.money import money_display

from .invariants import CENTS
from .models import CheckRun, CheckViolation


def _amount(value: int | None, unit: str, currency: str) -> str:
    """Money as `$119.78 CAD`; row and number counts as plain integers."""
    if value is None:
        return "-"
    if unit == CENTS and currency:
        return money_display(int(value), currency)
    return f"{value} {unit}"


@admin.register(CheckRun)
class CheckRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "violations_count", "violations_link", "counts", "note", "finished_at")
    readonly_fields = ("started_at", "finished_at", "violations_count", "counts", "customer_ids", "note")
    fields = readonly_fields

    @admin.display(description="violations")
    def violations_link(self, obj: CheckRun) -> str:
        url = reverse("admin:integrity_checkviolation_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{} violation(s)</a>', url, obj.violations_count)


@admin.register(CheckViolation)
class CheckViolationAdmin(ReadOnlyAdmin):
    # The violation first: what is wrong, then whose, then the amounts.
    list_display = ("message", "code", "rule", "customer", "invoice_link", "expected_display", "actual_display",
                    "reference", "run")
    list_filter = ("run", "code", "rule")
    list_select_related = ("customer", "run")
    search_fields = ("message", "invoice_number", "reference", "customer__external_id", "customer__name")
    show_full_result_count = False
    readonly_fields = ("run", "code", "rule", "message", "customer", "invoice", "invoice_number", "currency",
                       "expected_display", "actual_display", "unit", "reference")
    fields = readonly_fields

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Open on the latest run: older runs' violations stay one filter click away.
        if not any(key.startswith("run__") for key in request.GET):
            latest = CheckRun.objects.order_by("-started_at", "-id").values_list("pk", flat=True).first()
            if latest is not None:
                query = request.GET.copy()
                query["run__id__exact"] = str(latest)
                return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    @admin.display(description="invoice")
    def invoice_link(self, obj: CheckViolation) -> str:
        if obj.invoice_id is None:
            return "-"
        url = reverse("admin:invoicing_invoice_change", args=[obj.invoice_id])
        return format_html('<a href="{}">{}</a>', url, obj.invoice_number or f"#{obj.invoice_id}")

    @admin.display(description="expected")
    def expected_display(self, obj: CheckViolation) -> str:
        return _amount(obj.expected, obj.unit, obj.currency)

    @admin.display(description="actual")
    def actual_display(self, obj: CheckViolation) -> str:
        return _amount(obj.actual, obj.unit, obj.currency)

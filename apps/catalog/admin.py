from __future__ import annotations

from django.contrib import admin

from apps.core.admin_kit import NexaModelAdmin, NexaStackedInline

from .models import BillableMetric, Charge, Plan, Tax


@admin.register(BillableMetric)
class BillableMetricAdmin(NexaModelAdmin):
    list_display = ("code", "name", "service", "aggregation_type", "field_name", "recurring", "deleted_at")
    list_filter = ("service", "aggregation_type", "recurring")
    search_fields = ("code", "name")
    list_select_related = ("service",)
    readonly_fields = ("lago_id", "created_at", "updated_at")


class ChargeInline(NexaStackedInline):
    model = Charge
    extra = 0
    fields = (
        "code",
        "billable_metric",
        "charge_model",
        "properties",
        "pay_in_advance",
        "invoiceable",
        "min_amount_cents",
        "invoice_display_name",
    )
    autocomplete_fields = ("billable_metric",)
    money_currency = "plan.amount_currency"


@admin.register(Plan)
class PlanAdmin(NexaModelAdmin):
    list_display = ("code", "name", "service", "interval", "amount_cents", "amount_currency", "pay_in_advance", "deleted_at")
    list_filter = ("service", "interval", "amount_currency", "pay_in_advance")
    search_fields = ("code", "name")
    list_select_related = ("service",)
    readonly_fields = ("lago_id", "created_at", "updated_at")
    inlines = (ChargeInline,)


@admin.register(Tax)
class TaxAdmin(NexaModelAdmin):
    list_display = ("code", "name", "rate", "component", "country", "provinces", "valid_from", "service", "odoo_tax_ref")
    list_filter = ("country", "component", "service")
    search_fields = ("code", "name")
    readonly_fields = ("lago_id", "created_at", "updated_at")

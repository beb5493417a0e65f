from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_kit import NexaModelAdmin, NexaTabularInline
from apps.core.money import money_display

from .models import AccountLink, Customer, Service
from .services import service_create, service_rotate_key


class AccountLinkInline(NexaTabularInline):
    model = AccountLink
    extra = 0
    fields = ("service", "external_id", "deleted_at", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Service)
class ServiceAdmin(NexaModelAdmin):
    list_display = ("code", "name", "active", "api_key_prefix", "api_key_rotated_at", "created_at")
    list_filter = ("active",)
    search_fields = ("code", "name")
    readonly_fields = ("api_key_prefix", "api_key_rotated_at", "lago_id", "created_at", "updated_at")
    fields = ("code", "name", "active", "api_key_prefix", "api_key_rotated_at", "lago_id", "created_at")
    actions = ("rotate_key",)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = service_create(code=obj.code, name=obj.name)
        obj.pk = issued.service.pk
        obj.__dict__.update(issued.service.__dict__)
        self._show_key(request, issued)

    @admin.action(description="Rotate API key (the old key stops working)")
    def rotate_key(self, request, queryset):
        for service_id in queryset.values_list("pk", flat=True):
            self._show_key(request, service_rotate_key(service_id=service_id))

    @staticmethod
    def _show_key(request, issued) -> None:
        messages.warning(
            request,
            format_html(
                "API key for <b>{}</b> (shown once, store it now): <code>{}</code>", issued.service.code, issued.raw_key
            ),
        )


@admin.register(Customer)
class CustomerAdmin(NexaModelAdmin):
    list_display = ("external_id", "legal_name", "name", "email", "country", "state", "currency", "created_at")
    list_filter = ("country", "state", "currency", "customer_type")
    search_fields = ("external_id", "name", "legal_name", "email", "account_links__external_id")
    readonly_fields = ("lago_id", "created_at", "updated_at", "invoice_history")
    inlines = (AccountLinkInline,)

    @admin.display(description="Invoice history")
    def invoice_history(self, obj):
        """The latest invoices as links, and a link to all of them in the invoice list."""
        if obj is None or obj.pk is None:
            return "-"
        from apps.invoicing.selectors import invoice_list_for_customer  # customers does not import invoicing at load

        rows = format_html_join(
            "", '<li><a href="{}">{}</a> · {} · {} · {} · {}</li>',
            ((reverse("admin:invoicing_invoice_change", args=[invoice.pk]), invoice.number or "draft",
              invoice.issuing_date, invoice.status, money_display(invoice.total_amount_cents, invoice.currency),
              invoice.payment_status) for invoice in invoice_list_for_customer(customer_id=obj.pk)),
        )
        everything = reverse("admin:invoicing_invoice_changelist") + f"?customer__id__exact={obj.pk}"
        return format_html('<ul>{}</ul><a href="{}">All invoices of this customer</a>', rows or "-", everything)


@admin.register(AccountLink)
class AccountLinkAdmin(NexaModelAdmin):
    list_display = ("external_id", "service", "customer", "deleted_at", "created_at")
    list_filter = ("service", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("external_id", "customer__external_id", "customer__legal_name")
    list_select_related = ("service", "customer")
    autocomplete_fields = ("customer",)
    readonly_fields = ("lago_id", "created_at", "updated_at")

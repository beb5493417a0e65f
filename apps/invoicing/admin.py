"""Invoices, credit notes and close runs in the admin: actions call services; finalized rows are read-only."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponse

from apps.core.exceptions import BillingError

from .models import CloseRun, CloseRunCustomer, CreditNote, CreditNoteItem, Fee, Invoice, InvoiceAppliedTax
from .pdf import invoice_pdf
from .services import invoice_finalize, invoice_void


class FeeInline(admin.TabularInline):
    model = Fee
    extra = 0
    can_delete = False
    fields = ("name", "fee_type", "service", "units", "precise_amount", "amount_cents", "taxes_amount_cents",
              "from_datetime", "to_datetime", "is_adjustment", "fee_key")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


class AppliedTaxInline(admin.TabularInline):
    model = InvoiceAppliedTax
    extra = 0
    can_delete = False
    readonly_fields = ("tax_code", "tax_name", "tax_rate", "base_amount_cents", "amount_cents")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "customer", "invoice_type", "status", "payment_status", "issuing_date",
                    "total_amount_cents", "currency")
    list_filter = ("status", "payment_status", "invoice_type", "currency")
    list_select_related = ("customer",)
    search_fields = ("number", "customer__external_id", "customer__legal_name", "lago_id")
    raw_id_fields = ("customer",)
    date_hierarchy = "issuing_date"
    show_full_result_count = False
    inlines = (FeeInline, AppliedTaxInline)
    actions = ("finalize", "void", "download_pdf")

    def get_readonly_fields(self, request, obj=None):
        # Money and numbering are written by services only; a finalized invoice never changes.
        return [field.name for field in Invoice._meta.fields]

    def has_add_permission(self, request):
        return False

    def _each(self, request, queryset, service, verb):
        done = 0
        for invoice_id in queryset.values_list("pk", flat=True):
            try:
                service(invoice_id=invoice_id)
                done += 1
            except BillingError as exc:
                self.message_user(request, f"invoice {invoice_id}: {exc}", messages.ERROR)
        self.message_user(request, f"{done} invoice(s) {verb}.")

    @admin.action(description="Finalize selected drafts")
    def finalize(self, request, queryset):
        self._each(request, queryset, invoice_finalize, "finalized")

    @admin.action(description="Void selected finalized invoices")
    def void(self, request, queryset):
        self._each(request, queryset, invoice_void, "voided")

    @admin.action(description="Download PDF (first selected)")
    def download_pdf(self, request, queryset):
        invoice = queryset.first()
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number or invoice.lago_id}.pdf"'
        return response


class CreditNoteItemInline(admin.TabularInline):
    model = CreditNoteItem
    extra = 0
    can_delete = False
    readonly_fields = ("fee", "amount_cents", "taxes_amount_cents")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(admin.ModelAdmin):
    list_display = ("number", "invoice", "customer", "reason", "total_amount_cents", "credit_status", "refund_status")
    list_filter = ("reason", "credit_status", "refund_status")
    search_fields = ("number", "invoice__number", "customer__external_id")
    raw_id_fields = ("invoice", "customer")
    inlines = (CreditNoteItemInline,)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in CreditNote._meta.fields]

    def has_add_permission(self, request):
        return False  # credit notes go through credit_note_create (API), which checks what is left to credit


class CloseRunCustomerInline(admin.TabularInline):
    model = CloseRunCustomer
    extra = 0
    can_delete = False
    fields = ("customer", "outcome", "invoices_count", "fees_count", "error")
    readonly_fields = fields
    raw_id_fields = ("customer",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CloseRun)
class CloseRunAdmin(admin.ModelAdmin):
    list_display = ("created_at", "as_of", "status", "customers_count", "invoices_count", "fees_count", "failures_count")
    list_filter = ("status",)
    inlines = (CloseRunCustomerInline,)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in CloseRun._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(CloseRunCustomer)
class CloseRunCustomerAdmin(admin.ModelAdmin):
    """Per-customer outcomes, filterable to failures; a customer's invoice history is the invoice list filtered by it."""

    list_display = ("run", "customer", "outcome", "invoices_count", "error")
    list_filter = ("outcome",)
    search_fields = ("customer__external_id", "error")
    list_select_related = ("run", "customer")
    raw_id_fields = ("run", "customer")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in CloseRunCustomer._meta.fields]

"""Admin: postings (read-only, retry action, reconciliation report) and the Odoo mapping."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from apps.core.admin_kit import NexaModelAdmin, confirm_with_reason
from apps.ledger.models import (
    LedgerPosting,
    OdooAccountMapping,
    OdooAnalyticMapping,
    OdooJournalMapping,
    OdooProductMapping,
    OdooTaxMapping,
)
from apps.ledger.odoo_client import OdooError
from apps.ledger.selectors import ledger_reconciliation
from apps.ledger.services import ledger_mapping_check, ledger_posting_retry


def _posting_currency(posting: LedgerPosting) -> str:
    """A posting's amounts are in its document's currency (a payment's own for a payment posting)."""
    if posting.payment_currency:
        return posting.payment_currency
    document = posting.invoice if posting.invoice_id else posting.credit_note
    return document.currency if document is not None else ""


@admin.register(LedgerPosting)
class LedgerPostingAdmin(NexaModelAdmin):
    # The error first: a failure queue is read for why.
    list_display = ("short_error", "ref", "kind", "status", "odoo_name", "hub_amount_total_cents",
                    "odoo_amount_total_cents", "attempts", "next_attempt_at")
    list_filter = ("status", "kind")
    search_fields = ("ref", "odoo_name", "stripe_payment_id")
    raw_id_fields = ("invoice", "credit_note", "wallet_transaction")
    list_select_related = ("invoice", "credit_note")
    money_currency = staticmethod(_posting_currency)
    show_full_result_count = False
    actions = ("retry",)
    change_list_template = "admin/ledger/ledgerposting/change_list.html"

    def get_readonly_fields(self, request: HttpRequest, obj: LedgerPosting | None = None) -> list[str]:
        return [field.name for field in LedgerPosting._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # postings are written by the invoicing and payment services

    def has_change_permission(self, request: HttpRequest, obj: LedgerPosting | None = None) -> bool:
        return obj is None and super().has_change_permission(request)  # the retry action; pages read-only

    def has_delete_permission(self, request: HttpRequest, obj: LedgerPosting | None = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: LedgerPosting) -> str:
        return obj.last_error[:120]

    @admin.action(description="Force a retry of selected failed/mismatched postings", permissions=["change"])
    def retry(self, request: HttpRequest, queryset):
        def run(reason: str) -> None:
            retried = sum(ledger_posting_retry(posting_id=pk) for pk in queryset.values_list("pk", flat=True))
            self.message_user(request, f"{retried} posting(s) queued again.")

        return confirm_with_reason(self, request, queryset, action="retry", verb="Retry now", run=run,
                                   question="Send these postings to Odoo again now?")

    def get_urls(self):
        report = path("reconciliation/", self.admin_site.admin_view(self.reconciliation_view),
                      name="ledger_ledgerposting_reconciliation")
        return [report, *super().get_urls()]

    def reconciliation_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = ledger_reconciliation()
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "report": report,
                   "title": "Odoo reconciliation"}
        return TemplateResponse(request, "admin/ledger/reconciliation.html", context)


class _CheckMappingAdmin(NexaModelAdmin):
    actions = ("check_odoo",)

    @admin.action(description="Check the Odoo connection and every mapped reference")
    def check_odoo(self, request: HttpRequest, queryset) -> None:
        try:
            check = ledger_mapping_check()
        except OdooError as exc:
            self.message_user(request, f"Cannot reach Odoo: {exc.message}", messages.ERROR)
            return
        for problem in check.problems:
            self.message_user(request, f"Missing: {problem}", messages.WARNING)
        for mismatch in check.mismatches:
            self.message_user(request, f"Mismatch: {mismatch}", messages.ERROR)
        if not check.problems and not check.mismatches:
            self.message_user(request, f"Odoo {check.server}: mapping OK", messages.SUCCESS)


@admin.register(OdooProductMapping)
class OdooProductMappingAdmin(_CheckMappingAdmin):
    list_display = ("service", "billable_metric", "plan", "odoo_product", "odoo_income_account")
    list_filter = ("service",)
    list_select_related = ("service", "billable_metric", "plan")
    raw_id_fields = ("billable_metric", "plan")


@admin.register(OdooTaxMapping)
class OdooTaxMappingAdmin(_CheckMappingAdmin):
    list_display = ("tax_code", "odoo_tax")


@admin.register(OdooJournalMapping)
class OdooJournalMappingAdmin(_CheckMappingAdmin):
    list_display = ("purpose", "odoo_journal")


@admin.register(OdooAnalyticMapping)
class OdooAnalyticMappingAdmin(_CheckMappingAdmin):
    list_display = ("service", "odoo_analytic_account")


@admin.register(OdooAccountMapping)
class OdooAccountMappingAdmin(_CheckMappingAdmin):
    """Accounts posted without a product: paid wallet credit (prepayment, a liability) and granted wallet credit
    consumed (prepaid_discount, an expense). Without a row the default applies (OdooAccountMapping.DEFAULTS)."""

    list_display = ("purpose", "odoo_account")

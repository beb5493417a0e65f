"""Invoices, credit notes and close runs in the admin: actions call services; finalized rows are read-only."""
from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from apps.core.admin_kit import (
    CurrencyFilter,
    NexaModelAdmin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    ReasonForm,
    confirm_with_reason,
    read_only_action,
)
from apps.core.audit import audit_context
from apps.core.money import money_display
from apps.core.exceptions import BillingError, ValidationFailed
from apps.payments.models import PaymentAttempt

from .models import (
    CloseRange,
    CloseRun,
    CloseRunCustomer,
    CreditApplication,
    CreditNote,
    CreditNoteItem,
    CustomerCredit,
    Fee,
    Invoice,
    InvoiceAppliedTax,
    RecurringTransactionRule,
    Wallet,
    WalletTransaction,
)
from .pdf import invoice_pdf
from .selectors import fee_remaining_to_credit, invoices_matching
from .services import (
    CreditNoteItemIn,
    credit_note_create,
    credit_note_estimate,
    credit_note_void,
    invoice_finalize,
    invoice_void,
)


class CreditNoteForm(forms.Form):
    """The admin's "create credit note" step: reason, what to credit (all that is left, or cents per fee),
    and whether the amount goes back on the card (refund) or stays as credit."""

    SCOPES = (("remaining", "Everything left to credit on every fee"), ("per_fee", "The amounts below, per fee"))
    SETTLEMENTS = (("credit", "Credit (kept for the customer)"), ("refund", "Refund (paid back through Stripe)"))

    reason = forms.ChoiceField(choices=CreditNote.Reason.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text="Required: why, in words; recorded in the audit with your name.")
    scope = forms.ChoiceField(choices=SCOPES, initial="remaining", widget=forms.RadioSelect)
    settlement = forms.ChoiceField(choices=SETTLEMENTS, initial="credit", widget=forms.RadioSelect)

    def __init__(self, *args, invoice: Invoice, **kwargs):
        super().__init__(*args, **kwargs)
        self.remaining = fee_remaining_to_credit(invoice)
        self.fees = list(invoice.fees.order_by("pk"))
        for fee in self.fees:
            self.fields[f"fee_{fee.pk}"] = forms.IntegerField(
                required=False, min_value=0, max_value=max(self.remaining[fee.pk], 0),
                label=f"{fee.name} (cents, tax excluded; {self.remaining[fee.pk]} left)",
            )

    def items(self) -> list[CreditNoteItemIn]:
        if self.cleaned_data["scope"] == "remaining":
            pairs = [(fee.pk, self.remaining[fee.pk]) for fee in self.fees]
        else:
            pairs = [(fee.pk, self.cleaned_data.get(f"fee_{fee.pk}") or 0) for fee in self.fees]
        return [CreditNoteItemIn(fee_id=fee_id, amount_cents=cents) for fee_id, cents in pairs if cents > 0]


class ExportForm(forms.Form):
    start = forms.DateField(label="From (issuing date)", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))
    kind = forms.ChoiceField(choices=(("invoices", "Invoices (CSV)"), ("fees", "Fees (CSV)"),
                                      ("summary", "Summary per service and tax rate (CSV)")))

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The period ends before it starts.")
        return data


class PaymentAttemptInline(ReadOnlyTabularInline):
    model = PaymentAttempt
    fields = ("attempt_number", "kind", "status", "amount_cents", "stripe_payment_intent_id",
              "stripe_checkout_session_id", "checkout_url", "failure_code", "failure_message", "next_retry_at",
              "completed_at", "checkout_closed_at")
    readonly_fields = fields
    ordering = ("attempt_number",)


class FeeInline(ReadOnlyTabularInline):
    model = Fee
    fields = ("name", "fee_type", "service", "units", "precise_amount", "amount_cents", "taxes_amount_cents",
              "from_datetime", "to_datetime", "is_adjustment", "fee_key")
    readonly_fields = fields
    show_change_link = False


class AppliedTaxInline(ReadOnlyTabularInline):
    model = InvoiceAppliedTax
    readonly_fields = ("tax_code", "tax_name", "tax_rate", "base_amount_cents", "amount_cents")
    money_currency = "invoice.currency"


class CreditApplicationInline(ReadOnlyTabularInline):
    """Customer credit this invoice consumed (or, on a credit note, where its credit went); append-only."""

    model = CreditApplication
    fk_name = "invoice"
    fields = ("created_at", "kind", "credit_note", "customer_credit", "invoice", "amount_cents", "currency")
    readonly_fields = fields


class CreditNoteApplicationInline(CreditApplicationInline):
    fk_name = "credit_note"


class CustomerCreditApplicationInline(CreditApplicationInline):
    fk_name = "customer_credit"
    fields = ("created_at", "kind", "customer_credit", "invoice", "amount_cents", "currency")
    readonly_fields = fields


class VoidWithCreditNotesForm(ReasonForm):
    """The reason, and Lago's void body in minor units of the invoice's currency."""

    credit_amount_cents = forms.IntegerField(min_value=0, initial=0,
                                             help_text="Kept as the customer's credit, in cents (1150 = 11.50).")
    refund_amount_cents = forms.IntegerField(min_value=0, initial=0,
                                             help_text="Refunded through Stripe, in cents; at most what was paid.")


@admin.register(Invoice)
class InvoiceAdmin(NexaModelAdmin):
    list_display = ("__str__", "customer", "invoice_type", "status", "payment_status", "issuing_date",
                    "total_amount_cents")
    list_filter = ("status", "payment_status", "invoice_type", CurrencyFilter)
    list_select_related = ("customer",)
    # Shown as the search box's hint; the search itself is get_search_results (customers first).
    search_fields = ("number", "customer__external_id", "customer__name", "customer__legal_name", "lago_id")
    raw_id_fields = ("customer",)
    date_hierarchy = "issuing_date"
    show_full_result_count = False
    inlines = (FeeInline, AppliedTaxInline, CreditApplicationInline, PaymentAttemptInline)
    actions = ("finalize", "void", "void_with_credit_notes", "create_credit_note", "download_pdf")

    def get_search_results(self, request, queryset, search_term):
        return invoices_matching(queryset, text=search_term), False

    def get_readonly_fields(self, request, obj=None):
        # Money and numbering are written by services only; a finalized invoice never changes.
        return [field.name for field in Invoice._meta.fields] + ["payment_link", "audit_trail"]

    @admin.display(description="Payment link")
    def payment_link(self, obj):
        if not obj.payment_url:
            return "-"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', obj.payment_url, obj.payment_url)

    @admin.action(description="Create a credit note (first selected finalized invoice)", permissions=["change"])
    def create_credit_note(self, request, queryset):
        invoice = queryset.order_by("pk").first()
        if invoice is None or invoice.status != Invoice.Status.FINALIZED:
            self.message_user(request, "Credit notes are issued on finalized invoices only.", messages.ERROR)
            return None
        form = CreditNoteForm(request.POST if "apply" in request.POST else None, invoice=invoice)
        if form.is_bound and form.is_valid():
            items = form.items()
            try:
                refund = None
                if form.cleaned_data["settlement"] == "refund":
                    refund = credit_note_estimate(invoice=invoice, items=items).total_amount_cents
                why = f"credit note ({form.cleaned_data['reason']}): {form.cleaned_data['description']}"
                with audit_context(actor=request.user.get_username(), reason=why, action="create_credit_note"):
                    note = credit_note_create(
                        invoice_id=invoice.pk, items=items, reason=form.cleaned_data["reason"],
                        description=form.cleaned_data["description"], refund_amount_cents=refund,
                    )
            except ValidationFailed as exc:
                details = "; ".join(f"{field}: {', '.join(codes)}" for field, codes in exc.details.items())
                self.message_user(request, f"{invoice}: {details or exc}", messages.ERROR)
            except BillingError as exc:
                self.message_user(request, f"{invoice}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"Credit note {note.number} created: "
                                           f"{money_display(note.total_amount_cents, note.currency)}, refund "
                                           f"{money_display(note.refund_amount_cents, note.currency)}.")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Create a credit note for {invoice}",
            "invoice": invoice,
            "total": money_display(invoice.total_amount_cents, invoice.currency),
            "paid": money_display(invoice.total_paid_amount_cents, invoice.currency),
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "invoicing/admin/credit_note_form.html", context)

    def has_add_permission(self, request):
        return False  # invoices are issued by the close and the API's services

    def get_urls(self):
        from django.urls import path

        return [path("exports/", self.admin_site.admin_view(self.exports_view), name="invoicing_invoice_exports"),
                *super().get_urls()]

    def exports_view(self, request):
        """Accountants' exports for a period: invoices, fees, and the summary per service and tax rate (CSV)."""
        from django.core.exceptions import PermissionDenied
        from django.http import StreamingHttpResponse

        from apps.dashboard import exports

        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ExportForm(request.GET or None)
        if form.is_bound and form.is_valid():
            start, end, kind = form.cleaned_data["start"], form.cleaned_data["end"], form.cleaned_data["kind"]
            make = {"invoices": exports.invoices_csv, "fees": exports.fees_csv,
                    "summary": exports.period_summary_csv}[kind]
            response = StreamingHttpResponse(make(start=start, end=end), content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="{kind}-{start}-{end}.csv"'
            return response
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Exports for a period"}
        return TemplateResponse(request, "admin/invoicing/exports.html", context)

    def has_change_permission(self, request, obj=None):
        # The list's actions call services; an invoice's own page is read-only (no Save).
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # a finalized invoice is voided or credited, never deleted

    def _each(self, request, queryset, service, verb):
        done = 0
        for invoice_id in queryset.values_list("pk", flat=True):
            try:
                service(invoice_id=invoice_id)
                done += 1
            except BillingError as exc:
                self.message_user(request, f"invoice {invoice_id}: {exc}", messages.ERROR)
        self.message_user(request, f"{done} invoice(s) {verb}.")

    @admin.action(description="Finalize selected drafts", permissions=["change"])
    def finalize(self, request, queryset):
        return confirm_with_reason(
            self, request, queryset, action="finalize", verb="Finalize",
            question="Finalize these drafts now (numbered, frozen, sent to the customer and the ledger)?",
            run=lambda reason: self._each(request, queryset, invoice_finalize, "finalized"))

    @admin.action(description="Void selected finalized invoices", permissions=["change"])
    def void(self, request, queryset):
        return confirm_with_reason(
            self, request, queryset, action="void", verb="Void",
            question="Void these invoices? Nothing more is collected on them; credit they used goes back.",
            run=lambda reason: self._each(request, queryset, invoice_void, "voided"))

    @admin.action(description="Void with credit notes…", permissions=["change"])
    def void_with_credit_notes(self, request, queryset):
        """Lago's void with `generate_credit_note`, through the API's service (same checks, lock, notes, postings):
        one invoice at a time, since the amounts are that invoice's."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one invoice to void with credit notes.", messages.ERROR)
            return None

        def run(reason: str, data: dict) -> None:
            invoice_id = queryset.values_list("pk", flat=True).get()
            try:
                invoice_void(invoice_id=invoice_id, generate_credit_note=True,
                             credit_amount_cents=data["credit_amount_cents"],
                             refund_amount_cents=data["refund_amount_cents"])
                self.message_user(request, "1 invoice voided with credit notes.")
            except BillingError as exc:
                detail = f" {exc.details}" if getattr(exc, "details", None) else ""
                self.message_user(request, f"invoice {invoice_id}: {exc}{detail}", messages.ERROR)

        return confirm_with_reason(
            self, request, queryset, action="void_with_credit_notes", verb="Void with credit notes",
            question="Void this invoice, paid or not? What is due is settled; the credit and refund below go on a "
                     "credit note (the refund through Stripe); the rest of what was paid stays billed.",
            run=run, form_class=VoidWithCreditNotesForm)

    @read_only_action
    @admin.action(description="Download PDF (first selected)")
    def download_pdf(self, request, queryset):
        invoice = queryset.first()
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number or invoice.lago_id}.pdf"'
        return response


class CreditNoteItemInline(ReadOnlyTabularInline):
    model = CreditNoteItem
    readonly_fields = ("fee", "amount_cents", "taxes_amount_cents")
    money_currency = "credit_note.currency"


@admin.register(CreditNote)
class CreditNoteAdmin(NexaModelAdmin):
    list_display = ("number", "invoice", "customer", "reason", "total_amount_cents", "balance_amount_cents",
                    "credit_status", "refund_status")
    list_filter = ("reason", "credit_status", "refund_status")
    search_fields = ("number", "invoice__number", "customer__external_id")
    raw_id_fields = ("invoice", "customer")
    inlines = (CreditNoteItemInline, CreditNoteApplicationInline)
    actions = ("void_credit",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in CreditNote._meta.fields] + ["audit_trail"]

    def has_add_permission(self, request):
        return False  # credit notes go through credit_note_create (API), which checks what is left to credit

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)  # the void action; pages read-only

    @admin.action(description="Void credit…", permissions=["change"])
    def void_credit(self, request, queryset):
        def run(reason: str) -> None:
            done = 0
            for note_id in queryset.values_list("pk", flat=True):
                try:
                    credit_note_void(credit_note_id=note_id)  # the API's service: same checks, lock and posting
                    done += 1
                except BillingError as exc:
                    self.message_user(request, f"credit note {note_id}: {exc}", messages.ERROR)
            self.message_user(request, f"{done} credit note(s) voided.")

        return confirm_with_reason(
            self, request, queryset, action="void_credit", verb="Void credit",
            question="Void the unused credit of these credit notes? The customer loses it; refunds are untouched.",
            run=run)

    def has_delete_permission(self, request, obj=None):
        return False


class CustomerCreditAlertFilter(admin.SimpleListFilter):
    title, parameter_name = "alert", "alert"

    def lookups(self, request, model_admin):
        return (("open", "To review"), ("acknowledged", "Acknowledged"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(CustomerCredit)
class CustomerCreditAdmin(NexaModelAdmin):
    """Money Stripe collected that no invoice took (late or duplicate payments): each row is an alert until a staff
    member acknowledges it. The money itself is never touched here: it is consumed by the customer's next
    invoices, or refunded (PAYMENTS_OVERPAYMENT_HANDLING)."""

    list_display = ("created_at", "customer", "invoice", "reason", "amount_cents", "balance_amount_cents", "currency",
                    "status", "acknowledged_at")
    list_filter = (CustomerCreditAlertFilter, "reason", "status", "currency")
    search_fields = ("customer__external_id", "invoice__number", "payment__stripe_payment_intent_id")
    list_select_related = ("customer", "invoice")
    raw_id_fields = ("customer", "invoice", "payment")
    inlines = (CustomerCreditApplicationInline,)
    actions = ("acknowledge",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in CustomerCredit._meta.fields] + ["audit_trail"]

    def has_add_permission(self, request):
        return False  # written by apps.payments when Stripe reports money no invoice takes

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)  # the acknowledge action; pages read-only

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        from django.utils import timezone

        def run(reason: str) -> None:
            done = queryset.filter(acknowledged_at__isnull=True).update(
                acknowledged_at=timezone.now(), acknowledged_by=request.user.get_username(), updated_at=timezone.now())
            self.message_user(request, f"{done} alert(s) acknowledged.")

        return confirm_with_reason(self, request, queryset, action="acknowledge", verb="Acknowledge",
                                   question="Acknowledge these alerts (the money stays as the customer's credit)?",
                                   run=run)


class CloseRunCustomerInline(ReadOnlyTabularInline):
    model = CloseRunCustomer
    fields = ("customer", "outcome", "invoices_count", "fees_count", "error")
    readonly_fields = fields
    raw_id_fields = ("customer",)


class CloseRangeInline(ReadOnlyTabularInline):
    """A distributed close's ranges of customers: who holds each, until when, and which run finished it."""

    model = CloseRange
    fk_name = "run"
    fields = ("first_customer_id", "last_customer_id", "customers_count", "status", "attempts", "claimed_by",
              "claimed_until", "result_run", "finished_at")
    readonly_fields = fields


class RunCloseForm(forms.Form):
    as_of = forms.SplitDateTimeField(label="As of", help_text="Periods ended at or before this instant are billed; "
                                     "not later than now.", widget=forms.SplitDateTimeWidget(
                                         date_attrs={"type": "date"}, time_attrs={"type": "time"}))
    customer = forms.CharField(required=False, label="One customer (hub id, e.g. nexacloud:acme)",
                               help_text="Empty: every customer due.")
    reason = forms.CharField(min_length=5, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Required: recorded in the audit with your name.")

    def clean_as_of(self):
        from django.utils import timezone

        value = self.cleaned_data["as_of"]
        if value > timezone.now():
            raise forms.ValidationError("A close bills periods that have ended: choose now or earlier.")
        return value

    def clean_customer(self):
        from apps.customers.models import Customer

        external_id = self.cleaned_data["customer"].strip()
        if not external_id:
            return None
        customer = Customer.objects.filter(external_id=external_id).first()
        if customer is None:
            raise forms.ValidationError("No customer with this hub id.")
        return customer


@admin.register(CloseRun)
class CloseRunAdmin(ReadOnlyAdmin):
    """Written by the close only: a run is its record of what was billed, never edited, deleted or made by hand.
    Staff start one from "Run a close" (the same close the schedule runs) and follow it on its progress page."""

    list_display = ("created_at", "as_of", "status", "progress", "customers_count", "invoices_count", "fees_count",
                    "failures_count")
    list_filter = ("status",)
    inlines = (CloseRangeInline, CloseRunCustomerInline)
    readonly_fields = ("progress",)

    def get_urls(self):
        from django.urls import path

        return [path("run/", self.admin_site.admin_view(self.run_view), name="invoicing_closerun_run"),
                path("progress/", self.admin_site.admin_view(self.progress_view), name="invoicing_closerun_progress"),
                *super().get_urls()]

    def _may_run(self, request) -> bool:
        return request.user.has_perm("invoicing.change_invoice")

    def run_view(self, request):
        """Run a close as of a date, for every customer due (in the background) or for one (now)."""
        from django.core.exceptions import PermissionDenied
        from django.http import HttpResponseRedirect
        from django.urls import reverse
        from django.utils import timezone

        from apps.core.queue import task_send_on_commit

        from .close import close_customer

        if not self._may_run(request):
            raise PermissionDenied
        form = RunCloseForm(request.POST or None, initial={"as_of": timezone.localtime().replace(microsecond=0)})
        if request.method == "POST" and form.is_valid():
            as_of, customer = form.cleaned_data["as_of"], form.cleaned_data["customer"]
            with audit_context(actor=request.user.get_username(), reason=form.cleaned_data["reason"],
                               action="close"):
                if customer is not None:
                    try:
                        invoices, fees = close_customer(customer_id=customer.pk, as_of=as_of)
                    except BillingError as exc:
                        form.add_error(None, f"{customer}: {exc}")
                    else:
                        self.message_user(request, f"{customer} closed as of {as_of:%Y-%m-%d %H:%M}: "
                                                   f"{invoices} invoice(s), {fees} fee(s).")
                        return HttpResponseRedirect(reverse("admin:customers_customer_overview",
                                                            args=[customer.pk]))
                else:
                    started = timezone.now()
                    task_send_on_commit("apps.invoicing.tasks.periods_close_task", as_of.isoformat())
                    return HttpResponseRedirect(reverse("admin:invoicing_closerun_progress")
                                                + f"?since={started.isoformat()}".replace("+", "%2B"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Run a close"}
        return TemplateResponse(request, "admin/invoicing/run_close.html", context)

    def progress_view(self, request):
        """The close started at `since`: customers closed out of those due, refreshed until it ends."""
        from django.utils.dateparse import parse_datetime

        since = parse_datetime(request.GET.get("since", "")) if request.GET.get("since") else None
        runs = CloseRun.objects.order_by("-created_at")
        run = (runs.filter(created_at__gte=since) if since else runs).order_by("created_at").first()
        done = run.outcomes.count() if run else 0
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "run": run, "done": done,
                   "percent": int(done * 100 / run.customers_count) if run and run.customers_count else
                   (100 if run and run.status != CloseRun.Status.RUNNING else 0),
                   "running": run is None or run.status == CloseRun.Status.RUNNING, "title": "Close progress"}
        return TemplateResponse(request, "admin/invoicing/close_progress.html", context)

    @admin.display(description="progress")
    def progress(self, obj: CloseRun) -> str:
        done = obj.outcomes.count()
        return f"{done} of {obj.customers_count} customer(s)" + (" (running)" if obj.status == "running" else "")


@admin.register(CloseRunCustomer)
class CloseRunCustomerAdmin(ReadOnlyAdmin):
    """Per-customer outcomes, filterable to failures; a customer's invoice history is the invoice list filtered by it."""

    list_display = ("run", "customer", "outcome", "invoices_count", "error")
    list_filter = ("outcome",)
    search_fields = ("customer__external_id", "error")
    list_select_related = ("run", "customer")
    raw_id_fields = ("run", "customer")


class WalletTransactionInline(ReadOnlyTabularInline):
    """Every movement of the wallet's balance, newest first; append-only (apps/invoicing/wallets.py)."""

    model = WalletTransaction
    fk_name = "wallet"
    fields = ("created_at", "transaction_type", "status", "transaction_status", "reason", "amount_cents",
              "paid_amount_cents", "credit_amount", "invoice", "settled_at", "failed_at")
    readonly_fields = fields
    money_currency = "wallet.currency"
    ordering = ("-created_at", "-id")


class RecurringTransactionRuleInline(ReadOnlyTabularInline):
    """The wallet's automatic top-up rules (set through the API, Lago's recurring_transaction_rules)."""

    model = RecurringTransactionRule
    fk_name = "wallet"
    fields = ("created_at", "status", "trigger", "method", "interval", "threshold_credits", "paid_credits",
              "granted_credits", "target_ongoing_balance", "started_at", "expiration_at", "last_interval_on",
              "threshold_armed")
    readonly_fields = fields


class GrantCreditsForm(forms.Form):
    granted_credits = forms.DecimalField(max_digits=30, decimal_places=5, min_value=Decimal("0.00001"),
                                         label="Credits to grant", help_text="Free credits, settled at once.")
    reason = forms.CharField(min_length=5, max_length=500, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Required: recorded in the audit with your name.")


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    """Prepaid credits per customer and service: written through the API's services only (top-ups, consumption at
    finalization, expiry), read here with their transactions and audit trail. Staff grant credits with a reason
    ("Grant credits" on a wallet's page), through the service the API's top-ups call."""

    list_display = ("created_at", "customer", "service", "name", "status", "balance_amount_cents",
                    "paid_balance_amount_cents", "consumed_amount_cents", "currency", "expiration_at")
    list_filter = ("status", "currency", "service")
    search_fields = ("customer__external_id", "account_link__external_id", "name", "code")
    list_select_related = ("customer", "service")
    raw_id_fields = ("customer", "service", "account_link")
    readonly_fields = ("grant_credits",)
    inlines = (RecurringTransactionRuleInline, WalletTransactionInline)

    def get_urls(self):
        from django.urls import path

        return [path("<int:wallet_id>/grant/", self.admin_site.admin_view(self.grant_view),
                     name="invoicing_wallet_grant"), *super().get_urls()]

    @admin.display(description="grant credits")
    def grant_credits(self, obj: Wallet) -> str:
        from django.urls import reverse

        if obj.pk is None or obj.status != Wallet.Status.ACTIVE:
            return "-"
        return format_html('<a href="{}">Grant credits…</a>', reverse("admin:invoicing_wallet_grant", args=[obj.pk]))

    def grant_view(self, request, wallet_id: int):
        """Grant free credits to an active wallet, with a required reason: `wallet_transaction_create` (the API's
        top-up service) under the audit's context, so the transaction and the balance change carry who and why."""
        from django.core.exceptions import PermissionDenied
        from django.http import HttpResponseRedirect
        from django.shortcuts import get_object_or_404
        from django.urls import reverse

        from .wallets import wallet_transaction_create

        if not request.user.has_perm("invoicing.view_wallet") or not request.user.has_perm("invoicing.change_invoice"):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet.objects.select_related("customer", "service"), pk=wallet_id)
        form = GrantCreditsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            credits, reason = form.cleaned_data["granted_credits"], form.cleaned_data["reason"]
            try:
                with transaction.atomic(), audit_context(actor=request.user.get_username(), reason=reason,
                                                         action="grant_credits"):
                    [row] = wallet_transaction_create(wallet=wallet, values={"granted_credits": credits})
            except BillingError as exc:
                codes = "; ".join(f"{field}: {', '.join(errs)}" for field, errs in exc.details.items())
                form.add_error(None, codes or str(exc))
            else:
                self.message_user(request, f"Granted {row.credit_amount.normalize():f} credits "
                                           f"({money_display(row.amount_cents, wallet.currency)}) to {wallet}.")
                return HttpResponseRedirect(reverse("admin:invoicing_wallet_change", args=[wallet.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "wallet": wallet, "balance": money_display(wallet.balance_amount_cents, wallet.currency),
                   "title": f"Grant credits: {wallet}"}
        return TemplateResponse(request, "admin/invoicing/wallet_grant.html", context)

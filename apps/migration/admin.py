"""Admin: each service's migration phase (import action), import runs with their closing table and issues."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_kit import NexaModelAdmin, NexaTabularInline, read_only_action
from apps.core.money import money_display

from apps.core.exceptions import BillingError

from .lago_client import LagoError
from .models import (
    ImportIssue,
    ImportRun,
    PhaseChange,
    ReconciliationDifference,
    ReconciliationLine,
    ReconciliationRun,
    RelayFailure,
    RelayStream,
    ServicePhase,
)
from .selectors import import_report, relay_status


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class PhaseSwitchForm(forms.Form):
    to_phase = forms.ChoiceField(choices=ServicePhase.Phase.choices, label="New phase")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded with your name and the time.")


@admin.register(ServicePhase)
class ServicePhaseAdmin(NexaModelAdmin):
    list_display = ("service", "phase", "changed_at", "relay", "lago_api_url", "masked_key")
    list_select_related = ("service",)
    readonly_fields = ("phase", "changed_at", "switch_link", "relay", "history")
    fields = ("service", "phase", "changed_at", "switch_link", "relay", "history", "lago_api_url", "lago_api_key")
    actions = ("import_from_lago", "dry_run_import")

    @admin.display(description="phase history")
    def history(self, obj: ServicePhase) -> str:
        changes = PhaseChange.objects.filter(service_id=obj.service_id) if obj.pk else []
        rows = format_html_join("", "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>", (
            (f"{change.changed_at:%Y-%m-%d %H:%M}", change.from_phase, change.to_phase, change.actor, change.reason)
            for change in changes))
        return format_html("<table><tr><th>when</th><th>switch</th><th>who</th><th>why</th></tr>{}</table>", rows) \
            if changes else "—"

    @admin.display(description="event relay")
    def relay(self, obj: ServicePhase) -> str:
        status = relay_status(obj.service_id)
        return status.summary if status else "—"

    @admin.display(description="switch")
    def switch_link(self, obj: ServicePhase) -> str:
        if obj.pk is None:
            return "—"
        return format_html('<a class="button" href="{}">Switch phase…</a>',
                           reverse("admin:migration_servicephase_switch", args=[obj.pk]))

    def get_urls(self):
        return [path("<int:pk>/switch/", self.admin_site.admin_view(self.switch_view),
                     name="migration_servicephase_switch"), *super().get_urls()]

    def switch_view(self, request: HttpRequest, pk: int):
        """Switch a service's phase through `phase_switch` (the same guards as anywhere), with a required reason."""
        from .services import phase_switch

        if not self.has_change_permission(request):
            raise PermissionDenied
        phase = get_object_or_404(ServicePhase.objects.select_related("service"), pk=pk)
        form = PhaseSwitchForm(request.POST or None, initial={"to_phase": phase.phase})
        if request.method == "POST" and form.is_valid():
            try:
                phase_switch(service=phase.service, to_phase=form.cleaned_data["to_phase"],
                             reason=form.cleaned_data["reason"], actor=_actor(request))
            except (BillingError, LagoError) as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"{phase.service.code} is now {form.cleaned_data['to_phase']}.")
                return HttpResponseRedirect(reverse("admin:migration_servicephase_change", args=[pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "phase": phase, "title": f"Switch {phase.service.name}'s phase"}
        return TemplateResponse(request, "admin/migration/switch_phase.html", context)

    @admin.display(description="Lago API key")
    def masked_key(self, obj: ServicePhase) -> str:
        return f"{obj.lago_api_key[:4]}…" if obj.lago_api_key else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: ServicePhase | None = None):
        return (*self.readonly_fields, "service") if obj is not None else self.readonly_fields

    def _enqueue_import(self, request: HttpRequest, queryset, *, dry_run: bool) -> None:
        from .tasks import lago_import_task

        for phase in queryset.select_related("service"):
            if not (phase.lago_api_url and phase.lago_api_key):
                self.message_user(request, f"{phase.service.code}: set the Lago URL and API key first", messages.ERROR)
                continue
            transaction.on_commit(lambda pk=phase.service_id: lago_import_task.delay(pk, _actor(request), dry_run))
            self.message_user(request, f"{phase.service.code}: import {'(dry run) ' if dry_run else ''}started; "
                                       "see Import runs for progress and the closing table.")

    @admin.action(description="Import (or resume importing) from Lago")
    def import_from_lago(self, request: HttpRequest, queryset) -> None:
        self._enqueue_import(request, queryset, dry_run=False)

    @admin.action(description="Dry-run an import from Lago (writes nothing)")
    def dry_run_import(self, request: HttpRequest, queryset) -> None:
        self._enqueue_import(request, queryset, dry_run=True)


class ImportIssueInline(NexaTabularInline):
    model = ImportIssue
    fields = ("resource", "key", "outcome", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ImportRun)
class ImportRunAdmin(NexaModelAdmin):
    list_display = ("created_at", "service", "status", "dry_run", "resumed_count", "finished_at", "short_error")
    list_filter = ("status", "dry_run", "service")
    list_select_related = ("service",)
    inlines = (ImportIssueInline,)
    readonly_fields = ("service", "api_url", "dry_run", "status", "actor", "finished_at", "error", "resumed_count",
                       "closing_table")
    exclude = ("counts",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are started from the service's phase row or `manage.py lago_import`

    @admin.display(description="error")
    def short_error(self, obj: ImportRun) -> str:
        return obj.error[:120]

    @admin.display(description="closing table")
    def closing_table(self, obj: ImportRun) -> str:
        return format_html("<pre>{}</pre>", import_report(obj))


class RelayFailureInline(NexaTabularInline):
    model = RelayFailure
    fields = ("failed_at", "usage_event_id", "transaction_id", "error", "resolved_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RelayStream)
class RelayStreamAdmin(NexaModelAdmin):
    """The event relay to Lago during a dual run: lag, backlog and failures."""

    list_display = ("service", "short_error", "lag", "backlog", "events_delivered", "duplicates", "failures_count",
                    "last_delivered_at", "next_attempt_at", "opened_at", "closed_at")
    list_select_related = ("service",)
    list_filter = ("service",)
    inlines = (RelayFailureInline,)
    readonly_fields = [field.name for field in RelayStream._meta.fields] + ["lag", "backlog"]
    actions = ("deliver_now",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # opened and closed by phase switches

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: RelayStream) -> str:
        return obj.last_error[:120]

    @admin.display(description="lag")
    def lag(self, obj: RelayStream) -> str:
        status = relay_status(obj.service_id, stream=obj)
        return status.lag_text if status else "—"

    @admin.display(description="backlog (usage rows)")
    def backlog(self, obj: RelayStream) -> int:
        status = relay_status(obj.service_id, stream=obj)
        return status.backlog if status else 0

    @admin.display(description="failures")
    def failures_count(self, obj: RelayStream) -> int:
        return obj.failures.filter(resolved_at__isnull=True).count()

    @admin.action(description="Deliver now")
    def deliver_now(self, request: HttpRequest, queryset) -> None:
        from .services import relay_deliver

        for stream in queryset:
            result = relay_deliver(stream_id=stream.pk)
            level = messages.ERROR if result.error else messages.SUCCESS
            self.message_user(request, f"{stream.service.code}: {result.delivered} delivered, {result.failed} failed"
                                       + (f"; stopped: {result.error}" if result.error else ""), level)


def _cents(cents: int | None, currency: str) -> str:
    return money_display(cents, currency)


class ReconciliationLineInline(NexaTabularInline):
    model = ReconciliationLine
    fields = ("drill_down", "external_customer_id", "issuing_date", "matches", "hub_number", "lago_number",
              "hub_total", "lago_total")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).order_by("matches", "external_customer_id", "issuing_date")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="")
    def drill_down(self, obj: ReconciliationLine) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:migration_reconciliationline_change", args=[obj.pk]),
                           "match" if obj.matches else "DIFFERS")

    @admin.display(description="hub total")
    def hub_total(self, obj: ReconciliationLine) -> str:
        return _cents(obj.hub_total_amount_cents, obj.currency)

    @admin.display(description="Lago total")
    def lago_total(self, obj: ReconciliationLine) -> str:
        return _cents(obj.lago_total_amount_cents, obj.currency)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(NexaModelAdmin):
    """Per service and period: how many customers match Lago to the cent, with a drill-down to each pair."""

    list_display = ("summary_text", "status", "differences_count", "created_at", "actor", "short_error")
    list_filter = ("service", "period", "status")
    list_select_related = ("service",)
    inlines = (ReconciliationLineInline,)
    readonly_fields = ("service", "period", "status", "actor", "finished_at", "error", "customers_count",
                       "matching_count", "differing_count", "differences_count")
    actions = ("export_csv",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs come from `manage.py reconcile` and the daily pass of a dual run

    @admin.display(description="summary")
    def summary_text(self, obj: ReconciliationRun) -> str:
        return obj.summary

    @admin.display(description="error")
    def short_error(self, obj: ReconciliationRun) -> str:
        return obj.error[:120]

    @read_only_action
    @admin.action(description="Export the differences as CSV")
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        from .reconcile import reconciliation_csv

        response = HttpResponse(reconciliation_csv(queryset.select_related("service").order_by("service", "period")),
                                content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="reconciliation.csv"'
        return response


class ReconciliationDifferenceInline(NexaTabularInline):
    model = ReconciliationDifference
    fields = ("kind", "item", "hub_value", "lago_value", "delta_cents")
    readonly_fields = fields
    money_currency = "line.currency"
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReconciliationLine)
class ReconciliationLineAdmin(NexaModelAdmin):
    """One customer-period: its differences, then both sides as compared."""

    list_display = ("external_customer_id", "issuing_date", "matches", "hub_number", "lago_number", "run")
    list_filter = ("matches", "run__service", "run__period")
    search_fields = ("external_customer_id", "hub_number", "lago_number")
    raw_id_fields = ("hub_invoice",)
    inlines = (ReconciliationDifferenceInline,)
    readonly_fields = ("run", "external_customer_id", "issuing_date", "currency", "hub_invoice", "hub_number",
                       "lago_invoice_id", "lago_number", "hub_total_amount_cents", "lago_total_amount_cents", "matches",
                       "hub_view", "lago_view")
    exclude = ("hub_side", "lago_side")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="hub side")
    def hub_view(self, obj: ReconciliationLine) -> str:
        return _side_html(obj.hub_side, obj.currency)

    @admin.display(description="Lago side")
    def lago_view(self, obj: ReconciliationLine) -> str:
        return _side_html(obj.lago_side, obj.currency)


def _side_html(side: dict, currency: str) -> str:
    if not side:
        return "no invoice"
    fees = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                            ((fee["key"], fee["units"], _cents(fee["amount_cents"], currency)) for fee in side["fees"]))
    taxes = format_html_join("", "<tr><td>tax {}%</td><td></td><td>{}</td></tr>",
                             ((rate, _cents(cents, currency)) for rate, cents in side["taxes"].items()))
    return format_html("<p>{}</p><table><tr><th>fee</th><th>units</th><th>amount</th></tr>{}{}"
                       "<tr><td><strong>total</strong></td><td></td><td><strong>{}</strong></td></tr></table>",
                       side["number"], fees, taxes, _cents(side["total_amount_cents"], currency))

"""Admin: each service's migration phase (import action), import runs with their closing table and issues."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils.html import format_html

from .models import ImportIssue, ImportRun, ServicePhase
from .selectors import import_report


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


@admin.register(ServicePhase)
class ServicePhaseAdmin(admin.ModelAdmin):
    list_display = ("service", "phase", "changed_at", "lago_api_url", "masked_key")
    list_select_related = ("service",)
    readonly_fields = ("phase", "changed_at")
    fields = ("service", "phase", "changed_at", "lago_api_url", "lago_api_key")
    actions = ("import_from_lago", "dry_run_import")

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


class ImportIssueInline(admin.TabularInline):
    model = ImportIssue
    fields = ("resource", "key", "outcome", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
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

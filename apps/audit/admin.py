"""The audit in the admin: one global list with filters (table, object, what, who, when), and each audited object's
page links to its own trail. Read-only: the event tables are append-only in the database too."""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_kit import BoundedCountPaginator, ReadOnlyAdmin
from apps.core.money import money_display

from .models import AUDITED_MODELS, BEFORE, CHANGED, CREATED, DELETED, ApiLog, AuditEvent

HIDDEN_KEYS = {"updated_at", "created_at"}


class ObjectFilter(admin.SimpleListFilter):
    """`?obj=invoicing.Invoice:12`: one object's trail (the link on each audited object's page)."""

    title, parameter_name = "object", "obj"

    def lookups(self, request, model_admin):
        value = self.value()
        return ((value, value),) if value else ()

    def queryset(self, request, queryset):
        value = self.value()
        if not value or ":" not in value:
            return queryset
        label, pk = value.rsplit(":", 1)
        return queryset.filter(pgh_obj_model=label, pgh_obj_id=pk)


class TableFilter(admin.SimpleListFilter):
    title, parameter_name = "table", "table"

    def lookups(self, request, model_admin):
        return [(model._meta.label, model._meta.verbose_name_plural.capitalize()) for model in AUDITED_MODELS]

    def queryset(self, request, queryset):
        return queryset.filter(pgh_obj_model=self.value()) if self.value() else queryset


class WhatFilter(admin.SimpleListFilter):
    title, parameter_name = "what", "what"

    def lookups(self, request, model_admin):
        return ((CREATED, "Created"), (CHANGED, "Changed"), (DELETED, "Deleted"))

    def queryset(self, request, queryset):
        return queryset.filter(pgh_label=self.value()) if self.value() else queryset


class ManualFilter(admin.SimpleListFilter):
    title, parameter_name = "by", "by"

    def lookups(self, request, model_admin):
        return (("staff", "Staff, with a reason"), ("system", "The hub (API, tasks, close)"))

    def queryset(self, request, queryset):
        if self.value() == "staff":
            return queryset.filter(pgh_context__has_key="reason")
        if self.value() == "system":
            return queryset.exclude(pgh_context__has_key="reason")
        return queryset


def _label(key: str) -> str:
    return key.removesuffix("_id").removesuffix("_cents").replace("_", " ")


def _shown(key: str, value: Any, row: dict) -> str:
    if key.endswith("_cents") and isinstance(value, int):
        currency = row.get("currency") or row.get("amount_currency") or row.get("payment_currency") or ""
        return money_display(value, currency)
    return "—" if value in (None, "") else str(value)


class EventsPaginator(BoundedCountPaginator):
    """Pages of audit events read in two steps: which events (a cheap read), then those events whole.

    pghistory's events view is a union over every event table that also renders each row as JSON, looks up its
    previous event and diffs the two. Sorting that view by time and keeping 50 rendered every row first (9.0 s
    at 160,000 events, bench/admin.py). Asked only for the sort key and the slug, PostgreSQL drops the unused
    columns and their lookups (0.2 s); the page's events are then read by table and id, which prunes the union's
    other tables and reaches each row through its primary key (13 ms).
    """

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        slugs = list(self.object_list.values_list("pgh_slug", flat=True)[bottom:top])
        ids: dict[str, list[int]] = {}
        for slug in slugs:
            model, _, pk = slug.partition(":")
            ids.setdefault(model, []).append(int(pk))
        match = Q()
        for model, pks in ids.items():
            match |= Q(pgh_model=model, pgh_id__in=pks)
        events = {event.pgh_slug: event for event in self.object_list.filter(match)} if slugs else {}
        return self._get_page([events[slug] for slug in slugs if slug in events], number, self)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("when", "object_link", "what", "actor", "reason", "changes")
    list_filter = (ObjectFilter, TableFilter, WhatFilter, ManualFilter)
    list_per_page = 50
    show_full_result_count = False
    paginator = EventsPaginator
    search_fields = ("=pgh_obj_id",)
    date_hierarchy = None

    def get_queryset(self, request: HttpRequest):
        # pghistory's default manager is empty on purpose (dumpdata); `objects` is the union of the event tables.
        # A change is shown once, as its "changed" row; its "before" twin is read for the diff.
        return AuditEvent.objects.exclude(pgh_label=BEFORE).order_by("-pgh_created_at", "-pgh_id")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_staff and (
            request.user.is_superuser or request.user.has_perm("audit.view_auditevent"))

    @admin.display(description="when", ordering="pgh_created_at")
    def when(self, event: AuditEvent):
        return event.pgh_created_at

    @admin.display(description="object")
    def object_link(self, event: AuditEvent) -> str:
        app_label, _, model_name = event.pgh_obj_model.partition(".")
        name = f"{model_name} {event.pgh_data.get('number') or event.pgh_data.get('code') or event.pgh_obj_id}"
        try:
            url = reverse(f"admin:{app_label}_{model_name.lower()}_change", args=[event.pgh_obj_id])
        except NoReverseMatch:
            return name
        trail = reverse("admin:audit_auditevent_changelist") + f"?obj={event.pgh_obj_model}:{event.pgh_obj_id}"
        return format_html('<a href="{}">{}</a> · <a href="{}">trail</a>', url, name, trail)

    @admin.display(description="what")
    def what(self, event: AuditEvent) -> str:
        return (event.pgh_context or {}).get("action") or event.pgh_label

    @admin.display(description="who")
    def actor(self, event: AuditEvent) -> str:
        context = event.pgh_context or {}
        if context.get("actor"):
            return context["actor"]
        if context.get("user"):
            user = get_user_model().objects.filter(pk=context["user"]).values_list("username", flat=True).first()
            return user or f"user {context['user']}"
        return "the hub" + (f" ({context['url']})" if context.get("url") else "")

    @admin.display(description="reason")
    def reason(self, event: AuditEvent) -> str:
        return (event.pgh_context or {}).get("reason") or "—"

    @admin.display(description="before → after")
    def changes(self, event: AuditEvent) -> str:
        after = event.pgh_data or {}
        if event.pgh_label == CHANGED:
            # The "before" row of the same update: same table and object, the event just before this one.
            before = (AuditEvent.objects.across(apps.get_model(event.pgh_model))
                      .filter(pgh_obj_id=event.pgh_obj_id, pgh_label=BEFORE, pgh_id__lt=event.pgh_id)
                      .order_by("-pgh_id").values_list("pgh_data", flat=True).first()) or {}
            rows = [(_label(key), _shown(key, before.get(key), before), _shown(key, value, after))
                    for key, value in after.items()
                    if key not in HIDDEN_KEYS and key in before and before.get(key) != value]
            return format_html_join("", "<div><b>{}</b>: {} → {}</div>", rows) or "—"
        keys = [key for key in after if key.endswith("_cents") or key in ("status", "number", "code", "rate")]
        rows = [(_label(key), _shown(key, after[key], after)) for key in keys]
        return format_html_join("", "<div><b>{}</b>: {}</div>", rows) or event.pgh_label


@admin.register(ApiLog)
class ApiLogAdmin(ReadOnlyAdmin):
    """The services' write requests (GET /api_logs), newest first: what a service sent and how the hub answered."""

    list_display = ("logged_at", "service", "http_method", "request_path", "http_status", "client", "request_id")
    list_filter = ("service", "http_method", "http_status")
    list_select_related = ("service",)
    search_fields = ("request_id", "request_path")
    readonly_fields = ("request_id", "service", "api_key_prefix", "api_version", "http_method", "request_path",
                       "request_origin", "client", "http_status", "request_body", "logged_at", "created_at")
    show_full_result_count = False
    paginator = BoundedCountPaginator
    ordering = ("-logged_at", "-id")

"""The staff's admin site: django-unfold's site with Nexa's navigation, and dj-stripe's mirror for superusers only."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from unfold.sites import UnfoldAdminSite

# dj-stripe registers ~45 models of its Stripe mirror; staff read Stripe through the hub's payment pages.
STRIPE_MIRROR_APP = "djstripe"


class SuperuserOnlyMixin:
    """Every page and action of a model hidden and refused (403) for anyone but a superuser."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_delete_permission(request, obj)


class NexaAdminSite(UnfoldAdminSite):
    site_header = site_title = "Nexa Billing"
    index_title = "Billing hub"

    def register(self, model_or_iterable, admin_class=None, **options):
        models = [model_or_iterable] if isinstance(model_or_iterable, type) else list(model_or_iterable)
        if models and all(model._meta.app_label == STRIPE_MIRROR_APP for model in models):
            base = admin_class or admin.ModelAdmin
            admin_class = type(f"SuperuserOnly{base.__name__}", (SuperuserOnlyMixin, base), {})
        return super().register(model_or_iterable, admin_class, **options)


# Sidebar sections: the hub's apps in the order staff work through them; the Stripe mirror last.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customers and billing", ("customers", "subscriptions", "invoicing", "payments")),
    ("Catalog and usage", ("catalog", "usage")),
    ("Queues and checks", ("webhooks", "ledger", "integrity")),
    ("Audit", ("audit",)),
    ("Migration from Lago", ("migration",)),
    ("Staff and schedule", ("auth", "django_celery_beat")),
    ("Stripe mirror", (STRIPE_MIRROR_APP,)),
)


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    """The sidebar from what this user may see (the site's own permission checks), grouped in staff's sections."""
    site = admin.site
    by_label = {app["app_label"]: app for app in site.get_app_list(request)}
    home = [{"title": "Dashboard", "icon": "dashboard", "link": reverse("admin:index")}]
    if request.user.has_perm("invoicing.view_invoice"):
        home.append({"title": "Exports", "icon": "download", "link": reverse("admin:invoicing_invoice_exports")})
    if request.user.has_perm("invoicing.change_invoice"):
        home.append({"title": "Run a close", "icon": "play_circle", "link": reverse("admin:invoicing_closerun_run")})
    groups: list[dict[str, Any]] = [{"title": "Nexa Billing", "items": home}]
    placed: set[str] = set()
    for title, labels in SECTIONS:
        items = []
        for label in labels:
            placed.add(label)
            for model in by_label.get(label, {}).get("models", ()):
                if model.get("admin_url"):
                    items.append({"title": model["name"], "link": model["admin_url"]})
        if items:
            groups.append({"title": title, "collapsible": True, "items": items})
    rest = [model for label, app in by_label.items() if label not in placed for model in app["models"]
            if model.get("admin_url")]
    if rest:
        groups.append({"title": "Other", "collapsible": True,
                       "items": [{"title": model["name"], "link": model["admin_url"]} for model in rest]})
    return groups


def environment_badge(request: HttpRequest) -> list[str] | None:
    """A badge in the header that says which Stripe mode this hub runs in (staff must never confuse the two)."""
    from django.conf import settings

    return ["Stripe live", "danger"] if settings.STRIPE_LIVE_MODE else ["Stripe test mode", "warning"]

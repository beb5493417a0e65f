"""Subscriptions in the admin: created and changed through `subscription_create`, exactly as the API does.

An admin "add" starts the subscription (or schedules it), records `subscription.started` and bills it when due; a
plan change follows Lago's upgrade (at once) and downgrade (at period end) rules and never takes another service's
plan. Everything else on a subscription is the services' to write: the page shows it read-only.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from apps.catalog.models import Plan
from apps.core.admin_kit import ServiceForm, ServiceFormAdmin, confirm_with_reason
from apps.core.exceptions import BillingError

from .models import Subscription
from .services import SubscriptionRequest, subscription_create, subscription_terminate, subscription_update


def _plan_of_service(form: forms.ModelForm, plan: Plan | None, service_id: int | None) -> None:
    if plan is not None and service_id is not None and plan.service_id != service_id:
        form.add_error("plan", "This plan belongs to another service: a subscription takes its own service's plans.")


class SubscriptionAddForm(ServiceForm):
    """The API's POST /subscriptions: a customer's account with a service, one of that service's plans."""

    class Meta:
        model = Subscription
        fields = ("account_link", "plan", "external_id", "name", "billing_time", "subscription_at", "ending_at")
        help_texts = {
            "account_link": "The customer as the service knows them (the service is the link's).",
            "subscription_at": "Leave empty to start now; a later date schedules it (pending until then).",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(deleted_at__isnull=True).select_related("service")
        self.fields["subscription_at"].required = False

    def clean(self):
        data = super().clean()
        link = data.get("account_link")
        _plan_of_service(self, data.get("plan"), link.service_id if link else None)
        start, end = data.get("subscription_at"), data.get("ending_at")
        if start and end and end <= start:
            self.add_error("ending_at", "invalid_date")
        return data

    def write(self) -> Subscription:
        data, link = self.cleaned_data, self.cleaned_data["account_link"]
        return subscription_create(service=link.service, request=SubscriptionRequest(
            external_id=data["external_id"], external_customer_id=link.external_id, plan=data["plan"],
            name=data.get("name") or "", billing_time=data["billing_time"],
            subscription_at=data.get("subscription_at"), ending_at=data.get("ending_at"),
        ))


class SubscriptionChangeForm(ServiceForm):
    """A plan change is the API's create with the same external id (Lago's upgrade/downgrade); name and ending
    date are the API's update."""

    class Meta:
        model = Subscription
        fields = ("plan", "name", "ending_at")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(deleted_at__isnull=True, service_id=self.instance.service_id)
        self.fields["plan"].help_text = ("A dearer plan (per year) applies at once and bills now; a cheaper one "
                                         "starts at the end of the current period.")

    def clean(self):
        data = super().clean()
        _plan_of_service(self, data.get("plan"), self.instance.service_id)
        return data

    def write(self) -> Subscription:
        data = self.cleaned_data
        # The instance already carries the form's values; read the stored row to know what changes.
        current = Subscription.objects.select_related("account_link", "service", "plan").get(pk=self.instance.pk)
        values = {field: data[field] for field in ("name", "ending_at") if data.get(field) != getattr(current, field)}
        result = current
        if values:
            result = subscription_update(subscription=current, values=values)
        if data["plan"].pk != current.plan_id:
            if current.status not in (Subscription.Status.ACTIVE, Subscription.Status.PENDING):
                raise BillingError(f"a {current.status} subscription keeps its plan", code="not_allowed")
            result = subscription_create(service=current.service, request=SubscriptionRequest(
                external_id=current.external_id, external_customer_id=current.account_link.external_id,
                plan=data["plan"], name=data.get("name") or current.name,
            ))
        return result


@admin.register(Subscription)
class SubscriptionAdmin(ServiceFormAdmin):
    list_display = ("external_id", "service", "customer", "plan", "status", "billing_time", "started_at", "terminated_at")
    list_filter = ("status", "service", "billing_time", "plan__interval")
    search_fields = ("external_id", "customer__external_id", "customer__legal_name", "plan__code")
    list_select_related = ("service", "customer", "plan")
    autocomplete_fields = ("account_link",)
    actions = ("terminate",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = SubscriptionChangeForm if obj is not None else SubscriptionAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(SubscriptionAddForm.Meta.fields)
        if not self.has_change_permission(request, obj):
            return self.get_readonly_fields(request, obj)
        return ["plan", "name", "ending_at", *self.get_readonly_fields(request, obj)]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        shown = ["service", "customer_link", "external_id", "status", "billing_time", "subscription_at",
                 "activates_at", "started_at", "terminated_at", "canceled_at", "previous_subscription",
                 "usage_billed_until", "lago_id", "created_at", "audit_trail"]
        if not self.has_change_permission(request, obj):
            return ["plan", "name", "ending_at", *shown]
        return shown

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status not in (Subscription.Status.ACTIVE, Subscription.Status.PENDING):
            return False  # terminated and canceled subscriptions are history
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # billed history: terminate instead

    @admin.display(description="customer")
    def customer_link(self, obj: Subscription) -> str:
        from django.urls import reverse

        url = reverse("admin:customers_customer_change", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a> (known to {} as {})', url, obj.customer, obj.service,
                           obj.account_link.external_id)

    @admin.action(description="Terminate selected subscriptions now", permissions=["change"])
    def terminate(self, request, queryset):
        def run(reason: str) -> None:
            for subscription_id in queryset.values_list("pk", flat=True):
                try:
                    subscription_terminate(subscription_id=subscription_id)
                except BillingError as exc:
                    self.message_user(request, f"subscription {subscription_id}: {exc}", messages.ERROR)

        return confirm_with_reason(self, request, queryset, action="terminate", verb="Terminate", run=run,
                                   question="Terminate these subscriptions now? The customer is billed to date.")

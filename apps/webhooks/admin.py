from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html

from apps.core.admin_kit import NexaModelAdmin, NexaTabularInline, confirm_with_reason

from .destinations import DestinationRefused, DestinationUnresolved, destination_resolve
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .services import webhook_delivery_resend, webhook_endpoint_send_test


def _pretty(body: bytes) -> str:
    try:
        return json.dumps(json.loads(bytes(body)), indent=2, ensure_ascii=False)
    except ValueError:
        return bytes(body).decode("utf-8", "replace")


class WebhookEndpointForm(forms.ModelForm):
    """Staff registering or editing an endpoint meet the API's destination rule (issue 17): no loopback, private,
    link-local or the hub's own addresses, unless WEBHOOK_ALLOWED_HOSTS lists the host."""

    class Meta:
        model = WebhookEndpoint
        fields = "__all__"

    def clean_webhook_url(self):
        url = self.cleaned_data["webhook_url"]
        try:
            destination_resolve(url)
        except DestinationUnresolved:
            pass  # perhaps only for now; every send checks again, as for the API
        except DestinationRefused:
            raise forms.ValidationError("This URL resolves to an address webhooks may not reach (url_not_allowed).")
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(NexaModelAdmin):
    form = WebhookEndpointForm
    list_display = ("webhook_url", "service", "name", "active", "event_types", "deleted_at", "created_at")
    list_filter = ("active", "service")
    search_fields = ("webhook_url", "name")
    readonly_fields = ("lago_id", "signing_secret", "deleted_at", "created_at", "updated_at")
    actions = ("send_test_event",)

    @admin.action(description="Send a test event (webhook_endpoint.test) to the selected endpoints")
    def send_test_event(self, request, queryset):
        for endpoint_id in queryset.values_list("pk", flat=True):
            event = webhook_endpoint_send_test(endpoint_id=endpoint_id)
            self.message_user(request, f"Test event {event.event_id} queued; see its delivery for the result.")


class WebhookAttemptInline(NexaTabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "status_code", "duration_ms", "succeeded", "error", "response_excerpt")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class FailingFilter(admin.SimpleListFilter):
    title, parameter_name = "failing", "failing"

    def lookups(self, request, model_admin):
        return (("yes", "Failing (failed or retrying)"), ("no", "Not failing"))

    def queryset(self, request, queryset):
        failing = Q(status__in=(WebhookDelivery.Status.FAILED, WebhookDelivery.Status.RETRYING))
        if self.value() == "yes":
            return queryset.filter(failing)
        if self.value() == "no":
            return queryset.exclude(failing)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(NexaModelAdmin):
    # The error first: a failure queue is read for why.
    list_display = ("last_error", "pk", "event_type", "service", "endpoint", "status", "attempts", "next_attempt_at",
                    "created_at")
    list_filter = (FailingFilter, "status", "event__service", "event__event_type")
    list_select_related = ("event__service", "endpoint")
    search_fields = ("event__event_id", "event__object_id", "endpoint__webhook_url")
    raw_id_fields = ("event", "endpoint")
    show_full_result_count = False
    inlines = (WebhookAttemptInline,)
    actions = ("resend",)
    fields = (
        "event", "endpoint", "status", "attempts", "next_attempt_at", "claimed_at", "succeeded_at", "last_error",
        "event_id", "payload", "created_at",
    )

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)  # the resend action; pages read-only

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="type", ordering="event__event_type")
    def event_type(self, obj):
        return obj.event.event_type

    @admin.display(description="service", ordering="event__service")
    def service(self, obj):
        return obj.event.service

    @admin.display(description="event id")
    def event_id(self, obj):
        return obj.event.event_id

    @admin.display(description="payload (exact body sent)")
    def payload(self, obj):
        return format_html("<pre>{}</pre>", _pretty(obj.event.body))

    @admin.action(description="Force a resend of selected deliveries (fresh attempt budget)", permissions=["change"])
    def resend(self, request, queryset):
        def run(reason: str) -> None:
            done = sum(webhook_delivery_resend(delivery_id=pk) for pk in queryset.values_list("pk", flat=True))
            skipped = queryset.count() - done
            self.message_user(request, f"{done} deliveries queued again.")
            if skipped:
                self.message_user(request, f"{skipped} skipped: still pending, sending or retrying.", messages.WARNING)

        return confirm_with_reason(self, request, queryset, action="resend", verb="Resend now", run=run,
                                   question="Send these webhook deliveries again now?")


@admin.register(WebhookEvent)
class WebhookEventAdmin(NexaModelAdmin):
    list_display = ("event_id", "event_type", "service", "object_id", "created_at")
    list_filter = ("event_type", "service")
    search_fields = ("event_id", "object_id")
    show_full_result_count = False
    fields = ("event_id", "event_type", "object_type", "object_id", "service", "payload", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # immutable: viewable, never edited

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="payload (exact body sent)")
    def payload(self, obj):
        return format_html("<pre>{}</pre>", _pretty(obj.body))

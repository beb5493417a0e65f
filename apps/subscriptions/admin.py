from __future__ import annotations

from django.contrib import admin

from apps.core.admin_kit import NexaModelAdmin

from .models import Subscription
from .services import subscription_terminate


@admin.register(Subscription)
class SubscriptionAdmin(NexaModelAdmin):
    list_display = ("external_id", "service", "customer", "plan", "status", "billing_time", "started_at", "terminated_at")
    list_filter = ("status", "service", "billing_time", "plan__interval")
    search_fields = ("external_id", "customer__external_id", "customer__legal_name", "plan__code")
    list_select_related = ("service", "customer", "plan")
    raw_id_fields = ("account_link", "customer", "plan", "previous_subscription")
    readonly_fields = ("lago_id", "status", "started_at", "terminated_at", "canceled_at", "created_at", "updated_at")
    actions = ("terminate",)

    @admin.action(description="Terminate selected subscriptions now")
    def terminate(self, request, queryset):
        for subscription_id in queryset.values_list("pk", flat=True):
            subscription_terminate(subscription_id=subscription_id)

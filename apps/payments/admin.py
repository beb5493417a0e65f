from __future__ import annotations

from django.contrib import admin, messages

from apps.core.admin_kit import ReadOnlyAdmin as BaseReadOnlyAdmin
from apps.core.admin_kit import confirm_with_reason
from apps.core.exceptions import BillingError

from . import services
from .models import Payment, PaymentAttempt, ProcessedStripeEvent, Refund, StripeCustomer
from .stripe_gateway import StripeGatewayError


class ReadOnlyAdmin(BaseReadOnlyAdmin):
    show_full_result_count = False
    readonly_fields = ("audit_trail",)


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    # The failure first: the failing-payments queue is read for why.
    list_display = (
        "failure_message", "failure_code", "invoice", "attempt_number", "kind", "status", "amount_cents",
        "stripe_payment_intent_id", "next_retry_at", "created_at",
    )
    list_filter = ("status", "kind", "currency")
    list_select_related = ("invoice",)
    search_fields = ("invoice__number", "stripe_payment_intent_id", "stripe_checkout_session_id", "stripe_customer_id")
    raw_id_fields = ("invoice",)
    actions = ("retry_now",)

    @admin.action(description="Force a retry of the payment of these invoices now")
    def retry_now(self, request, queryset):
        def run(reason: str) -> None:
            for attempt in queryset.select_related("invoice"):
                try:
                    services.payment_retry(invoice=attempt.invoice)
                except (BillingError, StripeGatewayError) as exc:
                    self.message_user(request, f"{attempt.invoice}: {exc}", messages.ERROR)

        return confirm_with_reason(self, request, queryset, action="retry_now", verb="Retry the payments", run=run,
                                   question="Charge the customers' saved payment methods for these invoices now?")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("invoice", "amount_cents", "currency", "stripe_payment_intent_id", "stripe_charge_id", "paid_at")
    list_filter = ("currency",)
    list_select_related = ("invoice",)
    search_fields = ("invoice__number", "stripe_payment_intent_id", "stripe_charge_id")
    raw_id_fields = ("invoice", "attempt")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("credit_note", "customer_credit", "amount_cents", "currency", "status", "stripe_refund_id",
                    "failure_message", "refunded_at")
    list_filter = ("status",)
    list_select_related = ("credit_note", "customer_credit")
    search_fields = ("credit_note__number", "stripe_refund_id")
    raw_id_fields = ("credit_note", "customer_credit", "payment")
    actions = ("refund_again",)

    @admin.action(description="Send these refunds to Stripe again (failed ones)")
    def refund_again(self, request, queryset):
        return confirm_with_reason(self, request, queryset, action="refund_again", verb="Send again",
                                   question="Send these refunds to Stripe again?",
                                   run=lambda reason: self._refund_again(request, queryset))

    def _refund_again(self, request, queryset) -> None:
        for refund in queryset:
            if refund.credit_note_id is None:
                # A refused overpayment refund left the money as available credit (consumed by the next invoices).
                self.message_user(request, f"{refund}: kept as customer credit, not sent again", messages.WARNING)
                continue
            try:
                services.credit_note_refund(credit_note_id=refund.credit_note_id)
            except (BillingError, StripeGatewayError) as exc:
                self.message_user(request, f"{refund.credit_note}: {exc}", messages.ERROR)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ("customer", "stripe_customer_id", "default_payment_method_id", "payment_method_saved_at", "created_at")
    list_select_related = ("customer",)
    search_fields = ("customer__external_id", "customer__name", "stripe_customer_id")
    raw_id_fields = ("customer",)


@admin.register(ProcessedStripeEvent)
class ProcessedStripeEventAdmin(ReadOnlyAdmin):
    list_display = ("stripe_event_id", "event_type", "processed_at")
    list_filter = ("event_type",)
    search_fields = ("stripe_event_id",)

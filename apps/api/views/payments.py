"""Stripe payment routes in Lago's shape: checkout links and payment retries."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.selectors import account_link_get
from apps.payments.selectors import invoice_get_for_service
from apps.payments.services import checkout_url_generate, invoice_payment_url, payment_retry

from ..openapi import lago_operation


class CheckoutUrlView(APIView):
    @lago_operation("generateCustomerCheckoutURL", response="CustomerCheckoutUrl", root="customer",
                    summary="Stripe Checkout link that saves the customer's card")
    def post(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        url = checkout_url_generate(customer=link.customer)
        return Response(
            {
                "customer": {
                    # The caller's own id of the customer (its account link), never the hub-wide one.
                    "lago_customer_id": str(link.lago_id),
                    "external_customer_id": link.external_id,
                    "payment_provider": "stripe",
                    "payment_provider_code": "stripe",
                    "checkout_url": url,
                }
            }
        )


class RetryPaymentView(APIView):
    @lago_operation("retryPayment", response=None, summary="Retry collecting the invoice now (empty 200 like Lago)")
    def post(self, request, lago_id: str):
        invoice = invoice_get_for_service(service=request.auth.service, lago_id=lago_id)
        payment_retry(invoice=invoice)
        return Response(status=200)


class PaymentUrlView(APIView):
    @lago_operation("generateInvoicePaymentUrl", response="InvoicePaymentDetails", root="invoice_payment_details",
                    summary="Stripe Checkout link paying the invoice's amount due")
    def post(self, request, lago_id: str):
        invoice = invoice_get_for_service(service=request.auth.service, lago_id=lago_id)
        url = invoice_payment_url(invoice=invoice)
        link = invoice.customer.account_links.filter(service=request.auth.service, deleted_at__isnull=True).first()
        return Response(
            {
                "invoice_payment_details": {
                    # The caller's own ids of the customer (its account link), never the hub-wide one.
                    "lago_customer_id": str(link.lago_id) if link else None,
                    "lago_invoice_id": str(invoice.lago_id),
                    "external_customer_id": link.external_id if link else None,
                    "payment_provider": "stripe",
                    "payment_url": url,
                }
            }
        )


urlpatterns = [
    path("customers/<str:external_id>/checkout_url", CheckoutUrlView.as_view()),
    path("invoices/<str:lago_id>/retry_payment", RetryPaymentView.as_view()),
    path("invoices/<str:lago_id>/payment_url", PaymentUrlView.as_view()),
]

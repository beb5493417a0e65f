"""Payments in Lago's shape: Stripe checkout links and retries; payments (Stripe's and manual) and their receipts."""
from __future__ import annotations

from datetime import UTC, datetime

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import NotFound, ValidationFailed
from apps.customers.selectors import account_link_get
from apps.invoicing.selectors import invoice_get, invoice_list
from apps.payments.portal import portal_url
from apps.payments.models import StripeCustomer
from apps.payments.representations import payment_method_out, payment_out, payment_receipt_out, payment_request_out
from apps.payments.selectors import (
    invoice_get_for_service,
    payment_get,
    payment_method_get,
    payment_method_list,
    payment_list,
    payment_receipt_get,
    payment_receipt_list,
    payment_request_get,
    payment_request_list,
)
from apps.payments.services import (
    checkout_url_generate,
    invoice_payment_url,
    payment_manual_create,
    payment_method_default_set,
    payment_method_remove,
    payment_request_create,
    payment_retry,
)

from ..openapi import lago_operation, query, ref
from ..pagination import paginate, paginate_list
from ..serializers.common import root_payload


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


class PortalUrlView(APIView):
    @lago_operation("getCustomerPortalUrl", response="CustomerPortalUrl", root="customer",
                    description="A signed link to the hub's customer portal, valid CUSTOMER_PORTAL_MAX_AGE_SECONDS: the "
                                "customer's invoices from this service, their PDFs, and Stripe Checkout for what is due.")
    def get(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        return Response({"customer": {"portal_url": portal_url(link)}})


def _default_id(customer) -> str:
    account = StripeCustomer.objects.filter(customer=customer).first()
    return account.default_payment_method_id if account else ""


class PaymentMethodListView(APIView):
    @lago_operation("findAllCustomersPaymentMethods", response="PaymentMethod", plural="payment_methods",
                    description="The customer's saved Stripe payment methods (dj-stripe's mirror), oldest first.")
    def get(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        default = _default_id(link.customer)
        methods = payment_method_list(customer=link.customer)
        return Response(paginate_list(request, methods, "payment_methods",
                                      lambda items: [payment_method_out(m, default_id=default) for m in items]))


class PaymentMethodDetailView(APIView):
    @lago_operation("destroyPaymentMethod", response="PaymentMethod", root="payment_method",
                    description="Detach the payment method at Stripe: it is never charged again; when it was the "
                                "default, invoices are paid through Checkout links until another is set.")
    def delete(self, request, external_id: str, lago_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        method = payment_method_get(customer=link.customer, lago_id=lago_id)
        payment_method_remove(customer=link.customer, payment_method_id=method.id)
        return Response({"payment_method": payment_method_out(method, default_id="")})


class PaymentMethodDefaultView(APIView):
    @lago_operation("paymentMethodSetAsDefault", response="PaymentMethod", root="payment_method",
                    description="The payment method invoices are charged to from now on (Stripe's default too).")
    def put(self, request, external_id: str, lago_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        method = payment_method_get(customer=link.customer, lago_id=lago_id)
        account = payment_method_default_set(customer=link.customer, payment_method_id=method.id)
        return Response({"payment_method": payment_method_out(method, default_id=account.default_payment_method_id)})


PAYMENT_REQUEST_FILTERS = [query("payment_status", enum=["pending", "succeeded", "failed"]),
                           query("currency", description="ISO 4217 code.")]


def payment_requests_page(request, external_customer_id: str | None) -> dict:
    params = request.query_params
    status = params.get("payment_status") or None
    if status not in (None, "pending", "succeeded", "failed"):
        raise ValidationFailed("bad payment_status", details={"payment_status": ["value_is_invalid"]})
    rows = payment_request_list(service=request.auth.service, external_customer_id=external_customer_id,
                                payment_status=status, currency=(params.get("currency") or "").upper() or None)
    return paginate(request, rows, "payment_requests", lambda items: [payment_request_out(r) for r in items])


class PaymentRequestListCreateView(APIView):
    @lago_operation("findAllPaymentRequests", response="PaymentRequest", plural="payment_requests",
                    parameters=[query("external_customer_id"), *PAYMENT_REQUEST_FILTERS])
    def get(self, request):
        return Response(payment_requests_page(request, request.query_params.get("external_customer_id") or None))

    @lago_operation("createPaymentRequest", request=ref("PaymentRequestBody"), response="PaymentRequest",
                    root="payment_request",
                    description="Group the customer's overdue invoices into one Stripe payment (a Checkout link, "
                                "`payment_url`). 405 `invoices_not_overdue` / `invoices_have_different_currencies` as "
                                "Lago. Paid, each invoice is settled once with what it owed when asked.")
    def post(self, request):
        data = root_payload(request, "payment_request")
        errors = {}
        if not isinstance(data.get("external_customer_id"), str) or not data.get("external_customer_id"):
            errors["external_customer_id"] = ["value_is_mandatory"]
        ids = data.get("lago_invoice_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            errors["lago_invoice_ids"] = ["value_is_mandatory"]
        email = data.get("email")
        if email is not None and not isinstance(email, str):
            errors["email"] = ["invalid_format"]
        if errors:
            raise ValidationFailed("bad payment request", details=errors)
        service = request.auth.service
        link = account_link_get(service=service, external_id=data["external_customer_id"])
        invoices = [invoice for invoice in invoice_list(service=service, external_customer_id=link.external_id)
                    if str(invoice.lago_id) in set(ids)]
        if not invoices:
            raise NotFound("invoice")
        created = payment_request_create(link=link, invoices=invoices, email=email or "")
        return Response({"payment_request": payment_request_out(created)})


class PaymentRequestDetailView(APIView):
    @lago_operation("findPaymentRequest", response="PaymentRequest", root="payment_request")
    def get(self, request, lago_id: str):
        found = payment_request_get(service=request.auth.service, lago_id=lago_id)
        return Response({"payment_request": payment_request_out(found)})


class CustomerPaymentRequestListView(APIView):
    @lago_operation("findAllCustomerPaymentRequests", response="PaymentRequest", plural="payment_requests",
                    parameters=PAYMENT_REQUEST_FILTERS)
    def get(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        return Response(payment_requests_page(request, link.external_id))


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


def _paid_at(raw) -> datetime | None:
    """Lago's `paid_at`: a date (`2025-02-20`, midnight UTC) or an ISO 8601 date-time; 422 `invalid_date` else."""
    if raw in (None, ""):
        return None
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("bad paid_at", details={"paid_at": ["invalid_date"]}) from None
    if not 1970 <= value.year <= 9998:
        raise ValidationFailed("bad paid_at", details={"paid_at": ["invalid_date"]})
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _manual_payment_in(data: dict) -> tuple[str, int, str, datetime | None]:
    """Lago's checks, in its order (`payments/manual_create_service.rb`), with its error codes."""
    invoice_id = data.get("invoice_id")
    if not isinstance(invoice_id, str) or not invoice_id:
        raise ValidationFailed("invoice_id", details={"invoice_id": ["value_is_mandatory"]})
    amount = data.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < 2**63:
        raise ValidationFailed("amount_cents", details={"amount_cents": ["invalid_value"]})
    reference = data.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise ValidationFailed("reference", details={"reference": ["value_is_mandatory"]})
    if len(reference) > 40:
        raise ValidationFailed("reference", details={"reference": ["value_is_too_long"]})
    return invoice_id, amount, reference, _paid_at(data.get("paid_at"))


def payments_page(request, external_customer_id: str | None) -> dict:
    service = request.auth.service
    rows = payment_list(service=service, external_customer_id=external_customer_id,
                        invoice_id=request.query_params.get("invoice_id") or None)
    return paginate(request, rows, "payments", lambda items: [payment_out(p, service=service) for p in items])


class PaymentListCreateView(APIView):
    @lago_operation("findAllPayments", response="Payment", plural="payments",
                    parameters=[query("external_customer_id"), query("invoice_id", description="The invoice's lago_id.")],
                    description="Payments of the service's invoices, Stripe's and manual ones, newest first.")
    def get(self, request):
        return Response(payments_page(request, request.query_params.get("external_customer_id") or None))

    @lago_operation("createPayment", request=ref("PaymentBody"), response="Payment", root="payment",
                    description="A manual payment (cheque, wire) on a finalized invoice: it pays the invoice in part or "
                                "in full, through the same path as Stripe's money (receipt, Odoo posting, webhook). "
                                "More than the invoice still owes is refused (422 `amount_cents: greater_than`).")
    def post(self, request):
        invoice_id, amount, reference, paid_at = _manual_payment_in(root_payload(request, "payment"))
        invoice = invoice_get(service=request.auth.service, lago_id=invoice_id)
        payment = payment_manual_create(invoice_id=invoice.pk, amount_cents=amount, reference=reference, paid_at=paid_at)
        return Response({"payment": payment_out(payment, service=request.auth.service)})


class PaymentDetailView(APIView):
    @lago_operation("findPayment", response="Payment", root="payment")
    def get(self, request, lago_id: str):
        payment = payment_get(service=request.auth.service, lago_id=lago_id)
        return Response({"payment": payment_out(payment, service=request.auth.service)})


class CustomerPaymentListView(APIView):
    @lago_operation("findAllCustomerPayments", response="Payment", plural="payments",
                    parameters=[query("invoice_id", description="The invoice's lago_id.")])
    def get(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)  # 404 customer_not_found
        return Response(payments_page(request, link.external_id))


class PaymentReceiptListView(APIView):
    @lago_operation("findAllPaymentReceipts", response="PaymentReceipt", plural="payment_receipts",
                    parameters=[query("invoice_id", description="The invoice's lago_id.")],
                    description="One receipt per payment, numbered when the payment is recorded.")
    def get(self, request):
        service = request.auth.service
        rows = payment_receipt_list(service=service, invoice_id=request.query_params.get("invoice_id") or None)
        return Response(paginate(request, rows, "payment_receipts",
                                 lambda items: [payment_receipt_out(r, service=service) for r in items]))


class PaymentReceiptDetailView(APIView):
    @lago_operation("findPaymentReceipt", response="PaymentReceipt", root="payment_receipt")
    def get(self, request, lago_id: str):
        receipt = payment_receipt_get(service=request.auth.service, lago_id=lago_id)
        return Response({"payment_receipt": payment_receipt_out(receipt, service=request.auth.service)})


urlpatterns = [
    path("payments", PaymentListCreateView.as_view()),
    path("payments/<str:lago_id>", PaymentDetailView.as_view()),
    path("payment_receipts", PaymentReceiptListView.as_view()),
    path("payment_requests", PaymentRequestListCreateView.as_view()),
    path("payment_requests/<str:lago_id>", PaymentRequestDetailView.as_view()),
    path("customers/<str:external_id>/payment_requests", CustomerPaymentRequestListView.as_view()),
    path("payment_receipts/<str:lago_id>", PaymentReceiptDetailView.as_view()),
    path("customers/<str:external_id>/payments", CustomerPaymentListView.as_view()),
    path("customers/<str:external_id>/checkout_url", CheckoutUrlView.as_view()),
    path("customers/<str:external_id>/portal_url", PortalUrlView.as_view()),
    path("customers/<str:external_id>/payment_methods", PaymentMethodListView.as_view()),
    path("customers/<str:external_id>/payment_methods/<str:lago_id>", PaymentMethodDetailView.as_view()),
    path("customers/<str:external_id>/payment_methods/<str:lago_id>/set_as_default", PaymentMethodDefaultView.as_view()),
    path("invoices/<str:lago_id>/retry_payment", RetryPaymentView.as_view()),
    path("invoices/<str:lago_id>/payment_url", PaymentUrlView.as_view()),
]

"""Invoices, credit notes and current usage (Lago paths); thin views over apps.invoicing."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core import signing
from django.db.models import Prefetch
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.models import Charge
from apps.core.exceptions import NotAllowed, NotFound, ValidationFailed
from apps.customers.selectors import account_link_get
from apps.invoicing.close import current_usage_lines, invoice_refresh
from apps.invoicing.close.preview import CouponIn, customer_invoice_preview, preview_coupons
from apps.invoicing.fees import customer_tax_rates, fee_taxes
from apps.invoicing.models import CreditNote, Invoice
from apps.invoicing.pdf import (
    credit_note_from_pdf_token,
    credit_note_pdf,
    invoice_from_pdf_token,
    invoice_pdf,
    invoice_pdf_token,
)
from apps.invoicing.projection import project_lines, projection_ratio
from apps.invoicing.representations import (
    billing_entity_code,
    credit_note_out,
    credit_note_taxes,
    credit_note_taxes_rate,
    customer_usage_out,
    invoice_out,
    projected_usage_out,
    tax_refs,
)
from apps.invoicing.selectors import credit_note_get, credit_note_list, invoice_get, invoice_list
from apps.invoicing.services import (
    AddOnFeeRequest,
    CreditNoteItemIn,
    credit_note_create,
    credit_note_estimate,
    credit_note_metadata_key_delete,
    credit_note_metadata_update,
    credit_note_void,
    invoice_create_one_off_for_add_ons,
    invoice_delete,
    invoice_dispute_lose,
    invoice_finalize,
    invoice_generation_retry,
    invoice_metadata_update,
    invoice_void,
)
from apps.subscriptions.models import Subscription

from ..errors import MissingRootKey
from ..openapi import lago_operation, query, ref
from ..pagination import paginate
from ..params import bool_param, currency_param, int_param
from ..serializers.common import root_payload
from ..serializers.invoices import (
    CreditNoteIn,
    CreditNoteUpdateIn,
    InvoicePreviewIn,
    InvoiceVoidIn,
    InvoiceUpdateIn,
    OneOffInvoiceIn,
)


def _choices(request, name: str, allowed: list[str]) -> list[str]:
    values = request.query_params.getlist(f"{name}[]") or request.query_params.getlist(name)
    if any(value not in allowed for value in values):
        raise ValidationFailed("bad filter", details={name: ["value_is_invalid"]})
    return values


def _date_param(request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed("bad date", details={name: ["invalid_date"]}) from None


INVOICE_FILTERS = [
    query("statuses", many=True, enum=Invoice.Status.values),
    query("payment_statuses", many=True, enum=Invoice.PaymentStatus.values),
    query("invoice_type", enum=Invoice.InvoiceType.values),
    query("currency", description="ISO 4217 code the hub bills in."),
    query("issuing_date_from", date), query("issuing_date_to", date),
    query("amount_from", int, "Total in cents, at least."), query("amount_to", int, "Total in cents, at most."),
    query("payment_overdue", bool),
]


def invoices_page(request, external_customer_id: str | None) -> dict:
    """One page of the service's invoices with Lago's filters (also GET /customers/{id}/invoices)."""
    params = request.query_params
    overdue = params.get("payment_overdue")
    queryset = invoice_list(
        service=request.auth.service,
        external_customer_id=external_customer_id,
        statuses=_choices(request, "statuses", Invoice.Status.values) or _choices(request, "status", Invoice.Status.values),
        payment_statuses=_choices(request, "payment_statuses", Invoice.PaymentStatus.values)
        or _choices(request, "payment_status", Invoice.PaymentStatus.values),
        invoice_type=(_choices(request, "invoice_type", Invoice.InvoiceType.values) or [None])[0],
        currency=(currency_param(request, "currency") or [None])[0],
        issuing_date_from=_date_param(request, "issuing_date_from"),
        issuing_date_to=_date_param(request, "issuing_date_to"),
        amount_from=int_param(request, "amount_from"),
        amount_to=int_param(request, "amount_to"),
        payment_overdue=None if overdue in (None, "") else overdue == "true",
    )
    service = request.auth.service
    return paginate(request, queryset, "invoices", lambda items: [invoice_out(i, service=service) for i in items])


class InvoiceListCreateView(APIView):
    @lago_operation("findAllInvoices", response="Invoice", plural="invoices",
                    parameters=[query("external_customer_id"), *INVOICE_FILTERS])
    def get(self, request):
        return Response(invoices_page(request, request.query_params.get("external_customer_id")))

    @lago_operation("createInvoice", request=OneOffInvoiceIn, root="invoice", response="Invoice",
                    summary="Create and finalize a one-off invoice of add-on fees")
    def post(self, request):
        serializer = OneOffInvoiceIn(data=root_payload(request, "invoice"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        service = request.auth.service
        link = account_link_get(service=service, external_id=data["external_customer_id"])
        currency = data.get("currency") or link.customer.currency or settings.DEFAULT_CURRENCY
        fees = [
            AddOnFeeRequest(
                add_on_code=fee["add_on_code"],
                units=fee.get("units"),
                unit_amount_cents=fee.get("unit_amount_cents"),
                invoice_display_name=fee.get("invoice_display_name") or "",
                description=fee.get("description"),
            )
            for fee in data["fees"]
        ]
        invoice = invoice_create_one_off_for_add_ons(
            service=service, customer=link.customer, currency=currency, fees=fees
        )
        return Response({"invoice": invoice_out(invoice, service=service)})


class InvoicePreviewView(APIView):
    @lago_operation("invoicePreview", request=InvoicePreviewIn, response="Invoice", root="invoice",
                    description="The next invoice of the customer's running subscriptions (`subscriptions.external_ids`,"
                                " or all of the service's), by the close's own planner and rating, with the "
                                "customer's coupons (or, without any, the request's) taken off before tax; nothing "
                                "is written. Previews of a subscription not yet created (`plan_code`), of a plan "
                                "change or of a termination are not built (422 `not_supported`).")
    def post(self, request):
        serializer = InvoicePreviewIn(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        service = request.auth.service
        wanted = data.get("subscriptions") or {}
        for name, value in (("plan_code", data.get("plan_code")), ("subscriptions.plan_code", wanted.get("plan_code")),
                            ("subscriptions.terminated_at", wanted.get("terminated_at"))):
            if value:
                raise ValidationFailed("preview not built", details={name: ["not_supported"]})
        code = data.get("billing_entity_code")
        if code and code != billing_entity_code():
            raise NotFound("billing_entity")
        external_id = data["customer"].get("external_id")
        if not external_id:
            raise ValidationFailed("customer must exist", details={"customer": ["must_be_persisted"]})
        link = account_link_get(service=service, external_id=external_id)
        subscriptions = Subscription.objects.filter(
            service=service, account_link=link, status=Subscription.Status.ACTIVE).select_related("plan")
        if wanted.get("external_ids"):
            subscriptions = subscriptions.filter(external_id__in=wanted["external_ids"])
        subscriptions = list(subscriptions)
        if not subscriptions:
            raise NotFound("subscription")
        coupons = preview_coupons(customer=link.customer, service=service, requested=[
            CouponIn(code=item["code"], name=item.get("name") or "", coupon_type=item.get("coupon_type") or "fixed_amount",
                     amount_cents=item.get("amount_cents"), amount_currency=item.get("amount_currency") or "",
                     percentage_rate=item.get("percentage_rate"), frequency=item.get("frequency") or "once",
                     frequency_duration=item.get("frequency_duration"))
            for item in data.get("coupons") or []
        ])
        invoice = customer_invoice_preview(customer=link.customer, subscriptions=subscriptions, coupons=coupons)
        return Response({"invoice": invoice_out(invoice, service=service)})


class InvoiceDetailView(APIView):
    @lago_operation("findInvoice", response="Invoice", root="invoice")
    def get(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})

    @lago_operation("updateInvoice", request=InvoiceUpdateIn, root="invoice", response="Invoice",
                    description="Metadata as Lago sets it. `payment_status` only as it already is: payments are "
                                "Stripe's to record (405 `payment_status_not_updatable` otherwise).")
    def put(self, request, lago_id: str):
        serializer = InvoiceUpdateIn(data=root_payload(request, "invoice"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        if data.get("payment_status") not in (None, invoice.payment_status):
            raise NotAllowed("payment status is recorded from payments", code="payment_status_not_updatable")
        if data.get("metadata") is not None:
            invoice = invoice_metadata_update(invoice_id=invoice.pk, entries=data["metadata"])
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


    @lago_operation("deleteInvoice", response="Invoice", root="invoice",
                    description="Delete a draft (405 `not_deletable` otherwise): its period is not billed again; "
                                "`invoice.deleted` is sent and the invoice is no longer found.")
    def delete(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_delete(invoice_id=invoice.pk)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


class InvoiceRefreshView(APIView):
    @lago_operation("refreshInvoice", response="Invoice", root="invoice")
    def put(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_refresh(invoice_id=invoice.pk)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


class InvoiceFinalizeView(APIView):
    @lago_operation("finalizeInvoice", response="Invoice", root="invoice")
    def put(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_finalize(invoice_id=invoice.pk)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


class InvoiceVoidView(APIView):
    @lago_operation("voidInvoice", request={"$ref": "#/components/schemas/InvoiceVoidInput"},
                    response="Invoice", root="invoice", errors=(405, 422),
                    description="Without `generate_credit_note`, a finalized invoice not paid in full only (405 "
                                "`not_voidable`). With it, any finalized invoice, by credit notes: what is still due "
                                "settled, `credit_amount` + `refund_amount` (at most what was paid) on one note, "
                                "the rest on a note voided at once (docs/ledger.md).")
    def post(self, request, lago_id: str):
        serializer = InvoiceVoidIn(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        body = serializer.validated_data
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_void(invoice_id=invoice.pk, generate_credit_note=bool(body["generate_credit_note"]),
                               credit_amount_cents=body["credit_amount"] or 0,
                               refund_amount_cents=body["refund_amount"] or 0)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


class InvoiceLoseDisputeView(APIView):
    @lago_operation("loseDisputeInvoice", response="Invoice", root="invoice",
                    description="Mark the payment dispute lost: a finalized or voided invoice only (405 "
                                "`not_disputable`); it is no longer overdue; `invoice.payment_dispute_lost` is sent once.")
    def post(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_dispute_lose(invoice_id=invoice.pk)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})

    @lago_operation("loseDisputeInvoiceByPut", response="Invoice", root="invoice",
                    description="The same as POST: lago-python-client 1.55 sends PUT where Lago routes POST.")
    def put(self, request, lago_id: str):
        return self.post(request, lago_id)


class InvoiceRetryView(APIView):
    @lago_operation("retryInvoice", response="Invoice", root="invoice",
                    description="Lago retries an invoice whose generation failed. The hub writes an invoice only once "
                                "generated (a failed close writes nothing and is retried by the close run), so every "
                                "invoice answers Lago's 405 `invalid_status`.")
    def post(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        invoice = invoice_generation_retry(invoice_id=invoice.pk)
        return Response({"invoice": invoice_out(invoice, service=request.auth.service)})


def invoice_file_url(request, invoice: Invoice) -> str:
    return request.build_absolute_uri(f"/api/v1/invoices/{invoice.lago_id}/pdf/{invoice_pdf_token(invoice)}")


class InvoiceDownloadView(APIView):
    @lago_operation("downloadInvoice", response="Invoice", root="invoice",
                    description="The invoice with its `file_url`: a signed, expiring link to the PDF.")
    def post(self, request, lago_id: str):
        invoice = invoice_get(service=request.auth.service, lago_id=lago_id)
        if invoice.status == Invoice.Status.DRAFT:
            raise NotFound("invoice")  # Lago: only finalized invoices have a file
        return Response(
            {"invoice": invoice_out(invoice, service=request.auth.service, file_url=invoice_file_url(request, invoice))}
        )


class InvoicePdfView(APIView):
    """The PDF behind `file_url`: a signed, expiring link that needs no API key (browsers, emails)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="getInvoicePdf", responses={(200, "application/pdf"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The invoice PDF.")})
    def get(self, request, lago_id: str, token: str):
        try:
            signed_id = invoice_from_pdf_token(token)
        except signing.BadSignature:
            raise NotFound("invoice") from None
        invoice = Invoice.objects.filter(lago_id=lago_id).first() if signed_id == lago_id else None
        if invoice is None:
            raise NotFound("invoice")
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{invoice.number or invoice.lago_id}.pdf"'
        return response


def _credit_items(invoice: Invoice, items: list[dict]) -> list[CreditNoteItemIn]:
    fees = {str(fee.lago_id): fee.pk for fee in invoice.fees.all()}
    out, errors = [], {}
    for index, item in enumerate(items):
        fee_id = fees.get(str(item["fee_id"]))
        if fee_id is None:
            errors[f"items.{index}.fee_id"] = ["fee_not_found"]
            continue
        out.append(CreditNoteItemIn(fee_id=fee_id, amount_cents=item["amount_cents"]))
    if errors:
        raise ValidationFailed("bad items", details=errors)
    return out


def credit_notes_page(request, external_customer_id: str | None) -> dict:
    """One page of the service's credit notes (also GET /customers/{id}/credit_notes)."""
    service = request.auth.service
    queryset = credit_note_list(service=service, external_customer_id=external_customer_id)
    return paginate(request, queryset, "credit_notes", lambda items: [credit_note_out(n, service=service) for n in items])


class CreditNoteListCreateView(APIView):
    @lago_operation("findAllCreditNotes", response="CreditNote", plural="credit_notes",
                    parameters=[query("external_customer_id")])
    def get(self, request):
        return Response(credit_notes_page(request, request.query_params.get("external_customer_id")))

    @lago_operation("createCreditNote", request=CreditNoteIn, root="credit_note", response="CreditNote")
    def post(self, request):
        serializer = CreditNoteIn(data=root_payload(request, "credit_note"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        service = request.auth.service
        invoice = invoice_get(service=service, lago_id=data["invoice_id"])
        note = credit_note_create(
            invoice_id=invoice.pk,
            items=_credit_items(invoice, data["items"]),
            reason=data["reason"],
            description=data.get("description") or "",
            credit_amount_cents=data.get("credit_amount_cents"),
            refund_amount_cents=data.get("refund_amount_cents"),
            offset_amount_cents=data.get("offset_amount_cents"),
        )
        return Response({"credit_note": credit_note_out(note, service=service)})


class CreditNoteEstimateView(APIView):
    @lago_operation("estimateCreditNote", request=CreditNoteIn, root="credit_note",
                    response="EstimatedCreditNote", partial=False)
    def post(self, request):
        payload = root_payload(request, "credit_note")
        serializer = CreditNoteIn(data={**payload, "reason": payload.get("reason") or "other"})
        serializer.is_valid(raise_exception=True)
        invoice = invoice_get(service=request.auth.service, lago_id=serializer.validated_data["invoice_id"])
        estimate = credit_note_estimate(invoice=invoice, items=_credit_items(invoice, serializer.validated_data["items"]))
        taxes = credit_note_taxes([(amount, applied) for _, amount, _, applied in estimate.items])
        refs = tax_refs(tax["code"] for tax in taxes)
        return Response(
            {
                "estimated_credit_note": {
                    "lago_invoice_id": str(invoice.lago_id),
                    "invoice_number": invoice.number,
                    "currency": invoice.currency,
                    "taxes_amount_cents": estimate.taxes_amount_cents,
                    # Taxes are rounded per line and rate when the note is written: the precise figure is that one.
                    "precise_taxes_amount_cents": estimate.taxes_amount_cents,
                    "taxes_rate": credit_note_taxes_rate(taxes),
                    "sub_total_excluding_taxes_amount_cents": estimate.sub_total_excluding_taxes_amount_cents,
                    "max_creditable_amount_cents": estimate.max_creditable_amount_cents,
                    "max_refundable_amount_cents": estimate.max_refundable_amount_cents,
                    "max_offsettable_amount_cents": estimate.offset_amount_cents,
                    "coupons_adjustment_amount_cents": 0,  # coupons come off before tax and are never credited
                    "precise_coupons_adjustment_amount_cents": 0,
                    "items": [{"lago_fee_id": str(fee.lago_id), "amount_cents": amount} for fee, amount, *_ in estimate.items],
                    "applied_taxes": [
                        {
                            "lago_tax_id": refs.get(tax["code"], (None, None))[0],
                            "tax_code": tax["code"],
                            "tax_name": tax["name"],
                            "tax_rate": float(Decimal(tax["rate"])),
                            "tax_description": refs.get(tax["code"], (None, None))[1],
                            "amount_cents": tax["amount_cents"],
                            "amount_currency": invoice.currency,
                            "base_amount_cents": tax["base_amount_cents"],
                        }
                        for tax in taxes
                    ],
                }
            }
        )


class CreditNoteDetailView(APIView):
    @lago_operation("findCreditNote", response="CreditNote", root="credit_note")
    def get(self, request, lago_id: str):
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        return Response({"credit_note": credit_note_out(note, service=request.auth.service)})

    @lago_operation("updateCreditNote", request=CreditNoteUpdateIn, root="credit_note", response="CreditNote",
                    description="Metadata as Lago sets it. `refund_status` only as it already is: refunds are "
                                "Stripe's to record (405 `refund_status_not_updatable` otherwise).")
    def put(self, request, lago_id: str):
        serializer = CreditNoteUpdateIn(data=root_payload(request, "credit_note"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        if data.get("refund_status") not in (None, note.refund_status or None):
            raise NotAllowed("refund status is recorded from refunds", code="refund_status_not_updatable")
        if data.get("metadata") is not None:
            note = credit_note_metadata_update(credit_note_id=note.pk, metadata=data["metadata"])
        return Response({"credit_note": credit_note_out(note, service=request.auth.service)})


class CurrentUsageView(APIView):
    @lago_operation("findCustomerCurrentUsage", response="CustomerUsage", root="customer_usage", parameters=[
        OpenApiParameter("external_subscription_id", str, required=True)])
    def get(self, request, external_customer_id: str):
        subscription = _active_subscription(request, external_customer_id)
        now = timezone.now()
        period, p_from, p_to, lines = current_usage_lines(subscription, at=now)
        rates = customer_tax_rates(subscription.customer, on=period.end)
        taxes = sum(fee_taxes(line.amount_cents, rates)[0] for line in lines)
        body = customer_usage_out(subscription=subscription, p_from=p_from, p_to=p_to, period=period, lines=lines, taxes_cents=taxes)
        return Response({"customer_usage": body})


def _active_subscription(request, external_customer_id: str) -> Subscription:
    service = request.auth.service
    link = account_link_get(service=service, external_id=external_customer_id)
    external_subscription_id = request.query_params.get("external_subscription_id")
    if not external_subscription_id:
        raise ValidationFailed("missing", details={"external_subscription_id": ["value_is_mandatory"]})
    subscription = (
        Subscription.objects.filter(
            service=service, account_link=link, external_id=external_subscription_id,
            status=Subscription.Status.ACTIVE,
        )
        .select_related("plan", "customer", "service")
        # Each charge's metric in the same read: the usage lines name them (one query, not one per charge).
        .prefetch_related(Prefetch("plan__charges", queryset=Charge.objects.select_related("billable_metric")),
                          "plan__charges__charge_filters")
        .first()
    )
    if subscription is None:
        raise NotAllowed("no active subscription", code="no_active_subscription")
    return subscription


class ProjectedUsageView(APIView):
    @lago_operation("findCustomerProjectedUsage", response="CustomerProjectedUsage", root="customer_projected_usage",
                    parameters=[OpenApiParameter("external_subscription_id", str, required=True),
                                query("apply_taxes", bool, "Tax the usage so far (default true).")],
                    description="The current period's usage, each charge carried to the period's end at its pace so "
                                "far and priced by the close's rating (apps/invoicing/projection.py).")
    def get(self, request, external_customer_id: str):
        subscription = _active_subscription(request, external_customer_id)
        raw = request.query_params.get("apply_taxes")
        apply_taxes = True if raw in (None, "") else bool_param(request, "apply_taxes")
        now = timezone.now()
        period, p_from, p_to, lines = current_usage_lines(subscription, at=now)
        started = max(p_from, subscription.started_at or subscription.subscription_at)
        projected = project_lines(lines, ratio=projection_ratio(started=started, period_end=p_to, now=now))
        taxes = 0
        if apply_taxes:
            rates = customer_tax_rates(subscription.customer, on=period.end)
            taxes = sum(fee_taxes(item.line.amount_cents, rates)[0] for item in projected)
        body = projected_usage_out(subscription=subscription, p_from=p_from, p_to=p_to, period=period,
                                   projected=projected, taxes_cents=taxes)
        return Response({"customer_projected_usage": body})


class CreditNoteVoidView(APIView):
    @lago_operation("voidCreditNote", response="CreditNote", root="credit_note")
    def put(self, request, lago_id: str):
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        note = credit_note_void(credit_note_id=note.pk)
        return Response({"credit_note": credit_note_out(note, service=request.auth.service)})


class CreditNoteDownloadView(APIView):
    @lago_operation("downloadCreditNote", response="CreditNote", root="credit_note",
                    description="The credit note with its `file_url`: a signed, expiring link to the PDF.")
    def post(self, request, lago_id: str):
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        url = request.build_absolute_uri(f"/api/v1/credit_notes/{note.lago_id}/pdf/{invoice_pdf_token(note)}")
        return Response({"credit_note": credit_note_out(note, service=request.auth.service, file_url=url)})


class CreditNotePdfView(APIView):
    """The PDF behind a credit note's `file_url`: a signed, expiring link that needs no API key."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="getCreditNotePdf", responses={(200, "application/pdf"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The credit note PDF.")})
    def get(self, request, lago_id: str, token: str):
        try:
            signed_id = credit_note_from_pdf_token(token)
        except signing.BadSignature:
            raise NotFound("credit_note") from None
        note = CreditNote.objects.filter(lago_id=lago_id).first() if signed_id == lago_id else None
        if note is None:
            raise NotFound("credit_note")
        response = HttpResponse(credit_note_pdf(note), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{note.number}.pdf"'
        return response


def _metadata_body(request) -> dict:
    """`{"metadata": {key: string or null}}` (Lago: keys up to 100 characters, values up to 255)."""
    data = request.data if isinstance(request.data, dict) else {}
    if "metadata" not in data:
        raise MissingRootKey("metadata")
    serializer = CreditNoteUpdateIn(data={"metadata": data["metadata"]})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data.get("metadata") or {}


class CreditNoteMetadataView(APIView):
    def _answer(self, note):
        return Response({"metadata": dict(note.metadata) if note.metadata else None})

    @lago_operation("replaceCreditNoteMetadata", request=ref("MetadataBody"), response="MetadataAnswer",
                    description="Replace the credit note's metadata whole.")
    def post(self, request, lago_id: str):
        metadata = _metadata_body(request)
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        return self._answer(credit_note_metadata_update(credit_note_id=note.pk, metadata=metadata))

    @lago_operation("mergeCreditNoteMetadata", request=ref("MetadataBody"), response="MetadataAnswer",
                    description="Merge keys into the credit note's metadata (a key's new value replaces its old one).")
    def patch(self, request, lago_id: str):
        metadata = _metadata_body(request)
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        return self._answer(credit_note_metadata_update(credit_note_id=note.pk, metadata=metadata, merge=True))

    @lago_operation("deleteAllCreditNoteMetadata", response="MetadataAnswer")
    def delete(self, request, lago_id: str):
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        return self._answer(credit_note_metadata_update(credit_note_id=note.pk, metadata=None))


class CreditNoteMetadataKeyView(APIView):
    @lago_operation("deleteCreditNoteMetadataKey", response="MetadataAnswer",
                    description="Remove one key (404 `metadata_not_found` when the note has no metadata).")
    def delete(self, request, lago_id: str, key: str):
        note = credit_note_get(service=request.auth.service, lago_id=lago_id)
        note = credit_note_metadata_key_delete(credit_note_id=note.pk, key=key)
        return Response({"metadata": dict(note.metadata) if note.metadata else None})


urlpatterns = [
    path("invoices", InvoiceListCreateView.as_view()),
    path("invoices/preview", InvoicePreviewView.as_view()),
    path("invoices/<str:lago_id>", InvoiceDetailView.as_view()),
    path("invoices/<str:lago_id>/refresh", InvoiceRefreshView.as_view()),
    path("invoices/<str:lago_id>/finalize", InvoiceFinalizeView.as_view()),
    path("invoices/<str:lago_id>/void", InvoiceVoidView.as_view()),
    path("invoices/<str:lago_id>/download", InvoiceDownloadView.as_view()),
    path("invoices/<str:lago_id>/lose_dispute", InvoiceLoseDisputeView.as_view()),
    path("invoices/<str:lago_id>/retry", InvoiceRetryView.as_view()),
    path("invoices/<str:lago_id>/pdf/<str:token>", InvoicePdfView.as_view()),
    path("credit_notes", CreditNoteListCreateView.as_view()),
    path("credit_notes/estimate", CreditNoteEstimateView.as_view()),
    path("credit_notes/<str:lago_id>", CreditNoteDetailView.as_view()),
    path("credit_notes/<str:lago_id>/download", CreditNoteDownloadView.as_view()),
    path("credit_notes/<str:lago_id>/void", CreditNoteVoidView.as_view()),
    path("credit_notes/<str:lago_id>/pdf/<str:token>", CreditNotePdfView.as_view()),
    path("credit_notes/<str:lago_id>/metadata", CreditNoteMetadataView.as_view()),
    path("credit_notes/<str:lago_id>/metadata/<str:key>", CreditNoteMetadataKeyView.as_view()),
    path("customers/<str:external_customer_id>/current_usage", CurrentUsageView.as_view()),
    path("customers/<str:external_customer_id>/projected_usage", ProjectedUsageView.as_view()),
]

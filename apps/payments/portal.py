"""The customer portal: a signed, expiring page where a customer sees the invoices one service bills them,
downloads their PDFs and pays what is due through Stripe Checkout (Lago's GET /customers/{id}/portal_url).

The link carries the customer's account link (the service's view of them), signed with Django's signing under its
own salt and read back with `max_age` (CUSTOMER_PORTAL_MAX_AGE_SECONDS): no login, no API key, nothing to store.
A link outlives nothing it names: a deleted customer, or an invoice of another service, is not shown.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.generic import View

from apps.core.money import money_display
from apps.customers.models import AccountLink
from apps.invoicing.models import Invoice
from apps.invoicing.pdf import invoice_pdf_token
from apps.invoicing.selectors import invoice_list

from .services import invoice_payment_url

SALT = "payments.portal"


def portal_token(link: AccountLink) -> str:
    return signing.dumps({"link": link.pk}, salt=SALT)


def portal_url(link: AccountLink) -> str:
    """The portal's address for this customer as this service knows it (PUBLIC_BASE_URL, signed, expiring)."""
    return f"{settings.PUBLIC_BASE_URL}/portal/{portal_token(link)}"


def portal_link(token: str) -> AccountLink:
    """The account link a portal token names, while it is valid and the customer not deleted; 404 otherwise."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.CUSTOMER_PORTAL_MAX_AGE_SECONDS)
    except signing.BadSignature:  # tampered, or expired (SignatureExpired is a BadSignature)
        raise Http404("This link has expired or is not valid.") from None
    link = (AccountLink.objects.filter(pk=payload.get("link"), deleted_at__isnull=True)
            .select_related("service", "customer").first())
    if link is None:
        raise Http404("This link has expired or is not valid.")
    return link


def _invoices(link: AccountLink):
    return (invoice_list(service=link.service, external_customer_id=link.external_id)
            .exclude(status=Invoice.Status.DRAFT).order_by("-issuing_date", "-id"))


@method_decorator(login_not_required, name="dispatch")
class PortalView(View):
    def get(self, request, token: str):
        link = portal_link(token)
        rows = []
        for invoice in _invoices(link)[:100]:
            payable = (invoice.status == Invoice.Status.FINALIZED and invoice.total_due_amount_cents > 0
                       and invoice.payment_status != Invoice.PaymentStatus.SUCCEEDED)
            rows.append({"invoice": invoice, "payable": payable,
                         "total": money_display(invoice.total_amount_cents, invoice.currency),
                         "due": money_display(invoice.total_due_amount_cents, invoice.currency),
                         "pdf": f"/api/v1/invoices/{invoice.lago_id}/pdf/{invoice_pdf_token(invoice)}"})
        return render(request, "payments/portal.html", {"link": link, "rows": rows, "token": token,
                                                         "seller": settings.NEXA_LEGAL_NAME})


@method_decorator(login_not_required, name="dispatch")
class PortalPayView(View):
    def post(self, request, token: str, lago_id: str):
        link = portal_link(token)
        invoice = _invoices(link).filter(lago_id=lago_id).first() if _uuid(lago_id) else None
        if invoice is None:
            raise Http404("No such invoice.")
        return HttpResponseRedirect(invoice_payment_url(invoice=invoice), status=303)


def _uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


urlpatterns = [
    path("portal/<str:token>", PortalView.as_view(), name="customer-portal"),
    path("portal/<str:token>/invoices/<str:lago_id>/pay", PortalPayView.as_view(), name="customer-portal-pay"),
]

"""Payment routes without Stripe configured, and the ids their answers carry (issue 16)."""
from __future__ import annotations

import pytest

from apps.customers.models import AccountLink
from apps.invoicing.models import Invoice
from apps.payments.models import PaymentAttempt, StripeCustomer
from tests.integration.ledger.builders import invoice_make
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

NOT_CONFIGURED = {
    "status": 422, "error": "Unprocessable Entity", "code": "payment_provider_not_configured",
    "error_details": {"payment_provider": ["payment_provider_not_configured"]},
}


def _customer(client, external_id="acme"):
    body = {"customer": {"external_id": external_id, "name": "Acme", "country": "CA", "state": "ON"}}
    assert client.post("/api/v1/customers", body, format="json").status_code == 200
    return AccountLink.objects.get(service=client.service, external_id=external_id)


def test_with_the_placeholder_key_payment_routes_answer_422_at_once_and_write_nothing(cloud, settings):
    assert settings.STRIPE_TEST_SECRET_KEY == "sk_test_" + "0" * 24  # the settings placeholder
    link = _customer(cloud)
    invoice = invoice_make(service=cloud.service, customer=link.customer, fees_cents=[1000])
    before = (StripeCustomer.objects.count(), PaymentAttempt.objects.count(), Invoice.objects.get(pk=invoice.pk).payment_url)
    for path in (
        "/api/v1/customers/acme/checkout_url",
        f"/api/v1/invoices/{invoice.lago_id}/payment_url",
        f"/api/v1/invoices/{invoice.lago_id}/retry_payment",
    ):
        response = cloud.post(path, format="json")
        assert (response.status_code, response.json()) == (422, NOT_CONFIGURED), path
    after = (StripeCustomer.objects.count(), PaymentAttempt.objects.count(), Invoice.objects.get(pk=invoice.pk).payment_url)
    assert after == before == (0, 0, "")


def test_checkout_and_payment_links_carry_the_callers_own_customer_id(cloud, desk, stripe_env):
    """A customer linked to two services is one billing party; each service sees only its own ids."""
    cloud_link = _customer(cloud, "acme")
    desk_link = _customer(desk, "acme-desk")
    desk_link.customer = cloud_link.customer  # linked across services: one billing customer
    desk_link.save()
    hub_wide = str(cloud_link.customer.lago_id)

    answer = desk.post("/api/v1/customers/acme-desk/checkout_url", format="json").json()["customer"]
    assert (answer["lago_customer_id"], answer["external_customer_id"]) == (str(desk_link.lago_id), "acme-desk")
    assert desk.get("/api/v1/customers/acme-desk").json()["customer"]["lago_id"] == answer["lago_customer_id"]

    invoice = invoice_make(service=desk.service, customer=cloud_link.customer, fees_cents=[1000])
    details = desk.post(f"/api/v1/invoices/{invoice.lago_id}/payment_url", format="json").json()[
        "invoice_payment_details"]
    assert (details["lago_customer_id"], details["external_customer_id"]) == (str(desk_link.lago_id), "acme-desk")
    for body in (answer, details):
        assert hub_wide not in str(body) and str(cloud_link.lago_id) not in str(body) and "acme\"" not in str(body)

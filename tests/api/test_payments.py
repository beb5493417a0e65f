"""Payment routes: lago-python-client against a live hub whose Stripe is localstripe on 127.0.0.1."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer as LagoCustomer

from apps.customers.models import Customer
from apps.invoicing.models import Invoice
from apps.payments.models import PaymentAttempt
from tests.integration.payments.stripe_fixtures import (  # noqa: F401  (fixtures)
    localstripe,
    make_invoice,
    save_card,
    stripe_env,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloud(live_server, service_factory, stripe_env):
    issued = service_factory("nexacloud", "NexaCloud")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


def test_checkout_url_and_retry_payment_through_lago_client(cloud, stripe_env):
    cloud.customers.create(LagoCustomer(external_id="acme", name="Acme", currency="CAD", country="CA", state="ON"))
    url = cloud.customers.checkout_url("acme")
    assert url.startswith("http://localstripe.invalid/checkout/cs_test_")

    customer = Customer.objects.get(account_links__external_id="acme")
    save_card(stripe_env, customer, "pm_card_chargeCustomerFail")
    invoice = make_invoice(customer, total_amount_cents=5650)
    assert cloud.invoices.retry_payment(str(invoice.lago_id)) is None  # Lago answers an empty 200
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert (attempt.status, attempt.failure_code) == ("failed", "card_declined")

    save_card(stripe_env, customer, "pm_card_visa")
    assert cloud.invoices.retry_payment(str(invoice.lago_id)) is None
    invoice.refresh_from_db()
    assert invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 2

    with pytest.raises(LagoApiError) as paid:
        cloud.invoices.retry_payment(str(invoice.lago_id))
    assert paid.value.status_code == 405
    assert paid.value.response["code"] == "invoice_payment_already_succeeded"


def test_payment_url_outsider_unknown_ids_and_draft(cloud, live_server, service_factory, stripe_env):
    cloud.customers.create(LagoCustomer(external_id="beta", name="Beta", currency="CAD"))
    customer = Customer.objects.get(account_links__external_id="beta")
    invoice = make_invoice(customer, total_amount_cents=1500)
    url = cloud.invoices.payment_url(str(invoice.lago_id))
    invoice.refresh_from_db()
    assert url == invoice.payment_url != ""

    outsider = Client(api_key=service_factory("nexadesk", "NexaDesk").raw_key, api_url=live_server.url)
    for call in (
        lambda: outsider.invoices.retry_payment(str(invoice.lago_id)),
        lambda: outsider.invoices.payment_url(str(invoice.lago_id)),
        lambda: cloud.invoices.retry_payment("not-a-uuid"),
    ):
        with pytest.raises(LagoApiError) as err:
            call()
        assert (err.value.status_code, err.value.response["code"]) == (404, "invoice_not_found")
    with pytest.raises(LagoApiError) as err:
        outsider.customers.checkout_url("beta")
    assert (err.value.status_code, err.value.response["code"]) == (404, "customer_not_found")
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1

    draft = make_invoice(customer, status="draft")
    with pytest.raises(LagoApiError) as err:
        cloud.invoices.retry_payment(str(draft.lago_id))
    assert (err.value.status_code, err.value.response["code"]) == (405, "invalid_status")
    assert not PaymentAttempt.objects.filter(invoice=draft).exists()

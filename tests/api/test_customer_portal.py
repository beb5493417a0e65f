"""GET /customers/{id}/portal_url (issue 21): a signed, expiring page on the hub where the customer sees the invoices
one service bills them, downloads their PDFs and pays what is due through Stripe Checkout (localstripe here)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from lago_python_client.client import Client

from apps.payments.models import PaymentAttempt
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def _world(service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme Ltd", "country": "CA",
                                                "state": "ON", "currency": "CAD"}}, format="json")
    api.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 5000,
                                            "amount_currency": "CAD"}}, format="json")
    invoice = api.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "setup"}]}}, format="json").json()["invoice"]
    return issued, api, invoice


def _path(url: str, settings) -> str:
    assert url.startswith(f"{settings.PUBLIC_BASE_URL}/portal/")
    return url.removeprefix(settings.PUBLIC_BASE_URL)


def test_the_portal_lists_the_invoices_with_pdfs_and_pays_through_checkout(service_factory, api_client_for, client,
                                                                          settings, stripe_env):
    _, api, invoice = _world(service_factory, api_client_for)
    response = api.get("/api/v1/customers/acme/portal_url")
    assert response.status_code == 200, response.json()
    path = _path(response.json()["customer"]["portal_url"], settings)
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert invoice["number"] in html and "$56.50 CAD" in html and "Acme Ltd" in html
    pdf_link = f"/api/v1/invoices/{invoice['lago_id']}/pdf/"
    assert pdf_link in html
    pdf_path = html.split(pdf_link, 1)[1].split('"', 1)[0]
    pdf = client.get(pdf_link + pdf_path)
    assert (pdf.status_code, pdf.content[:5]) == (200, b"%PDF-")

    paid = client.post(f"{path}/invoices/{invoice['lago_id']}/pay")
    assert paid.status_code == 303
    attempt = PaymentAttempt.objects.get(invoice__lago_id=invoice["lago_id"])
    assert (paid["Location"], attempt.kind, attempt.amount_cents) == (attempt.checkout_url, "checkout", 5650)
    assert attempt.checkout_url.startswith("http://localstripe.invalid/checkout/")
    # Asked again, the same open Checkout session, not a second one.
    assert client.post(f"{path}/invoices/{invoice['lago_id']}/pay")["Location"] == attempt.checkout_url
    assert PaymentAttempt.objects.count() == 1


def test_the_link_expires_and_shows_only_the_service_s_invoices(service_factory, api_client_for, client, settings):
    _, api, invoice = _world(service_factory, api_client_for)
    path = _path(api.get("/api/v1/customers/acme/portal_url").json()["customer"]["portal_url"], settings)
    desk_issued = service_factory("nexadesk", "NexaDesk")
    desk = api_client_for(desk_issued.raw_key)
    assert desk.get("/api/v1/customers/acme/portal_url").json()["code"] == "customer_not_found"
    # The same person as NexaDesk's customer: its portal shows none of NexaCloud's invoices.
    desk.post("/api/v1/customers", {"customer": {"external_id": "acme-desk", "name": "Acme Ltd"}}, format="json")
    desk_path = _path(desk.get("/api/v1/customers/acme-desk/portal_url").json()["customer"]["portal_url"], settings)
    assert invoice["number"] not in client.get(desk_path).content.decode()
    assert client.post(f"{desk_path}/invoices/{invoice['lago_id']}/pay").status_code == 404

    assert client.get(path + "x").status_code == 404  # tampered
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.CUSTOMER_PORTAL_MAX_AGE_SECONDS + 5)):
        assert client.get(path).status_code == 404  # expired
    api.delete("/api/v1/customers/acme")
    assert client.get(path).status_code == 404  # the customer is gone


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_gets_the_portal_url(live_server, service_factory, api_client_for, settings):
    issued, _, _ = _world(service_factory, api_client_for)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    assert lago.customers.portal_url("acme").startswith(f"{settings.PUBLIC_BASE_URL}/portal/")

"""GET /customers/{id}/payment_methods, DELETE .../payment_methods/{id}, PUT .../set_as_default (issue 21): the saved
Stripe cards of dj-stripe's mirror, in Lago's shape; localstripe plays Stripe."""
from __future__ import annotations

import pytest
from djstripe.models import PaymentMethod

from apps.customers.models import Customer
from apps.payments.models import StripeCustomer
from tests.integration.payments.stripe_fixtures import localstripe, ls_client, save_card, stripe_env  # noqa: F401

pytestmark = pytest.mark.django_db


def _world(service_factory, api_client_for, stripe_env):
    """acme with two cards saved at Stripe: a Visa (the default) and a Mastercard, mirrored by dj-stripe as its
    payment_method.attached webhooks would."""
    issued = service_factory("nexacloud", "NexaCloud")
    api = api_client_for(issued.raw_key)
    api.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme"}}, format="json")
    customer = Customer.objects.get(account_links__external_id="acme")
    account = save_card(stripe_env, customer, "pm_card_visa")
    client = ls_client(stripe_env)
    card = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "5555555555554444", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
    other = client.v1.payment_methods.attach(card.id, params={"customer": account.stripe_customer_id})
    for pm_id in (account.default_payment_method_id, other.id):
        PaymentMethod.sync_from_stripe_data(client.v1.payment_methods.retrieve(pm_id).to_dict())
    return api, account, other.id


def test_list_set_default_and_remove(service_factory, api_client_for, stripe_env):
    api, account, mastercard = _world(service_factory, api_client_for, stripe_env)
    visa = account.default_payment_method_id
    listed = api.get("/api/v1/customers/acme/payment_methods")
    assert listed.status_code == 200, listed.json()
    methods = listed.json()["payment_methods"]
    assert {(m["provider_method_id"], m["is_default"], m["payment_provider_type"]) for m in methods} == {
        (visa, True, "stripe"), (mastercard, False, "stripe")}
    assert listed.json()["meta"]["total_count"] == 2
    by_id = {m["provider_method_id"]: m["lago_id"] for m in methods}

    made = api.put(f"/api/v1/customers/acme/payment_methods/{by_id[mastercard]}/set_as_default")
    assert made.status_code == 200, made.json()
    assert made.json()["payment_method"] == {**made.json()["payment_method"], "is_default": True,
                                              "provider_method_id": mastercard}
    assert StripeCustomer.objects.get(pk=account.pk).default_payment_method_id == mastercard
    stripe_customer = ls_client(stripe_env).v1.customers.retrieve(account.stripe_customer_id)
    assert stripe_customer.invoice_settings.default_payment_method == mastercard

    removed = api.delete(f"/api/v1/customers/acme/payment_methods/{by_id[mastercard]}")
    assert removed.status_code == 200, removed.json()
    assert removed.json()["payment_method"]["is_default"] is False
    # The default is gone: invoices fall back to Checkout links; only the Visa is left.
    assert StripeCustomer.objects.get(pk=account.pk).default_payment_method_id == ""
    left = api.get("/api/v1/customers/acme/payment_methods").json()["payment_methods"]
    assert [(m["provider_method_id"], m["is_default"]) for m in left] == [(visa, False)]
    again = api.delete(f"/api/v1/customers/acme/payment_methods/{by_id[mastercard]}")
    assert (again.status_code, again.json()["code"]) == (404, "payment_method_not_found")


def test_errors_and_isolation(service_factory, api_client_for, stripe_env):
    api, _, mastercard = _world(service_factory, api_client_for, stripe_env)
    lago_id = api.get("/api/v1/customers/acme/payment_methods").json()["payment_methods"][0]["lago_id"]
    assert api.put("/api/v1/customers/acme/payment_methods/nope/set_as_default").json()["code"] == \
        "payment_method_not_found"
    assert api.get("/api/v1/customers/nobody/payment_methods").json()["code"] == "customer_not_found"
    api.post("/api/v1/customers", {"customer": {"external_id": "bare"}}, format="json")
    empty = api.get("/api/v1/customers/bare/payment_methods").json()
    assert (empty["payment_methods"], empty["meta"]["total_count"]) == ([], 0)
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert desk.get("/api/v1/customers/acme/payment_methods").status_code == 404
    assert desk.delete(f"/api/v1/customers/acme/payment_methods/{lago_id}").status_code == 404
    assert desk.put(f"/api/v1/customers/acme/payment_methods/{lago_id}/set_as_default").status_code == 404

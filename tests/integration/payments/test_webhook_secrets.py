"""Stripe endpoint secrets are encrypted at rest, and a forged Stripe webhook leaves no row behind.

dj-stripe keeps its endpoint secret in plain text and stores a WebhookEventTrigger for every request that carries
a Stripe-Signature header; the hub moves the secret into an encrypted copy and checks the signature first.
"""
from __future__ import annotations

import importlib
import io
import json
import time

import pytest
import stripe
from django.apps import apps as django_apps
from django.db import connection
from djstripe.models import WebhookEndpoint, WebhookEventTrigger

from apps.payments.models import StripeWebhookSecret
from tests.integration.payments.stripe_fixtures import WEBHOOK_SECRET, ls_client, post_signed, stripe_event

pytestmark = pytest.mark.django_db


def _raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {'djstripe_id' if table.startswith('djstripe') else 'id'} = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def customer_event(stripe_env):
    """A customer.created event for a real localstripe customer (dj-stripe re-fetches the object); no hub handler."""
    customer = ls_client(stripe_env).v1.customers.create(params={"email": "acme@example.com"})
    return lambda: stripe_event("customer.created", customer.to_dict())


def test_the_endpoint_secret_is_stored_only_encrypted(webhook_endpoint):
    assert _raw("djstripe_webhookendpoint", "secret", webhook_endpoint.pk) == ""  # dj-stripe's column left blank
    row = StripeWebhookSecret.objects.get(endpoint_id=webhook_endpoint.pk)
    stored = _raw("payments_stripewebhooksecret", "secret", row.pk)
    assert WEBHOOK_SECRET not in stored and stored.startswith("gAAAAA")  # a Fernet token
    assert row.secret == WEBHOOK_SECRET


def test_a_signed_event_is_accepted_and_kept(client, webhook_endpoint, customer_event):
    response = post_signed(client, webhook_endpoint, customer_event())
    assert response.status_code == 200, response.content
    (trigger,) = WebhookEventTrigger.objects.all()
    assert trigger.valid and trigger.processed and str(trigger.pk) == response.content.decode()


def test_forged_requests_are_refused_and_leave_no_trigger_row(client, webhook_endpoint, settings, customer_event):
    url = f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}"
    payload = json.dumps(customer_event())
    now = int(time.time())
    forged_headers = [
        stripe.WebhookSignature.generate_signature_header(payload, "whsec_guessed"),  # wrong secret
        f"t={now},v1={'0' * 64}",  # well-formed, wrong digest
        "garbage",
        stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET, timestamp=now - 3600),  # replay
    ]
    for header in forged_headers:
        response = client.post(url, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
        assert response.status_code == 400, header
    # dj-stripe in DEBUG takes the secret from this header (for the Stripe CLI); the hub does not.
    settings.DEBUG = True
    response = client.post(url, data=payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=stripe.WebhookSignature.generate_signature_header(payload, "whsec_mine"),
                           HTTP_X_DJSTRIPE_WEBHOOK_SECRET="whsec_mine")
    assert response.status_code == 400
    assert client.post(url, data=payload, content_type="application/json").status_code == 400  # unsigned
    assert WebhookEventTrigger.objects.count() == 0


def test_a_secret_written_without_a_signal_is_sealed_before_use(client, webhook_endpoint, customer_event):
    WebhookEndpoint.objects.filter(pk=webhook_endpoint.pk).update(secret="whsec_rotated")  # a bulk update: no signal
    response = post_signed(client, webhook_endpoint, customer_event(), secret="whsec_rotated")
    assert response.status_code == 200, response.content
    assert _raw("djstripe_webhookendpoint", "secret", webhook_endpoint.pk) == ""
    assert StripeWebhookSecret.objects.get(endpoint_id=webhook_endpoint.pk).secret == "whsec_rotated"
    assert post_signed(client, webhook_endpoint, customer_event()).status_code == 400  # the old secret no longer verifies


def test_the_migration_seals_existing_secrets_and_drops_refused_triggers(webhook_endpoint):
    WebhookEndpoint.objects.filter(pk=webhook_endpoint.pk).update(secret="whsec_from_before")
    StripeWebhookSecret.objects.all().delete()
    kept = WebhookEventTrigger.objects.create(remote_ip="127.0.0.1", headers={}, body="{}", valid=True)
    WebhookEventTrigger.objects.create(remote_ip="203.0.113.9", headers={}, body="forged", valid=False)

    migration = importlib.import_module("apps.payments.migrations.0003_stripe_webhook_secret")
    migration.seal_existing(django_apps, None)

    assert _raw("djstripe_webhookendpoint", "secret", webhook_endpoint.pk) == ""
    assert StripeWebhookSecret.objects.get(endpoint_id=webhook_endpoint.pk).secret == "whsec_from_before"
    assert list(WebhookEventTrigger.objects.values_list("pk", flat=True)) == [kept.pk]


def test_webhook_signing_keys_are_encrypted_at_rest_and_shown_to_their_service(service_factory, api_client_for):
    issued = service_factory("cloud")
    client = api_client_for(issued.raw_key)
    created = client.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": "http://127.0.0.1:9/h"}},
                          format="json").json()["webhook_endpoint"]
    from apps.webhooks.models import WebhookEndpoint as HubEndpoint

    endpoint = HubEndpoint.objects.get()
    stored = _raw("webhooks_webhookendpoint", "signing_secret", endpoint.pk)
    assert created["hmac_key"] == endpoint.signing_secret and created["hmac_key"] not in stored
    assert stored.startswith("gAAAAA")


def test_the_migration_encrypts_existing_signing_keys(service_factory):
    from apps.webhooks.models import WebhookEndpoint as HubEndpoint

    endpoint = HubEndpoint.objects.create(service=service_factory("cloud").service, webhook_url="http://127.0.0.1:9/h")
    with connection.cursor() as cursor:  # as the column held it before encryption
        cursor.execute("UPDATE webhooks_webhookendpoint SET signing_secret = %s WHERE id = %s", ["plain-key", endpoint.pk])
    migration = importlib.import_module("apps.webhooks.migrations.0003_signing_secret_encrypted")
    migration.encrypt_existing(django_apps, None)
    migration.encrypt_existing(django_apps, None)  # a rerun keeps the key
    stored = _raw("webhooks_webhookendpoint", "signing_secret", endpoint.pk)
    assert stored.startswith("gAAAAA") and HubEndpoint.objects.get().signing_secret == "plain-key"



def _keys_reload(*models_fields) -> None:
    # The field derives its Fernet keys once per process (cached on the field); a rotation is a restart.
    for model, name in models_fields:
        field = model._meta.get_field(name)
        field.__dict__.pop("keys", None)
        field.__dict__.pop("f", None)


def test_secrets_reencrypt_moves_every_secret_to_a_new_key(webhook_endpoint, service_factory, settings):
    from django.core.management import call_command

    from apps.webhooks.models import WebhookEndpoint as HubEndpoint

    fields = ((HubEndpoint, "signing_secret"), (StripeWebhookSecret, "secret"))
    hub = HubEndpoint.objects.create(service=service_factory("cloud").service, webhook_url="http://127.0.0.1:9/h")
    key = hub.signing_secret
    old = settings.SECRET_KEY
    try:
        settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key-" + "x" * 40, [old]
        _keys_reload(*fields)
        call_command("secrets_reencrypt", stdout=io.StringIO())
        settings.SECRET_KEY_FALLBACKS = []  # the old key gone: both still open with the new one alone
        _keys_reload(*fields)
        assert HubEndpoint.objects.get().signing_secret == key
        assert StripeWebhookSecret.objects.get(endpoint_id=webhook_endpoint.pk).secret == WEBHOOK_SECRET

        settings.SECRET_KEY = "a-key-that-opens-nothing-" + "y" * 30
        _keys_reload(*fields)
        with pytest.raises(Exception, match="no key"):
            call_command("secrets_reencrypt", stdout=io.StringIO())
    finally:
        settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = old, []
        _keys_reload(*fields)

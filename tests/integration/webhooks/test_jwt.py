"""Lago's `jwt` webhook endpoints: RS256-signed deliveries that verify with the key GET /webhooks/json_public_key
serves (issue 21). Verified with PyJWT, an implementation independent of apps.webhooks.signing."""
from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import override_settings

from apps.webhooks.models import WebhookDelivery
from apps.webhooks.services import webhook_delivery_send, webhook_event_record

pytestmark = pytest.mark.django_db

INVOICE = {"lago_id": "8b6e5f0a-2f7c-4c55-9c5e-6a1d7f0b9a11", "number": "NEXA-2026-000001", "total_amount_cents": 11300}


@pytest.fixture(scope="module")
def key_pair():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(pem).decode(), public


@pytest.fixture
def cloud(service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    client = api_client_for(issued.raw_key)
    client.service = issued.service
    return client


def _endpoint(client, url, **extra):
    return client.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": url, **extra}},
                       format="json")


def test_a_jwt_webhook_verifies_with_the_served_public_key(cloud, receiver, key_pair,
                                                            django_capture_on_commit_callbacks):
    private_b64, public_pem = key_pair
    with override_settings(WEBHOOK_JWT_PRIVATE_KEY=private_b64, PUBLIC_BASE_URL="https://billing.nexa.example"):
        created = _endpoint(cloud, receiver.url + "/hooks", signature_algo="jwt")
        assert created.status_code == 200, created.json()
        assert created.json()["webhook_endpoint"]["signature_algo"] == "jwt"
        served = cloud.get("/api/v1/webhooks/json_public_key").json()["webhook"]["public_key"]
        text = cloud.get("/api/v1/webhooks/public_key")
        with django_capture_on_commit_callbacks(execute=True):
            webhook_event_record(event_type="invoice.created", object_type="invoice", payload_object=INVOICE,
                                 service_ids=[cloud.service.pk])
    assert (text.status_code, text["Content-Type"], text.content.decode()) == (
        200, "text/plain; charset=utf-8", served)
    # Ruby's Base64.encode64, as Lago serves it: lines of 60 characters, each ending in a newline.
    assert all(len(line) == 60 for line in served.split("\n")[:-2]) and served.endswith("\n")
    assert base64.b64decode(served) == public_pem
    (got,) = receiver.requests
    assert got.headers["x-lago-signature-algorithm"] == "jwt"
    claims = jwt.decode(got.headers["x-lago-signature"], base64.b64decode(served), algorithms=["RS256"],
                        issuer="https://billing.nexa.example")
    assert claims["data"].encode() == got.body
    assert json.loads(got.body)["invoice"] == INVOICE
    # A tampered token does not verify.
    header, payload, signature = got.headers["x-lago-signature"].split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"data": "{}", "iss": "https://billing.nexa.example"}).encode())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{forged.decode().rstrip('=')}.{signature}", public_pem, algorithms=["RS256"])


def test_without_the_key_jwt_is_refused_and_no_public_key_is_served(cloud, receiver, key_pair, endpoint_for):
    with override_settings(WEBHOOK_JWT_PRIVATE_KEY=""):
        refused = _endpoint(cloud, receiver.url + "/hooks", signature_algo="jwt")
        assert (refused.status_code, refused.json()["error_details"]) == (422, {"signature_algo": ["value_is_invalid"]})
        for path in ("public_key", "json_public_key"):
            response = cloud.get(f"/api/v1/webhooks/{path}")
            assert (response.status_code, response.json()["code"]) == (404, "webhook_jwt_public_key_not_found")
        assert _endpoint(cloud, receiver.url + "/hooks").json()["webhook_endpoint"]["signature_algo"] == "hmac"
        # An endpoint that chose jwt while the key was set, the key gone since: the attempt fails and is retried.
        endpoint_for(cloud.service, receiver.url + "/jwt", signature_algo="jwt")
        webhook_event_record(event_type="invoice.created", object_type="invoice", payload_object=INVOICE,
                             service_ids=[cloud.service.pk])
        delivery = WebhookDelivery.objects.get(endpoint__webhook_url=receiver.url + "/jwt")
        sent = webhook_delivery_send(delivery_id=delivery.pk)
    assert sent.status == WebhookDelivery.Status.RETRYING
    assert "WEBHOOK_JWT_PRIVATE_KEY" in sent.last_error
    assert receiver.at("/jwt") == []


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_reads_the_public_key(cloud, key_pair, live_server):
    from lago_python_client.client import Client

    private_b64, public_pem = key_pair
    key = cloud._credentials["HTTP_AUTHORIZATION"].split()[1]
    with override_settings(WEBHOOK_JWT_PRIVATE_KEY=private_b64):
        assert Client(api_key=key, api_url=live_server.url).webhooks.public_key() == public_pem

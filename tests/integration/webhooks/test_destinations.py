"""Webhooks never reach the hub's own network: loopback, private, link-local or own addresses are refused when an
endpoint is registered and again at every send (DNS rebinding), unless WEBHOOK_ALLOWED_HOSTS lists the host.

Name resolution is faked at socket.getaddrinfo, the call every lookup goes through; no test connects anywhere but
127.0.0.1.
"""
from __future__ import annotations

import socket

import pytest
from django.db.models import Count

from apps.webhooks import destinations
from apps.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from apps.webhooks.services import webhook_delivery_send, webhook_event_record

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook_endpoints"
PUBLIC = "93.184.215.14"  # a global address; never connected to (every test refuses or reroutes it)


@pytest.fixture(autouse=True)
def _fresh_own_addresses():
    destinations._own_cache.clear()
    yield
    destinations._own_cache.clear()


@pytest.fixture
def dns(monkeypatch):
    """Answers for the names in `table` (a list of addresses, or a callable returning one); real lookups otherwise."""
    real = socket.getaddrinfo
    table: dict[str, object] = {}
    asked: list[str] = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            asked.append(name)
            answer = table[name]
            addresses = answer() if callable(answer) else answer
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in addresses]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return _Dns(table, asked)


class _Dns:
    def __init__(self, table: dict, asked: list[str]):
        self.table, self.asked = table, asked

    def __setitem__(self, name: str, answer) -> None:
        self.table[name] = answer


@pytest.fixture
def cloud(service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    client = api_client_for(issued.raw_key)
    client.service = issued.service
    return client


def _create(client, url: str):
    return client.post(URL, {"webhook_endpoint": {"webhook_url": url}}, format="json")


REFUSED = {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
           "error_details": {"webhook_url": ["url_not_allowed"]}}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hooks",
    "http://localhost/hooks",
    "http://[::1]:9000/hooks",
    "http://[::ffff:127.0.0.1]/hooks",  # IPv4-mapped loopback
    "http://10.1.2.3/hooks",
    "https://192.168.0.10/hooks",
    "http://172.16.5.4/hooks",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata service
    "http://[fe80::1]/hooks",
    "http://0.0.0.0:8000/hooks",
    "http://100.64.0.1/hooks",  # carrier-grade NAT
])
def test_endpoint_on_a_non_public_address_is_refused_by_default(cloud, settings, url):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = _create(cloud, url)
    assert response.status_code == 422, response.json()
    assert response.json() == REFUSED
    assert not WebhookEndpoint.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused_and_an_update_too(cloud, settings, dns):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    dns["hooks.partner.example"] = [PUBLIC]
    dns["intranet.partner.example"] = [PUBLIC, "10.0.0.7"]  # one private address among public ones is enough
    assert _create(cloud, "http://intranet.partner.example/hooks").json() == REFUSED
    created = _create(cloud, "https://hooks.partner.example/hooks")
    assert created.status_code == 200, created.json()
    lago_id = created.json()["webhook_endpoint"]["lago_id"]
    moved = cloud.put(f"{URL}/{lago_id}", {"webhook_endpoint": {"webhook_url": "http://127.0.0.1/x"}}, format="json")
    assert moved.json() == REFUSED
    assert WebhookEndpoint.objects.get().webhook_url == "https://hooks.partner.example/hooks"


def test_the_hubs_own_name_and_addresses_are_refused(cloud, settings, dns):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    settings.PUBLIC_BASE_URL = "https://billing.nexa.example"
    dns["billing.nexa.example"] = [PUBLIC]
    dns["alias.partner.example"] = [PUBLIC]  # a public name that points back at the hub
    assert _create(cloud, "https://billing.nexa.example/api/v1/customers").json() == REFUSED
    assert _create(cloud, "https://alias.partner.example/hooks").json() == REFUSED
    assert not WebhookEndpoint.objects.exists()


def test_an_allowed_host_may_be_on_loopback(cloud, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert _create(cloud, "http://127.0.0.1:8080/hooks").status_code == 200
    assert _create(cloud, "http://10.1.2.3/hooks").json() == REFUSED  # only the listed host


def _send_one(service) -> WebhookDelivery:
    (event,) = webhook_event_record(event_type="invoice.created", object_type="invoice",
                                    payload_object={"lago_id": "inv-1"}, service_ids=[service.pk])
    delivery = WebhookDelivery.objects.get(event=event)
    return webhook_delivery_send(delivery_id=delivery.pk)


def test_a_name_rebound_to_loopback_after_registration_is_refused_at_send_time(cloud, settings, dns, receiver):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    port = receiver.url.rsplit(":", 1)[1]
    dns["rebind.partner.example"] = [PUBLIC]
    assert _create(cloud, f"http://rebind.partner.example:{port}/hooks").status_code == 200

    dns["rebind.partner.example"] = ["127.0.0.1"]  # the attacker's DNS now answers with the hub's loopback
    delivery = _send_one(cloud.service)
    assert delivery.status == "retrying"
    assert "loopback" in delivery.last_error and "refused" in delivery.last_error
    assert receiver.requests == []  # nothing reached the receiver listening on 127.0.0.1
    (attempt,) = WebhookAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code is None and not attempt.succeeded


def test_the_send_connects_to_the_address_it_checked(cloud, settings, dns, receiver):
    """One lookup per send: a second lookup by the HTTP client could be answered differently (rebinding)."""
    port = receiver.url.rsplit(":", 1)[1]
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.dev.example"]
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])  # registration, then the send's check; any further lookup fails
    dns["hooks.dev.example"] = lambda: next(answers, [])
    assert _create(cloud, f"http://hooks.dev.example:{port}/hooks").status_code == 200

    delivery = _send_one(cloud.service)
    assert delivery.status == "succeeded", delivery.last_error
    (request,) = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["host"] == f"hooks.dev.example:{port}"  # the name, not the address, as the Host
    assert dns.asked.count("hooks.dev.example") == 2


def test_every_delivery_to_a_refused_address_fails_without_a_connection(service_factory, settings, dns, receiver):
    """Rows written before the check existed (or by hand) are refused at send time as well."""
    settings.WEBHOOK_ALLOWED_HOSTS = []
    cloud = service_factory("cloud").service
    WebhookEndpoint.objects.create(service=cloud, webhook_url=receiver.url + "/hooks")
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    delivery = _send_one(cloud)
    assert (delivery.status, receiver.requests) == ("failed", [])
    assert WebhookAttempt.objects.aggregate(n=Count("pk"))["n"] == 1

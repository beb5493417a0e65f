"""Stripe test fixtures: one localstripe per session on 127.0.0.1, signed webhook posts, hub rows.

Imported by tests/integration/payments/conftest.py and tests/api/test_payments.py; the process
is a module-level singleton, so both share one localstripe per session.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import stripe

LAUNCHER = Path(__file__).resolve().parents[2] / "ls_server.py"
TEST_KEY = "sk_test_" + "1" * 24  # not the settings placeholder, which disables collection
WEBHOOK_SECRET = "whsec_payments_test_secret"
_proc: dict = {}
_ids = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start() -> str:
    if "url" in _proc:
        return _proc["url"]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(f"{url}/v1/balance", headers={"Authorization": f"Bearer {TEST_KEY}"})
    for _ in range(100):  # bounded: 10 s
        if proc.poll() is not None:
            raise RuntimeError("localstripe exited at start")
        try:
            urllib.request.urlopen(request, timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.terminate()
        proc.wait(5)
        raise RuntimeError("localstripe did not answer within 10 s")
    _proc.update(url=url, proc=proc)
    return url


def _stop() -> None:
    proc = _proc.pop("proc", None)
    _proc.pop("url", None)
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def localstripe(request):
    """Base URL of the session's localstripe (started on first use, terminated at session end)."""
    url = _start()
    request.addfinalizer(_stop)
    return url


@pytest.fixture
def stripe_env(localstripe, settings):
    """Point our gateway (settings) and dj-stripe (the stripe globals it reads) at localstripe."""
    settings.STRIPE_API_BASE = localstripe
    settings.STRIPE_TEST_SECRET_KEY = TEST_KEY
    settings.STRIPE_LIVE_MODE = False
    settings.STRIPE_MAX_NETWORK_RETRIES = 0  # localstripe ignores idempotency keys (research/stripe.md §e)
    saved = stripe.api_base, stripe.api_key, stripe.max_network_retries
    stripe.api_base, stripe.api_key, stripe.max_network_retries = localstripe, TEST_KEY, 0
    yield localstripe
    stripe.api_base, stripe.api_key, stripe.max_network_retries = saved


def ls_client(url: str) -> stripe.StripeClient:
    """A raw client for test set-up and assertions (the app itself goes through stripe_gateway)."""
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": url}, max_network_retries=0)


def ls_post(url: str, path: str, data: dict | None = None) -> dict:
    body = json.dumps(data or {}).encode()
    request = urllib.request.Request(
        url + path, data=body, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {TEST_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def webhook_endpoint(db, stripe_env):
    """dj-stripe's endpoint row with a known secret (production creates it through the admin)."""
    from djstripe.models import Account, WebhookEndpoint

    account, _ = Account.objects.get_or_create(id="acct_localstripe", defaults={"livemode": False})
    return WebhookEndpoint.objects.create(
        id=f"we_test_{next(_ids)}",
        url="http://testserver/",
        secret=WEBHOOK_SECRET,
        enabled_events=["*"],
        status="enabled",
        api_version="",
        livemode=False,
        djstripe_owner_account=account,
    )


def stripe_event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test_{next(_ids)}_{int(time.time() * 1000)}",
        "object": "event",
        "type": event_type,
        "created": created or int(time.time()),
        "livemode": False,
        "api_version": "2026-08-26.dahlia",
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


def post_signed(client, endpoint, event: dict, secret: str = WEBHOOK_SECRET):
    """POST an event to dj-stripe's real webhook view, signed like Stripe does."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return client.post(
        f"/stripe/webhook/{endpoint.djstripe_uuid}",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )


def make_customer(external_id: str | None = None, **fields):
    from apps.customers.models import Customer

    n = next(_ids)
    return Customer.objects.create(
        external_id=external_id or f"cust-{n}-{time.time_ns()}",
        name=fields.pop("name", "Acme"),
        email=fields.pop("email", f"billing{n}@acme.test"),
        currency="CAD",
        country="CA",
        state="ON",
        **fields,
    )


def make_invoice(customer, *, total_amount_cents: int = 11300, status: str = "finalized"):
    """A finalized invoice written directly (invoicing services are another issue's)."""
    from apps.invoicing.models import Invoice

    n = next(_ids)
    return Invoice.objects.create(
        customer=customer,
        status=status,
        currency="CAD",
        number=f"PAYTEST-{time.time_ns()}-{n}" if status != "draft" else "",
        issuing_date=dt.date(2026, 3, 1),
        fees_amount_cents=total_amount_cents,
        sub_total_excluding_taxes_amount_cents=total_amount_cents,
        sub_total_including_taxes_amount_cents=total_amount_cents,
        total_amount_cents=total_amount_cents,
        finalized_at=None,
    )


def save_card(url: str, customer, magic_pm: str = "pm_card_visa"):
    """Give the hub customer a Stripe customer with `magic_pm` attached as its default card."""
    from apps.payments.models import StripeCustomer
    from apps.payments.services import stripe_customer_ensure

    account = stripe_customer_ensure(customer=customer)
    client = ls_client(url)
    pm = client.v1.payment_methods.attach(magic_pm, params={"customer": account.stripe_customer_id})
    client.v1.customers.update(account.stripe_customer_id, params={"invoice_settings": {"default_payment_method": pm.id}})
    StripeCustomer.objects.filter(pk=account.pk).update(default_payment_method_id=pm.id)
    account.refresh_from_db()
    return account

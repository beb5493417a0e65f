"""Every bad input of issue 17 answers Lago's 4xx body and writes nothing (tests/api/test_fuzz.py keeps it so)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from django.apps import apps as django_apps
from django.conf import settings

from tests.integration.usage.conftest import make_world

pytestmark = pytest.mark.django_db

T0 = int(datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp())  # inside the world's subscription (from Jan 1)
BIGINT_MAX = 2**63 - 1


def _counts() -> dict[str, int]:
    """Rows of every hub table an API call can write."""
    return {model._meta.label: model.objects.count() for model in django_apps.get_models()
            if model._meta.app_label in {"customers", "catalog", "subscriptions", "usage", "invoicing", "webhooks",
                                         "payments", "ledger"}}


def _json(client, method: str, path: str, body) -> object:
    return getattr(client, method)(path, data=json.dumps(body) if not isinstance(body, bytes) else body,
                                   content_type="application/json")


def _refused(response, status: int, body: dict) -> None:
    assert response.status_code == status, response.content[:300]
    assert response.json() == body


def _invalid(details: dict) -> dict:
    return {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors", "error_details": details}


@pytest.fixture
def world(service_factory):
    world = make_world(service_factory, "nexacloud")
    world.sub = world.subscription("sub-1")
    return world


@pytest.fixture
def client(world, api_client_for):
    client = api_client_for(world.raw_key)
    _json(client, "post", "/api/v1/customers", {"customer": {"external_id": "cust-1", "name": "Acme"}})
    add_on = {"code": "setup", "name": "Setup", "amount_cents": 1000, "amount_currency": "CAD"}
    assert _json(client, "post", "/api/v1/add_ons", {"add_on": add_on}).status_code == 200
    return client


def _event(tx: str, code: str = "storage", **overrides) -> dict:
    return {"transaction_id": tx, "external_subscription_id": "sub-1", "code": code, "timestamp": T0,
            "properties": {"gb": "1"}, **overrides}


def _counter(key: str, code: str = "storage", **overrides) -> dict:
    return {"idempotency_key": key, "external_subscription_id": "sub-1", "code": code, "quantity": "1",
            "timestamp": T0, **overrides}


# ------------------------------------------------------------------ 413: bodies over the limit, named


def _realistic_batch(size: int) -> dict:
    """Events shaped like a real service's: ids, a dozen properties of the kinds apps send."""
    return {"events": [
        {"transaction_id": f"nexacloud-usage-2026-01-10T00:00:00Z-vm-{i:06d}-{'a1b2c3d4' * 2}",
         "external_subscription_id": "sub-1", "code": "storage", "timestamp": T0 + i,
         "properties": {"gb": "12.345678", "region": "ca-central-1", "zone": "ca-central-1a",
                        "instance_id": f"i-{i:017x}", "instance_type": "m7g.2xlarge", "project": "analytics-prod",
                        "environment": "production", "tier": "premium", "tags": "team:data,owner:platform",
                        "hostname": f"worker-{i:05d}.prod.internal.nexacloud.example.com",
                        "operation": "snapshot", "request_id": f"{i:08x}-4b1d-4c0a-9e7f-2f6d1c8b9a{i % 100:02d}"}}
        for i in range(size)
    ]}


def test_a_valid_1000_event_batch_with_realistic_properties_fits_the_limit(client):
    body = json.dumps(_realistic_batch(1000)).encode()
    assert len(body) * 4 < settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # room for values four times as long
    response = _json(client, "post", "/api/v1/events/batch", body)
    assert response.status_code == 200
    assert len(response.json()["events"]) == 1000


@pytest.mark.parametrize("path", ["/api/v1/events/batch", "/api/v1/customers", "/api/v1/plans"])
def test_a_body_over_the_limit_is_413_naming_the_limit_and_writes_nothing(client, path):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps(_realistic_batch(8000)).encode()
    assert len(body) > limit
    before = _counts()
    _refused(_json(client, "post", path, body), 413, {
        "status": 413, "error": f"Payload Too Large: the request body exceeds {limit} bytes",
        "code": "payload_too_large"})
    assert _counts() == before


# ------------------------------------------------------------------ NUL bytes (and lone surrogates)


@pytest.mark.parametrize("method, path, body, details", [
    ("post", "/api/v1/customers", {"customer": {"external_id": "acme", "name": "Ac\u0000me"}}, {"name": ["value_is_invalid"]}),
    ("post", "/api/v1/customers", {"customer": {"external_id": "ac\u0000me"}}, {"external_id": ["value_is_invalid"]}),
    ("post", "/api/v1/customers", {"customer": {"external_id": "acme", "metadata": [
        {"key": "k", "value": "v\u0000"}]}}, {"metadata.0.value": ["value_is_invalid"]}),
    ("post", "/api/v1/customers", {"customer": {"external_id": "acme", "name": "\ud800"}}, {"name": ["value_is_invalid"]}),
    ("post", "/api/v1/events", {"event": _event("t\u0000x")}, {"transaction_id": ["value_is_invalid"]}),
    ("post", "/api/v1/events", {"event": _event("tx", properties={"gb": "1", "region\u0000": "x"})},
     {"properties": ["value_is_invalid"]}),
    ("post", "/api/v1/events/batch", {"events": [_event("ok"), _event("tx", properties={"gb": "1", "r": "\u0000"})]},
     {"1": {"properties.r": ["value_is_invalid"]}}),
    ("post", "/api/v1/usage", {"usage": [_counter("k\u0000")]}, {"0": {"idempotency_key": ["value_is_invalid"]}}),
    ("post", "/api/v1/billable_metrics", {"billable_metric": {"name": "n", "code": "c\u0000", "aggregation_type": "count_agg"}},
     {"code": ["value_is_invalid"]}),
    ("put", "/api/v1/subscriptions/sub-1", {"subscription": {"name": "x\u0000"}}, {"name": ["value_is_invalid"]}),
], ids=["string-field", "identifier", "nested", "lone-surrogate", "event-id", "property-key", "batch-item",
        "counter-key", "metric-code", "update"])
def test_nul_bytes_in_a_body_are_422_naming_the_field(client, method, path, body, details):
    before = _counts()
    _refused(_json(client, method, path, body), 422, _invalid(details))
    assert _counts() == before


@pytest.mark.parametrize("path", ["/api/v1/customers/ac%00me", "/api/v1/subscriptions/sub%00-1",
                                  "/api/v1/invoices/%00", "/api/v1/plans/p%00/x"])
def test_a_nul_byte_in_the_path_is_400(client, path):
    before = _counts()
    _refused(client.get(path), 400, {"status": 400, "error": "BadRequest: the path contains a NUL byte"})
    _refused(client.delete(path), 400, {"status": 400, "error": "BadRequest: the path contains a NUL byte"})
    assert _counts() == before


@pytest.mark.parametrize("query, name", [
    ("search_term=a%00", "search_term"), ("external_customer_id=%00", "external_customer_id"),
    ("page=1%00", "page"), ("statuses[]=draft&statuses[]=%00", "statuses[]"), ("x%00=1", "base"),
])
def test_a_nul_byte_in_a_query_parameter_is_422_naming_it(client, query, name):
    for path in ("/api/v1/customers", "/api/v1/invoices", "/api/v1/subscriptions"):
        _refused(client.get(f"{path}?{query}"), 422, _invalid({name: ["value_is_invalid"]}))


# ------------------------------------------------------------------ integers past 64 bits or a column's range


@pytest.mark.parametrize("query, details", [
    (f"page={2**63}", {"page": ["value_is_out_of_range"]}),
    ("page=2147483648", {"page": ["value_is_out_of_range"]}),
    ("page=0", {"page": ["value_is_out_of_range"]}),
    (f"per_page={2**64}", {"per_page": ["value_is_out_of_range"]}),
    (f"page={'9' * 40}", {"page": ["value_is_invalid"]}),
    ("per_page=-1", {"per_page": ["value_is_out_of_range"]}),
])
def test_page_numbers_past_the_range_are_422(client, query, details):
    for path in ("/api/v1/customers", "/api/v1/plans", "/api/v1/invoices", "/api/v1/webhook_endpoints"):
        _refused(client.get(f"{path}?{query}"), 422, _invalid(details))


def test_the_largest_page_answers_an_empty_page(client):
    response = client.get("/api/v1/customers?page=2147483647&per_page=1000")
    assert response.status_code == 200
    assert response.json()["customers"] == []


@pytest.mark.parametrize("query, details", [
    (f"amount_from={2**63}", {"amount_from": ["value_is_out_of_range"]}),
    (f"amount_to=-{2**63 + 1}", {"amount_to": ["value_is_out_of_range"]}),
])
def test_amount_filters_past_64_bits_are_422(client, query, details):
    _refused(client.get(f"/api/v1/invoices?{query}"), 422, _invalid(details))


def _plan(**overrides) -> dict:
    return {"plan": {"code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000,
                     "amount_currency": "CAD", **overrides}}


@pytest.mark.parametrize("body, details", [
    (_plan(amount_cents=2**63), {"amount_cents": ["value_is_out_of_range"]}),
    (_plan(amount_cents=10**30), {"amount_cents": ["value_is_out_of_range"]}),
    (_plan(trial_period="100000000"), {"trial_period": ["value_is_out_of_range"]}),
    (_plan(charges=[{"billable_metric_id": "00000000-0000-0000-0000-000000000000", "charge_model": "standard",
                     "min_amount_cents": 2**63, "properties": {"amount": "1"}}]),
     {"charges.0.min_amount_cents": ["value_is_out_of_range"]}),
])
def test_plan_amounts_past_their_column_are_422(client, body, details):
    before = _counts()
    _refused(_json(client, "post", "/api/v1/plans", body), 422, _invalid(details))
    assert _counts() == before


def test_one_off_amounts_past_64_bits_are_422(client):
    before = _counts()
    fee = {"add_on_code": "setup", "units": "1", "unit_amount_cents": 2**63}
    body = {"invoice": {"external_customer_id": "cust-1", "currency": "CAD", "fees": [fee]}}
    _refused(_json(client, "post", "/api/v1/invoices", body), 422,
             _invalid({"fees.0.unit_amount_cents": ["value_is_out_of_range"]}))
    # Each within range, but their product is not: the fee's amount_cents would not fit a bigint.
    fee = {"add_on_code": "setup", "units": "999999999999999999", "unit_amount_cents": 10**9}
    body = {"invoice": {"external_customer_id": "cust-1", "currency": "CAD", "fees": [fee]}}
    _refused(_json(client, "post", "/api/v1/invoices", body), 422,
             _invalid({"fees.0.units": ["value_is_out_of_range"]}))
    assert _counts() == before


@pytest.mark.parametrize("path", ["/api/v1/credit_notes", "/api/v1/credit_notes/estimate"])
def test_credit_note_amounts_past_64_bits_are_422(client, path):
    before = _counts()
    body = {"credit_note": {"invoice_id": "00000000-0000-0000-0000-000000000000", "refund_amount_cents": 2**63,
                            "items": [{"fee_id": "00000000-0000-0000-0000-000000000000", "amount_cents": 2**64}]}}
    response = _json(client, "post", path, body)
    assert response.status_code == 422
    assert response.json()["error_details"]["items.0.amount_cents"] == ["value_is_out_of_range"]
    assert _counts() == before


def test_usage_quantities_past_the_column_are_422(client):
    before = _counts()
    _refused(_json(client, "post", "/api/v1/usage", {"usage": [_counter("k", quantity=10**19)]}), 422,
             _invalid({"0": {"quantity": ["value_is_out_of_range"]}}))
    _refused(_json(client, "post", "/api/v1/events", {"event": _event("t", properties={"gb": 2**64})}), 422,
             _invalid({"properties": ["value_is_out_of_range"]}))
    assert _counts() == before


# ------------------------------------------------------------------ external_id at the API's maximum length


def test_an_external_id_at_the_maximum_length_is_stored_for_the_longest_service_code(service_factory, api_client_for):
    issued = service_factory("s" * 64)
    client = api_client_for(issued.raw_key)
    external_id = "é" + "x" * 254  # 255 characters, as CustomerIn allows
    response = _json(client, "post", "/api/v1/customers", {"customer": {"external_id": external_id, "name": "Long"}})
    assert response.status_code == 200, response.content
    assert response.json()["customer"]["external_id"] == external_id
    assert client.get(f"/api/v1/customers/{external_id}").json()["customer"]["name"] == "Long"
    _refused(_json(client, "post", "/api/v1/customers", {"customer": {"external_id": external_id + "x"}}), 422,
             _invalid({"external_id": ["value_is_out_of_range"]}))


# ------------------------------------------------------------------ unknown currencies


@pytest.mark.parametrize("method, path, body, details", [
    ("post", "/api/v1/customers", {"customer": {"external_id": "acme", "currency": "XYZ"}}, {"currency": ["value_is_invalid"]}),
    ("post", "/api/v1/plans", _plan(amount_currency="XYZ"), {"amount_currency": ["value_is_invalid"]}),
    ("post", "/api/v1/invoices", {"invoice": {"external_customer_id": "cust-1", "currency": "ZZZ", "fees": [
        {"add_on_code": "setup", "unit_amount_cents": 100}]}}, {"currency": ["value_is_invalid"]}),
    ("get", "/api/v1/invoices?currency=XYZ", None, {"currency": ["value_is_invalid"]}),
    ("get", "/api/v1/customers?currencies[]=CAD&currencies[]=XYZ", None, {"currencies": ["value_is_invalid"]}),
])
def test_unknown_currencies_are_422(client, method, path, body, details):
    before = _counts()
    response = client.get(path) if method == "get" else _json(client, method, path, body)
    _refused(response, 422, _invalid(details))
    assert _counts() == before


# ------------------------------------------------------------------ non-ASCII digits in numeric filters


@pytest.mark.parametrize("query, name", [
    ("page=\u0663", "page"), ("per_page=\u0661\u0660", "per_page"), ("page=1_0", "page"), ("page=%201", "page"),
    ("amount_from=\u0661\u0660\u0660", "amount_from"), ("amount_to=\uff11", "amount_to"),
    ("issuing_date_from=\u0662\u0660\u0662\u0666-01-01", "issuing_date_from"),
])
def test_non_ascii_digits_in_numeric_filters_are_422(client, query, name):
    response = client.get(f"/api/v1/invoices?{query}")
    assert response.status_code == 422
    assert set(response.json()["error_details"]) == {name}


def test_non_ascii_digits_in_body_integers_are_422(client):
    before = _counts()
    _refused(_json(client, "post", "/api/v1/plans", _plan(amount_cents="\u0661\u0660")), 422,
             _invalid({"amount_cents": ["value_is_invalid"]}))
    assert _counts() == before


# ------------------------------------------------------------------ /usage counters


def test_a_counter_whose_period_ends_before_it_starts_is_422(client):
    before = _counts()
    bad = _counter("k", period_from=T0, period_to=T0 - 1)
    _refused(_json(client, "post", "/api/v1/usage", {"usage": [_counter("ok"), bad]}), 422,
             _invalid({"1": {"period_to": ["value_is_out_of_range"]}}))
    _refused(_json(client, "post", "/api/v1/usage", {"usage": [_counter("k", period_from=T0, period_to="soon")]}), 422,
             _invalid({"0": {"period_to": ["invalid_format"]}}))
    assert _counts() == before
    ends_later = _counter("k", period_from=T0, period_to=T0 + 86_400 * 400)  # a period may end after today
    assert _json(client, "post", "/api/v1/usage", {"usage": [ends_later]}).status_code == 202


def test_a_negative_counter_of_a_count_metric_is_422(client):
    before = _counts()
    _refused(_json(client, "post", "/api/v1/usage", {"usage": [_counter("k", code="calls", quantity=-3)]}), 422,
             _invalid({"0": {"quantity": ["value_is_out_of_range"]}}))
    assert _counts() == before
    # A sum may go down (Lago's documented refunds of usage): still accepted.
    assert _json(client, "post", "/api/v1/usage", {"usage": [_counter("k", quantity="-2.5")]}).status_code == 202


# ------------------------------------------------------------------ events before 1970 or implausibly old


@pytest.mark.parametrize("timestamp", [-1, -86_400 * 365 * 30, "-0.5", 0])
def test_events_before_1970_are_422(client, timestamp):
    before = _counts()
    _refused(_json(client, "post", "/api/v1/events", {"event": _event("t", timestamp=timestamp)}), 422,
             _invalid({"timestamp": ["value_is_out_of_range"]}))
    assert _counts() == before


def test_events_older_than_the_past_bound_are_422(client, world, settings):
    now = datetime.now(timezone.utc)
    settings.USAGE_MAX_PAST_DAYS = (now - datetime(2026, 1, 5, tzinfo=timezone.utc)).days  # T0 is Jan 10: inside
    too_old = int((now - timedelta(days=settings.USAGE_MAX_PAST_DAYS + 1)).timestamp())
    before = _counts()
    for body, path, details in [
        ({"event": _event("t", timestamp=too_old)}, "events", {"timestamp": ["value_is_out_of_range"]}),
        ({"events": [_event("t", timestamp=str(too_old))]}, "events/batch", {"0": {"timestamp": ["value_is_out_of_range"]}}),
        ({"usage": [_counter("k", timestamp=None, period_from=too_old)]}, "usage", {"0": {"period_from": ["value_is_out_of_range"]}}),
    ]:
        _refused(_json(client, "post", f"/api/v1/{path}", body), 422, _invalid(details))
    assert _counts() == before
    assert _json(client, "post", "/api/v1/events", {"event": _event("t")}).status_code == 200


# ------------------------------------------------------------------ events outside the subscription's life


def test_an_event_before_its_subscription_started_is_refused_not_left_unbilled(client, world):
    """Lago matches events to the subscription whose life holds the timestamp (started_at <= ts, to the second);
    one that matches none is never billed. The hub refuses it, so the sender learns at once."""
    before = _counts()
    started = int(world.sub.started_at.timestamp())
    early = _event("early", timestamp=started - 1)
    _refused(_json(client, "post", "/api/v1/events", {"event": early}), 422,
             _invalid({"timestamp": ["outside_subscription_life"]}))
    _refused(_json(client, "post", "/api/v1/events/batch", {"events": [_event("ok"), early]}), 422,
             _invalid({"1": {"timestamp": ["outside_subscription_life"]}}))
    _refused(_json(client, "post", "/api/v1/usage", {"usage": [_counter("k", timestamp=None, period_from=started - 60)]}),
             422, _invalid({"0": {"period_from": ["outside_subscription_life"]}}))
    assert _counts() == before
    assert _json(client, "post", "/api/v1/events", {"event": _event("on-time", timestamp=started)}).status_code == 200


def test_an_event_between_two_subscriptions_of_one_id_is_refused(client, world):
    from apps.subscriptions.services import subscription_terminate

    subscription_terminate(subscription_id=world.sub.pk, at=datetime(2026, 1, 20, tzinfo=timezone.utc))
    world.subscription("sub-1", at=datetime(2026, 2, 1, tzinfo=timezone.utc))
    gap = int(datetime(2026, 1, 25, tzinfo=timezone.utc).timestamp())
    before = _counts()
    _refused(_json(client, "post", "/api/v1/events", {"event": _event("gap", timestamp=gap)}), 422,
             _invalid({"timestamp": ["outside_subscription_life"]}))
    assert _counts() == before
    assert _json(client, "post", "/api/v1/events", {"event": _event("old-life")}).status_code == 200

"""A one-off invoice fee that would bill zero or less is refused with Lago's 422 and writes nothing (issue 15, 4)."""
from __future__ import annotations

import pytest

from apps.invoicing.models import Fee, Invoice
from apps.ledger.models import LedgerPosting
from apps.payments.models import PaymentAttempt
from apps.webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

GOOD = {"add_on_code": "tokens", "units": "2", "unit_amount_cents": 1999}


def _counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Invoice, Fee, WebhookEvent, LedgerPosting, PaymentAttempt))


@pytest.fixture
def acme(cloud):
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                  "state": "ON"}}, format="json")
    for code in ("tokens", "refund", "free", "dust"):
        add_on = {"code": code, "name": code, "amount_cents": 1999, "amount_currency": "CAD"}
        assert cloud.post("/api/v1/add_ons", {"add_on": add_on}, format="json").status_code == 200
    endpoint = {"webhook_url": "https://app.example.com/lago"}  # listens to every event: a success writes events
    assert cloud.post("/api/v1/webhook_endpoints", {"webhook_endpoint": endpoint}, format="json").status_code == 200
    return cloud


def _create(client, fees, **invoice):
    body = {"invoice": {"external_customer_id": "acme", "currency": "CAD", "fees": fees, **invoice}}
    return client.post("/api/v1/invoices", body, format="json")


@pytest.mark.parametrize("fees, details", [
    ([{"add_on_code": "refund", "units": "-1", "unit_amount_cents": 1999}], {"fees.0.units": ["value_is_out_of_range"]}),
    ([{"add_on_code": "free", "units": "0", "unit_amount_cents": 1999}], {"fees.0.units": ["value_is_out_of_range"]}),
    ([{"add_on_code": "free", "units": "3", "unit_amount_cents": 0}],
     {"fees.0.unit_amount_cents": ["value_is_out_of_range"]}),
    ([{"add_on_code": "refund", "unit_amount_cents": -500}], {"fees.0.unit_amount_cents": ["value_is_out_of_range"]}),
    ([{"add_on_code": "dust", "units": "0.001", "unit_amount_cents": 1}],  # 0.00001 CAD rounds to 0 cents
     {"fees.0.units": ["value_is_out_of_range"]}),
    ([GOOD, {"add_on_code": "refund", "units": "-3", "unit_amount_cents": 0}],
     {"fees.1.units": ["value_is_out_of_range"], "fees.1.unit_amount_cents": ["value_is_out_of_range"]}),
], ids=["negative-units", "zero-units", "zero-unit-amount", "negative-unit-amount", "rounds-to-zero", "one-bad-fee"])
def test_a_fee_billing_zero_or_less_is_refused_and_nothing_is_written(acme, fees, details) -> None:
    before = _counts()
    response = _create(acme, fees)
    assert response.status_code == 422
    assert response.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                               "error_details": details}
    assert _counts() == before

    assert _create(acme, [GOOD]).status_code == 200  # the same request, fixed, writes all of it
    assert _counts() != before


def test_an_unsupported_currency_is_refused_with_lago_s_422(acme) -> None:
    before = _counts()
    response = _create(acme, [GOOD], currency="XYZ")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"currency": ["value_is_invalid"]}
    assert _counts() == before

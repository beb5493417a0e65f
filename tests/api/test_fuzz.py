"""Fuzz every operation of the hub's OpenAPI document against a live hub (schemathesis).

The guard that keeps every bad input a Lago-shaped 4xx as the API grows: for each operation, valid and invalid
requests generated from the document (bodies, path and query parameters) must never answer 5xx, and every answer
must match the document (status code, content type, body schema). A new endpoint is fuzzed as soon as it is
routed and annotated (apps/api/openapi.py). Bounded: FUZZ_EXAMPLES (8) per operation, mode and target, about
1,100 requests.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def loopback_only(monkeypatch):
    """Resolve nothing but loopback: fuzzed webhook URLs must not send the suite to the internet.

    The live server commits, so webhook deliveries run (in-process) after each request; they fail fast instead.
    """
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"the fuzz test resolves only loopback, not {host!r}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def hub(live_server, transactional_db, loopback_only):
    """A live hub on 127.0.0.1 with one service and objects to aim at: a customer, a metric, a plan, a tax, an
    add-on, a coupon applied to the customer, a subscription, a one-off invoice and a credit note. Returns the base URL, a keyed session and the objects' ids
    by path parameter."""
    import requests

    from apps.customers.services import service_create

    issued = service_create(code="fuzz", name="Fuzz")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {issued.raw_key}"
    base = f"{live_server.url}/api/v1"

    def post(path: str, body: dict) -> dict:
        response = session.post(f"{base}/{path}", json=body)
        response.raise_for_status()
        return response.json()

    post("customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA", "state": "ON"}})
    metric = post("billable_metrics", {"billable_metric": {"name": "Calls", "code": "calls",
                                                           "aggregation_type": "count_agg"}})["billable_metric"]
    post("plans", {"plan": {"code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000,
                            "amount_currency": "CAD", "charges": [{"billable_metric_id": metric["lago_id"],
                                                                   "charge_model": "standard",
                                                                   "properties": {"amount": "0.5"}}]}})
    post("taxes", {"tax": {"name": "Fuzz tax", "code": "fuzz_tax", "rate": "5"}})
    post("add_ons", {"add_on": {"name": "Setup", "code": "setup", "amount_cents": 1000, "amount_currency": "CAD"}})
    post("coupons", {"coupon": {"name": "Welcome", "code": "welcome", "coupon_type": "fixed_amount",
                                "amount_cents": 500, "amount_currency": "CAD", "frequency": "once",
                                "expiration": "no_expiration"}})
    applied = post("applied_coupons", {"applied_coupon": {"external_customer_id": "acme", "coupon_code": "welcome"}})
    post("subscriptions", {"subscription": {"external_customer_id": "acme", "plan_code": "pro",
                                            "external_id": "sub-1"}})
    invoice = post("invoices", {"invoice": {"external_customer_id": "acme", "currency": "CAD", "fees": [
        {"add_on_code": "setup", "units": "2", "unit_amount_cents": 1000}]}})["invoice"]
    fee = invoice["fees"][0]["lago_id"]
    estimate = post("credit_notes/estimate", {"credit_note": {"invoice_id": invoice["lago_id"], "items": [
        {"fee_id": fee, "amount_cents": 100}]}})["estimated_credit_note"]
    note = post("credit_notes", {"credit_note": {"invoice_id": invoice["lago_id"], "items": [
        {"fee_id": fee, "amount_cents": 100}], "credit_amount_cents": 100 + estimate["taxes_amount_cents"]}})
    known = {
        "/api/v1/customers/{external_id}": {"external_id": "acme"},
        "/api/v1/customers/{external_customer_id}/current_usage": {"external_customer_id": "acme"},
        "/api/v1/customers/{external_customer_id}/projected_usage": {"external_customer_id": "acme"},
        "/api/v1/customers/{external_id}/past_usage": {"external_id": "acme"},
        "/api/v1/billable_metrics/{code}": {"code": "calls"},
        "/api/v1/plans/{code}": {"code": "pro"},
        "/api/v1/taxes/{code}": {"code": "fuzz_tax"},
        "/api/v1/add_ons/{code}": {"code": "setup"},
        "/api/v1/coupons/{code}": {"code": "welcome"},
        "/api/v1/customers/{external_id}/applied_coupons": {"external_id": "acme"},
        "/api/v1/customers/{external_id}/applied_coupons/{lago_id}": {
            "external_id": "acme", "lago_id": applied["applied_coupon"]["lago_id"]},
        "/api/v1/subscriptions/{external_id}": {"external_id": "sub-1"},
        "/api/v1/credit_notes/{lago_id}": {"lago_id": note["credit_note"]["lago_id"]},
        "/api/v1/fees/{lago_id}": {"lago_id": fee},
        **{f"/api/v1/customers/{{external_id}}/{kind}": {"external_id": "acme"}
           for kind in ("invoices", "credit_notes", "subscriptions")},
        # Not the payment routes: with a real invoice they would call Stripe.
        **{f"/api/v1/invoices/{{lago_id}}{action}": {"lago_id": invoice["lago_id"]}
           for action in ("", "/refresh", "/finalize", "/void", "/download")},
    }
    yield live_server.url, session, known
    session.close()


def _fuzz(operation, mode: GenerationMode, base_url: str, session, path_parameters: dict | None = None) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call(base_url=base_url, session=session)
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_operation_answers_within_the_document_and_never_5xx(hub, caplog):
    caplog.set_level(logging.ERROR, logger="django.request")  # thousands of expected 4xx lines otherwise
    base_url, session, known = hub
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/?format=json")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Random path parameters (mostly 404s), then the fixture's objects (bodies and queries on real rows).
        targets = [None] + ([known[operation.path]] if operation.path in known else [])
        for path_parameters, mode in itertools.product(targets, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
            try:
                _fuzz(operation, mode, base_url, session, path_parameters)
            except Unsatisfiable:  # nothing to negate: no parameters or body (GET /health)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, not just the first
                target = f" {path_parameters}" if path_parameters else ""
                failures.append(f"{operation.method.upper()} {operation.path}{target} ({mode.value}): {exc}")
    assert operations >= 49
    assert not failures, "\n\n".join(failures)

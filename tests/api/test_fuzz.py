"""Fuzz every operation of the hub's OpenAPI document against a live hub (schemathesis).

The guard that keeps every bad input a Lago-shaped 4xx as the API grows: for each operation, valid and invalid
requests generated from the document (bodies, path and query parameters) must never answer 5xx, and every answer
must match the document (status code, content type, body schema). A new endpoint is fuzzed as soon as it is
routed and annotated (apps/api/openapi.py). Bounded: FUZZ_EXAMPLES per operation and mode, about a minute in all.
"""
from __future__ import annotations

import logging
import os

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

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def hub(live_server, transactional_db):
    """A live hub on 127.0.0.1 with one service, a customer, a plan and a subscription to aim at."""
    from apps.customers.services import service_create

    issued = service_create(code="fuzz", name="Fuzz")
    headers = {"Authorization": f"Bearer {issued.raw_key}"}
    import requests

    session = requests.Session()
    session.headers.update(headers)
    base = f"{live_server.url}/api/v1"
    session.post(f"{base}/customers", json={"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                          "state": "ON"}}).raise_for_status()
    metric = session.post(f"{base}/billable_metrics", json={"billable_metric": {
        "name": "Calls", "code": "calls", "aggregation_type": "count_agg"}}).json()["billable_metric"]
    session.post(f"{base}/plans", json={"plan": {
        "code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric["lago_id"], "charge_model": "standard",
                     "properties": {"amount": "0.5"}}]}}).raise_for_status()
    session.post(f"{base}/subscriptions", json={"subscription": {
        "external_customer_id": "acme", "plan_code": "pro", "external_id": "sub-1"}}).raise_for_status()
    yield live_server.url, session
    session.close()


def _fuzz(operation, mode: GenerationMode, base_url: str, session) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call(base_url=base_url, session=session)
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_operation_answers_within_the_document_and_never_5xx(hub, caplog):
    caplog.set_level(logging.ERROR, logger="django.request")  # thousands of expected 4xx lines otherwise
    base_url, session = hub
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/?format=json")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, base_url, session)
            except Unsatisfiable:  # nothing to negate: no parameters or body (GET /health)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, not just the first
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert operations >= 49
    assert not failures, "\n\n".join(failures)

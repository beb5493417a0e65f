"""The contract itself: Lago 1.51's document is there, its recorded exceptions hold, and a broken body fails a test."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from . import lago
from .plugin import expect_violations


def test_lagos_document_is_the_one_the_suite_checks_against():
    path = lago.document_path()
    assert path is not None and path.is_file(), (
        "Lago's openapi.yaml (1.51.0) is missing: set LAGO_OPENAPI or put it at shared/contracts/"
        f"{lago.DOCUMENT_NAME} beside the clone (tests/contract/README.md)")
    contract = lago.contract()
    assert contract.version == "1.51.0"
    assert len(contract.operations) == 202
    assert contract.raw["info"]["license"]["name"] == "AGPLv3"


def test_each_recorded_exception_is_once_with_its_reason_and_points_into_the_document():
    recorded = lago.deviations()
    exceptions = recorded["schema_exceptions"]
    pointers = [item["pointer"] for item in exceptions]
    assert len(pointers) == len(set(pointers)), "an exception is recorded twice"
    document = lago.contract().raw
    for item in exceptions:
        assert item.get("reason", "").strip(), item
        assert set(item) <= {"pointer", "reason", "allow_null", "drop", "not_required", "wrap", "ref"}, item
        lago._pointer(document, item["pointer"])  # KeyError when Lago's document has no such node
    keys = [item["operation"] for item in recorded["absent_operations"]]
    assert len(keys) == len(set(keys))
    known = {op.key for op in lago.contract().operations}
    for item in recorded["absent_operations"]:
        assert item["operation"] in known and item.get("reason", "").strip(), item


def test_an_exception_only_widens_what_it_names():
    contract = lago.contract()
    customer = contract.document["components"]["schemas"]["CustomerBillingConfiguration"]["properties"]
    assert customer["invoice_grace_period"]["type"] == ["integer", "null"]
    assert contract.document["components"]["schemas"]["InvoiceBaseObject"]["properties"]["number"]["type"] == "string"
    # Lago's own example for a tax validates; the same tax with its rate as a string does not.
    tax = {"lago_id": "41190609-391a-4368-9549-d4348a85a8cd", "name": "TVA", "code": "vat", "rate": 20,
           "applied_to_organization": True, "created_at": "2023-07-06T14:35:58Z"}
    assert contract.errors("GET", "/api/v1/taxes/vat", 200, {"tax": tax}) [1] == []
    _, errors = contract.errors("GET", "/api/v1/taxes/vat", 200, {"tax": {**tax, "rate": "20"}})
    assert errors == ["tax/rate: '20' is not of type 'number'"]


def test_routes_pick_the_fixed_segment_before_a_parameter():
    contract = lago.contract()
    assert contract.operation("POST", "/api/v1/events/estimate_fees").operation_id == "eventEstimateFees"
    assert contract.operation("GET", "/api/v1/events/tx-1").path == "/events/{transaction_id}"
    assert contract.operation("GET", "/api/v1/health") is None  # the hub's own: not Lago's to judge
    assert contract.operation("GET", "/admin/") is None


@pytest.mark.django_db
def test_a_body_that_breaks_lagos_schema_is_caught_through_the_test_client(service_factory, api_client_for, monkeypatch):
    cloud = api_client_for(service_factory("nexacloud").raw_key)
    from apps.api.views import catalog
    from apps.catalog.representations import tax_out

    # Only the view's own reference: a module imported meanwhile must not keep the broken renderer.
    monkeypatch.setattr(catalog, "tax_out", lambda tax: {**tax_out(tax), "rate": str(tax.rate)})
    with expect_violations() as found:
        response = cloud.post("/api/v1/taxes", {"tax": {"name": "HST", "code": "hst_x", "rate": "13"}}, format="json")
    assert response.status_code == 200, response.json()
    assert found == ["POST /api/v1/taxes -> 200 (POST /taxes, createTax): tax/rate: '13.00000' is not of type 'number'"]


def test_the_plugin_fails_the_test_that_received_the_broken_body(tmp_path):
    """A whole pytest run: a test whose response breaks Lago's schema fails, naming the field; the same test
    with the hub's own body passes."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import pytest
        from django.test import Client

        def test_hub_body():
            assert Client().get("/api/v1/taxes").status_code == 401

        def test_broken_body(monkeypatch):
            from apps.api import errors
            monkeypatch.setitem(errors.REASONS, 401, 401)  # Lago's error is a string
            assert Client().get("/api/v1/taxes").status_code == 401
    """))
    env = {**os.environ, "PYTHONPATH": str(lago.REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-c", os.devnull,
         "--rootdir", str(tmp_path), "-p", "tests.bootstrap", "-p", "tests.contract.plugin", str(tmp_path)],
        cwd=lago.REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "FAILED" in out and "test_broken_body" in out and "test_hub_body" not in out.split("short test summary")[-1]
    assert "ContractViolation" in out and "error: 401 is not of type 'string'" in out, out

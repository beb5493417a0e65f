"""bench/lago_coverage.py: Lago's operations against the hub's URL resolver."""
from __future__ import annotations

import importlib.util

from . import lago

spec = importlib.util.spec_from_file_location("lago_coverage", lago.REPO / "bench" / "lago_coverage.py")
lago_coverage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lago_coverage)


def test_the_report_counts_every_operation_once():
    result = lago_coverage.coverage()
    assert result["operations"] == 202
    assert result["routed"] + result["absent"] + result["not_routed"] == 202
    rows = {row["operation"]: row for row in result["rows"]}
    assert rows["GET /customers/{external_customer_id}"]["status"] == "routed"
    assert rows["GET /customers/{external_customer_id}"]["view"] == "apps.api.views.customers.CustomerDetailView"
    assert rows["POST /customers/{external_customer_id}/checkout_url"]["status"] == "routed"


def test_a_path_the_hub_routes_without_the_method_is_not_routed():
    assert lago_coverage.routed("get", "/taxes/{code}")
    assert lago_coverage.routed("patch", "/taxes/{code}") is None
    assert lago_coverage.routed("get", "/no_such_resource") is None


def test_nothing_listed_as_deliberately_absent_is_routed():
    absent = {item["operation"] for item in lago.deviations()["absent_operations"]}
    routed = {row["operation"] for row in lago_coverage.coverage()["rows"] if row["status"] == "routed"}
    assert not absent & routed

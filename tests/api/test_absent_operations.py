"""Every operation docs/lago-deviations.yaml lists as deliberately absent answers Lago's 404 (or 405) body (issue 21): an app
calling one learns at once that the hub does not have it, in the body its Lago client already handles."""
from __future__ import annotations

import re

import pytest

from tests.contract import lago

pytestmark = pytest.mark.django_db

ABSENT = [item["operation"] for item in lago.deviations().get("absent_operations", [])]


def test_the_list_is_not_empty_and_each_has_a_reason():
    assert ABSENT
    assert all(item.get("reason") for item in lago.deviations()["absent_operations"])


@pytest.mark.parametrize("operation", ABSENT)
def test_an_absent_operation_answers_lagos_not_found(cloud, operation):
    method, path = operation.split(" ", 1)
    url = "/api/v1" + re.sub(r"\{[^}]+\}", "x", path)
    response = getattr(cloud, method.lower())(url, {} if method in ("POST", "PUT", "PATCH") else None, format="json")
    # 405 where the path is also a routed resource's (POST /billable_metrics/evaluate_expression is a metric code).
    assert response.status_code in (404, 405), (operation, response.content[:200])
    body = response.json()
    assert body["status"] == response.status_code and body["error"] in ("Not Found", "Method Not Allowed")
    assert set(body) == {"status", "error", "code"}

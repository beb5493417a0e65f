"""A plan's metadata (issue 21): Lago 1.51's /plans/{code}/metadata, replace, merge and delete, per service."""
from __future__ import annotations

import pytest

from apps.audit.models import PlanEvent

pytestmark = pytest.mark.django_db

PLAN = {"code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD"}


@pytest.fixture
def plan(cloud):
    assert cloud.post("/api/v1/plans", {"plan": PLAN}, format="json").status_code == 200
    return cloud


def _call(client, method, path="/api/v1/plans/pro/metadata", body=None):
    response = getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)
    return response.status_code, response.json()


def test_replace_merge_and_delete_as_lago(plan):
    assert plan.get("/api/v1/plans/pro").json()["plan"]["metadata"] is None
    assert _call(plan, "patch", body={"metadata": {}}) == (200, {"metadata": None})  # merging nothing into none
    assert _call(plan, "post", body={"metadata": {"tier": "gold", "crm": "42"}}) == (
        200, {"metadata": {"tier": "gold", "crm": "42"}})
    assert _call(plan, "patch", body={"metadata": {"crm": None, "region": "ca"}}) == (
        200, {"metadata": {"tier": "gold", "crm": None, "region": "ca"}})
    assert _call(plan, "post", body={"metadata": {"only": "this"}}) == (200, {"metadata": {"only": "this"}})
    assert _call(plan, "post", body={}) == (200, {"metadata": {"only": "this"}})  # no `metadata`: unchanged
    assert plan.get("/api/v1/plans/pro").json()["plan"]["metadata"] == {"only": "this"}
    assert _call(plan, "delete", "/api/v1/plans/pro/metadata/missing") == (200, {"metadata": {"only": "this"}})
    assert _call(plan, "delete", "/api/v1/plans/pro/metadata/only") == (200, {"metadata": {}})
    assert _call(plan, "delete") == (200, {"metadata": None})
    assert _call(plan, "delete", "/api/v1/plans/pro/metadata/only") == (
        404, {"status": 404, "error": "Not Found", "code": "metadata_not_found"})
    # Each change is audited as a change of the plan.
    changes = [event.metadata for event in PlanEvent.objects.filter(pgh_label="changed").order_by("pgh_id")]
    assert changes == [{"tier": "gold", "crm": "42"}, {"tier": "gold", "crm": None, "region": "ca"}, {"only": "this"},
                       {}, None]


def test_lagos_limits_and_other_services(plan, desk):
    too_many = {f"k{i}": "v" for i in range(51)}
    for bad in ({"metadata": too_many}, {"metadata": {"k": "x" * 256}}, {"metadata": {"k" * 101: "v"}},
                {"metadata": {"k": 1}}, {"metadata": ["k"]}):
        status, body = _call(plan, "post", body=bad)
        assert (status, body["error_details"]) == (422, {"metadata": ["value_is_invalid"]}), bad
    assert _call(plan, "post", body={"metadata": {f"k{i}": "v" for i in range(50)}})[0] == 200
    assert _call(plan, "patch", body={"metadata": {"one_more": "v"}})[0] == 422  # 51 once merged
    for method in ("post", "patch", "delete"):
        status, body = _call(desk, method, body={"metadata": {"a": "b"}} if method != "delete" else None)
        assert (status, body["code"]) == (404, "plan_not_found"), method


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_manages_plan_metadata(plan, live_server):
    from lago_python_client.client import Client

    key = plan._credentials["HTTP_AUTHORIZATION"].split()[1]
    lago = Client(api_key=key, api_url=live_server.url)
    assert lago.plans.replace_metadata("pro", {"tier": "gold"}) == {"tier": "gold"}
    assert lago.plans.merge_metadata("pro", {"region": None}) == {"tier": "gold", "region": None}
    assert lago.plans.delete_metadata_key("pro", "tier") == {"region": None}
    assert lago.plans.delete_all_metadata("pro") is None

"""GET /activity_logs and /activity_logs/{activity_id} (issue 21): the money audit's events as Lago's activity logs."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pghistory
import pytest
from django.contrib.auth import get_user_model

from apps.catalog.models import Plan

# Each request and change in its own transaction, as in production: pghistory's context lives for a transaction
# (set_config(..., true)), so in one test-wide transaction the "system" change would inherit the staff's context.
pytestmark = pytest.mark.django_db(transaction=True)

PLAN = {"code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD"}


@pytest.fixture
def history(cloud, desk):
    assert cloud.post("/api/v1/plans", {"plan": PLAN}, format="json").status_code == 200
    assert cloud.put("/api/v1/plans/pro", {"plan": {**PLAN, "name": "Pro Plus"}}, format="json").status_code == 200
    assert desk.post("/api/v1/plans", {"plan": {**PLAN, "code": "desk"}}, format="json").status_code == 200
    staff = get_user_model().objects.create_user("ops", email="ops@nexa.example", password="x", is_staff=True)
    with pghistory.context(user=staff.pk):  # as the admin's requests are (pghistory's middleware)
        Plan.objects.filter(service=cloud.service, code="pro").update(amount_cents=1200)
    Plan.objects.filter(service=cloud.service, code="pro").update(trial_period=7)  # no context: a task, a shell
    assert cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme"}},
                      format="json").status_code == 200
    response = cloud.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "acme", "plan_code": "pro", "external_id": "acme-pro"}}, format="json")
    assert response.status_code == 200, response.json()
    assert cloud.delete("/api/v1/subscriptions/acme-pro").status_code == 200
    return cloud


def _logs(client, **query):
    response = client.get("/api/v1/activity_logs", query)
    assert response.status_code == 200, response.json()
    return response.json()


def test_the_services_changes_newest_first_with_source_and_changes(history, desk):
    body = _logs(history)
    summary = [(log["activity_type"], log["activity_source"], log["resource_type"]) for log in body["activity_logs"]]
    assert summary == [
        ("subscription.terminated", "api", "Subscription"),
        ("plan.updated", "system", "Plan"),
        ("plan.updated", "front", "Plan"),
        ("plan.updated", "api", "Plan"),
        ("plan.created", "api", "Plan"),
    ]
    assert body["meta"]["total_count"] == 5
    terminated, by_task, by_staff, by_api, created = body["activity_logs"]
    plan_id = str(Plan.objects.get(service=history.service, code="pro").lago_id)
    assert {log["resource_id"] for log in (by_task, by_staff, by_api, created)} == {plan_id}
    assert by_api["activity_object_changes"] == {"name": ["Pro", "Pro Plus"]}
    assert by_staff["activity_object_changes"] == {"amount_cents": [1000, 1200]}
    assert (by_staff["user_email"], by_api["user_email"]) == ("ops@nexa.example", None)
    assert by_task["activity_object_changes"] == {"trial_period": [0, 7]}
    assert created["activity_object"]["name"] == "Pro" and created["activity_object_changes"] == {}
    assert by_task["activity_object"]["amount_cents"] == 1200 and by_task["activity_object"]["code"] == "pro"
    assert (created["external_customer_id"], created["external_subscription_id"]) == (None, None)
    assert (terminated["external_customer_id"], terminated["external_subscription_id"]) == ("acme", "acme-pro")
    assert terminated["activity_object_changes"]["status"][1] == "terminated"
    assert created["organization_id"] == str(history.service.lago_id)
    # NexaDesk sees only its own plan.
    assert [(log["activity_type"], log["activity_object"]["code"]) for log in _logs(desk)["activity_logs"]] == [
        ("plan.created", "desk")]


def test_one_activity_by_its_id_and_no_other_services(history, desk):
    listed = _logs(history)["activity_logs"]
    for log in listed:
        response = history.get(f"/api/v1/activity_logs/{log['activity_id']}")
        assert response.status_code == 200
        assert response.json() == {"activity_log": log}
    theirs = _logs(desk)["activity_logs"][0]["activity_id"]
    for activity_id in (theirs, "00000000-0000-0000-0000-000000000000", "nope", listed[0]["activity_id"][:-1] + "x"):
        response = history.get(f"/api/v1/activity_logs/{activity_id}")
        assert (response.status_code, response.json()) == (
            404, {"status": 404, "error": "Not Found", "code": "activity_log_not_found"})


def test_lagos_filters(history):
    def types(**query):
        return [log["activity_type"] for log in _logs(history, **query)["activity_logs"]]

    assert types(**{"activity_types[]": ["plan.created", "subscription.terminated"]}) == [
        "subscription.terminated", "plan.created"]
    assert types(**{"activity_sources[]": "front"}) == ["plan.updated"]
    assert types(**{"user_emails[]": "ops@nexa.example"}) == ["plan.updated"]
    assert types(**{"resource_types[]": "Subscription"}) == ["subscription.terminated"]
    assert types(external_subscription_id="acme-pro") == ["subscription.terminated"]
    assert types(external_customer_id="acme") == ["subscription.terminated"]
    plan_id = str(Plan.objects.get(service=history.service, code="pro").lago_id)
    assert len(types(**{"resource_ids[]": plan_id})) == 4
    today = datetime.now(UTC).date()
    assert len(types(from_date=today.isoformat(), to_date=today.isoformat())) == 5
    assert types(from_date=(today + timedelta(days=1)).isoformat()) == []
    page = _logs(history, per_page=2, page=3)
    assert len(page["activity_logs"]) == 1 and page["meta"]["total_pages"] == 3
    response = history.get("/api/v1/activity_logs", {"activity_sources[]": "robot"})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"activity_sources": ["value_is_invalid"]}


def test_the_lago_client_lists_and_finds_activity_logs(history, live_server):
    from lago_python_client.client import Client

    key = history._credentials["HTTP_AUTHORIZATION"].split()[1]
    lago = Client(api_key=key, api_url=live_server.url)
    listed = lago.activity_logs.find_all({"resource_types[]": "Plan", "per_page": 1})
    assert [log.activity_type for log in listed["activity_logs"]] == ["plan.updated"]
    assert listed["meta"]["total_count"] == 4
    found = lago.activity_logs.find(listed["activity_logs"][0].activity_id)
    assert found.activity_object_changes == {"trial_period": [0, 7]}

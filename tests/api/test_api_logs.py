"""GET /api_logs and /api_logs/{request_id} (issue 21): each service's write requests, as Lago's API logs."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings

from apps.audit.models import ApiLog
from apps.audit.services import api_logs_prune

pytestmark = pytest.mark.django_db

MORNING = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _customer(client, external_id, **extra):
    return client.post("/api/v1/customers", {"customer": {"external_id": external_id, "name": "Acme", **extra}},
                       format="json", HTTP_USER_AGENT="lago-python-client/1.30")


@pytest.fixture
def logged(cloud, desk):
    with time_machine.travel(MORNING, tick=False):
        created = _customer(cloud, "acme", country="CA")
        refused = _customer(cloud, "bad", country="Narnia")  # 422
    with time_machine.travel(MORNING + timedelta(days=1), tick=False):
        deleted = cloud.delete("/api/v1/customers/nobody")  # 404
        cloud.get("/api/v1/customers")  # a read: not logged
        _customer(desk, "initech")  # another service's
    return {"created": created, "refused": refused, "deleted": deleted}


def test_each_write_is_logged_once_with_its_request_id_body_and_status(cloud, logged):
    created = logged["created"]
    assert created.status_code == 200
    request_id = created["X-Request-Id"]
    response = cloud.get(f"/api/v1/api_logs/{request_id}")
    assert response.status_code == 200
    assert response.json() == {"api_log": {
        "request_id": request_id, "client": "lago-python-client/1.30", "http_method": "post", "http_status": 200,
        "request_origin": "http://testserver", "request_path": "/api/v1/customers",
        "request_body": {"customer": {"external_id": "acme", "name": "Acme", "country": "CA"}},
        "request_response": None, "api_version": "v1", "logged_at": "2026-03-02T09:30:00Z",
        "created_at": response.json()["api_log"]["created_at"]}}
    listed = cloud.get("/api/v1/api_logs").json()
    # Newest first: the DELETE (404), then the refused POST (422) and the created customer; no GET, no NexaDesk.
    assert [(log["http_method"], log["http_status"]) for log in listed["api_logs"]] == [
        ("delete", 404), ("post", 422), ("post", 200)]
    assert listed["meta"] == {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1,
                              "total_count": 3}
    assert ApiLog.objects.count() == 4  # NexaDesk's own write too


def test_another_services_log_and_an_unknown_id_are_not_found(cloud, desk, logged):
    theirs = ApiLog.objects.get(service=desk.service)
    for request_id in (theirs.request_id, "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = cloud.get(f"/api/v1/api_logs/{request_id}")
        assert (response.status_code, response.json()) == (
            404, {"status": 404, "error": "Not Found", "code": "api_log_not_found"})
    assert [log["request_path"] for log in desk.get("/api/v1/api_logs").json()["api_logs"]] == ["/api/v1/customers"]


def test_lagos_filters(cloud, logged):
    def statuses(**query):
        response = cloud.get("/api/v1/api_logs", query)
        assert response.status_code == 200, response.json()
        return [log["http_status"] for log in response.json()["api_logs"]]

    assert statuses(**{"http_statuses[]": "succeeded"}) == [200]
    assert statuses(**{"http_statuses[]": "failed"}) == [404, 422]
    assert statuses(**{"http_statuses[]": ["422", "404"]}) == [404, 422]
    assert statuses(**{"http_methods[]": "delete"}) == [404]
    assert statuses(**{"request_paths[]": "/api/v1/customers/*"}) == [404]
    assert statuses(**{"request_paths[]": ["/api/v1/customers", "/api/v1/plans"]}) == [422, 200]
    assert statuses(from_date="2026-03-03") == [404]
    assert statuses(to_date="2026-03-02") == [422, 200]  # the whole day
    assert statuses(from_date="2026-03-02T09:30:00Z", to_date="2026-03-02T09:30:00Z") == [422, 200]
    assert statuses(api_version="v2") == []
    page = cloud.get("/api/v1/api_logs", {"per_page": 2, "page": 2}).json()
    assert len(page["api_logs"]) == 1 and page["meta"]["prev_page"] == 1
    for bad in ({"http_statuses[]": "teapot"}, {"http_methods[]": "get"}, {"from_date": "yesterday"}):
        response = cloud.get("/api/v1/api_logs", bad)
        assert response.status_code == 422, bad
        assert response.json()["error_details"] == {next(iter(bad)).removesuffix("[]"): [
            "invalid_date" if "date" in next(iter(bad)) else "value_is_invalid"]}


def test_usage_ingestion_and_reads_are_not_logged(cloud):
    cloud.post("/api/v1/events", {"event": {"transaction_id": "t1", "external_subscription_id": "none",
                                            "code": "calls"}}, format="json")
    cloud.get("/api/v1/customers")
    response = cloud.get("/api/v1/api_logs")
    assert response.json()["api_logs"] == []
    assert response["X-Request-Id"]  # every API response still names its request


@override_settings(API_LOG_MAX_BODY_BYTES=40)
def test_a_body_past_the_limit_is_kept_as_its_size(cloud):
    response = _customer(cloud, "acme-with-a-long-name")
    body = ApiLog.objects.get(request_id=response["X-Request-Id"]).request_body
    assert body == {"truncated": True, "bytes": len(b'{"customer":{"external_id":"acme-with-a-long-name","name":"Acme"}}')}


def test_logs_past_the_retention_are_pruned(cloud, logged):
    assert settings.CELERY_BEAT_SCHEDULE["audit-api-logs-prune"]["task"] == "apps.audit.tasks.api_logs_prune_task"
    # Retention 30 days: on 1 April 09:30:01 the first day's two logs (2 March 09:30) are 30 days and 1 s old.
    with override_settings(API_LOG_RETENTION_DAYS=30):
        assert api_logs_prune(now=datetime(2026, 4, 1, 9, 30, tzinfo=UTC)) == 0
        assert api_logs_prune(now=datetime(2026, 4, 1, 9, 30, 1, tzinfo=UTC)) == 2
        assert api_logs_prune(now=datetime(2026, 4, 1, 9, 30, 1, tzinfo=UTC)) == 0
    assert [log["http_status"] for log in cloud.get("/api/v1/api_logs").json()["api_logs"]] == [404]


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_lists_and_finds_api_logs(cloud, live_server):
    from lago_python_client.client import Client

    key = cloud._credentials["HTTP_AUTHORIZATION"].split()[1]
    created = _customer(cloud, "acme")
    lago = Client(api_key=key, api_url=live_server.url)
    listed = lago.api_logs.find_all({"http_methods[]": "post"})
    assert [log.request_id for log in listed["api_logs"]] == [created["X-Request-Id"]]
    found = lago.api_logs.find(created["X-Request-Id"])
    assert (found.http_status, found.request_body) == (200, {"customer": {"external_id": "acme", "name": "Acme"}})


def test_staff_read_the_logs_in_the_admin(admin_client, logged):
    from django.urls import reverse

    page = admin_client.get(reverse("admin:audit_apilog_changelist"))
    assert page.status_code == 200
    assert page.content.decode().count("/api/v1/customers") >= 3
    log = ApiLog.objects.get(request_id=logged["created"]["X-Request-Id"])
    detail = admin_client.get(reverse("admin:audit_apilog_change", args=[log.pk]))
    assert detail.status_code == 200 and "acme" in detail.content.decode()
    assert admin_client.get(reverse("admin:audit_apilog_add")).status_code == 403

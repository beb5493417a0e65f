"""/webhook_endpoints: Lago's CRUD, scoped to the calling service, with Lago's 422 codes."""
from __future__ import annotations

import pytest

from apps.webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook_endpoints"


def create(client, **values):
    body = {"webhook_url": "https://app.example.com/lago", **values}
    return client.post(URL, {"webhook_endpoint": body}, format="json")


def test_create_list_get_update_delete(cloud):
    response = create(cloud, name="Main", event_types=["invoice.created", "subscription.started"])
    assert response.status_code == 200, response.json()
    out = response.json()["webhook_endpoint"]
    assert out["webhook_url"] == "https://app.example.com/lago"
    assert out["signature_algo"] == "hmac"
    assert out["name"] == "Main"
    assert out["event_types"] == ["invoice.created", "subscription.started"]
    assert out["lago_organization_id"] == str(cloud.service.lago_id)
    assert out["hmac_key"] == WebhookEndpoint.objects.get().signing_secret and len(out["hmac_key"]) >= 32
    assert out["created_at"].endswith("Z")

    listed = cloud.get(URL).json()
    assert [e["lago_id"] for e in listed["webhook_endpoints"]] == [out["lago_id"]]
    assert listed["meta"]["total_count"] == 1
    assert cloud.get(f"{URL}/{out['lago_id']}").json()["webhook_endpoint"] == out

    updated = cloud.put(f"{URL}/{out['lago_id']}", {"webhook_endpoint": {"event_types": None, "name": None}}, format="json")
    assert updated.status_code == 200, updated.json()
    assert updated.json()["webhook_endpoint"]["event_types"] is None  # null = every event type
    assert updated.json()["webhook_endpoint"]["name"] is None
    assert updated.json()["webhook_endpoint"]["webhook_url"] == out["webhook_url"]

    deleted = cloud.delete(f"{URL}/{out['lago_id']}")
    assert deleted.status_code == 200 and deleted.json()["webhook_endpoint"]["lago_id"] == out["lago_id"]
    assert cloud.get(f"{URL}/{out['lago_id']}").status_code == 404
    assert cloud.get(URL).json()["webhook_endpoints"] == []
    assert WebhookEndpoint.objects.get().active is False
    assert create(cloud).status_code == 200  # the URL is free again


def test_invalid_input_is_422_with_lago_codes_and_writes_nothing(cloud):
    cases = [
        ({"webhook_url": "not a url"}, {"webhook_url": ["value_is_invalid"]}),
        ({"webhook_url": "ftp://example.com/x"}, {"webhook_url": ["url_invalid"]}),
        ({"signature_algo": "jwt"}, {"signature_algo": ["value_is_invalid"]}),
        ({"event_types": ["invoice.created", "invoice.exploded"]}, {"event_types.1": ["value_is_invalid"]}),
    ]
    for values, details in cases:
        response = create(cloud, **values)
        assert response.status_code == 422, values
        assert response.json() == {
            "status": 422, "error": "Unprocessable Entity", "code": "validation_errors", "error_details": details
        }
    missing = cloud.post(URL, {"webhook_endpoint": {"name": "x"}}, format="json")
    assert missing.json()["error_details"] == {"webhook_url": ["value_is_mandatory"]}
    assert cloud.post(URL, {"name": "x"}, format="json").status_code == 400
    assert not WebhookEndpoint.objects.exists()


def test_url_is_unique_per_service_and_ten_endpoints_at_most(cloud, desk):
    assert create(cloud).status_code == 200
    duplicate = create(cloud)
    assert duplicate.status_code == 422
    assert duplicate.json()["error_details"] == {"webhook_url": ["value_already_exist"]}
    assert create(desk).status_code == 200  # another service may use the same URL
    for n in range(9):
        assert create(cloud, webhook_url=f"https://app.example.com/{n}").status_code == 200
    over = create(cloud, webhook_url="https://app.example.com/eleven")
    assert over.status_code == 422 and over.json()["error_details"] == {"base": ["exceeded_limit"]}
    assert WebhookEndpoint.objects.filter(service=cloud.service).count() == 10


def test_another_services_endpoint_is_not_found(cloud, desk):
    lago_id = create(cloud).json()["webhook_endpoint"]["lago_id"]
    assert desk.get(f"{URL}/{lago_id}").status_code == 404
    assert desk.put(f"{URL}/{lago_id}", {"webhook_endpoint": {"name": "mine"}}, format="json").status_code == 404
    assert desk.delete(f"{URL}/{lago_id}").status_code == 404
    assert desk.get(URL).json()["webhook_endpoints"] == []
    assert desk.get(f"{URL}/not-a-uuid").status_code == 404
    assert WebhookEndpoint.objects.get().active is True

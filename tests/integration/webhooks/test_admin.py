"""Admin: delivery list filters, payload and attempts on the page, resend action, endpoint test button."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from apps.webhooks.models import TEST_EVENT_TYPE, WebhookDelivery, WebhookEvent
from apps.webhooks.services import webhook_delivery_send, webhook_event_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def test_failing_delivery_is_listed_shown_and_resent(staff, service_factory, endpoint_for, receiver, django_capture_on_commit_callbacks, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    cloud, desk = service_factory("cloud").service, service_factory("desk").service
    endpoint_for(cloud, receiver.url)
    endpoint_for(desk, receiver.url)
    receiver.fail_times, receiver.fail_status = 1, 503
    (event,) = webhook_event_record(
        event_type="credit_note.created", object_type="credit_note", payload_object={"lago_id": "cn-1"}, service_ids=[cloud.pk]
    )
    failed = webhook_delivery_send(delivery_id=WebhookDelivery.objects.get(event=event).pk)
    assert failed.status == "failed"
    webhook_event_record(event_type="invoice.created", object_type="invoice", payload_object={"lago_id": "i-1"}, service_ids=[desk.pk])

    page = staff.get("/admin/webhooks/webhookdelivery/?failing=yes").content.decode()
    assert f'value="{failed.pk}"' in page and page.count('name="_selected_action"') == 1
    assert staff.get(f"/admin/webhooks/webhookdelivery/?event__service__id__exact={desk.pk}").content.decode().count('name="_selected_action"') == 1
    assert staff.get("/admin/webhooks/webhookdelivery/?event__event_type=credit_note.created").content.decode().count('name="_selected_action"') == 1

    detail = staff.get(f"/admin/webhooks/webhookdelivery/{failed.pk}/change/").content.decode()
    assert "credit_note.created" in detail and str(event.event_id) in detail
    assert "503" in detail and "receiver error" in detail  # the attempt inline

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            "/admin/webhooks/webhookdelivery/", {"action": "resend", "_selected_action": [failed.pk], "apply": "1",
             "reason": "receiver back up"}, follow=True
        )
    assert response.status_code == 200
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("succeeded", 1)
    assert len(receiver.requests) == 2


def test_endpoint_test_button_sends_a_test_event_to_that_endpoint_only(staff, service_factory, endpoint_for, receiver, django_capture_on_commit_callbacks):
    cloud = service_factory("cloud").service
    tested = endpoint_for(cloud, receiver.url + "/tested", event_types=["invoice.created"])
    endpoint_for(cloud, receiver.url + "/other")
    with django_capture_on_commit_callbacks(execute=True):
        staff.post("/admin/webhooks/webhookendpoint/", {"action": "send_test_event", "_selected_action": [tested.pk]})
    (got,) = receiver.requests
    assert got.path == "/tested"
    body = json.loads(got.body)
    assert body["webhook_type"] == TEST_EVENT_TYPE and body["webhook_endpoint"]["lago_id"] == str(tested.lago_id)
    assert WebhookEvent.objects.get().event_type == TEST_EVENT_TYPE

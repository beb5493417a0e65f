"""lago-python-client against a live hub for the routed calls the other client modules leave out (issue 21):
metrics, plans and taxes, webhook endpoints, a customer's nested lists and wallets, credit notes and fees. See
test_charges_lago_client.py for the whole table (bench/lago_client_coverage.py)."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, Plan, Tax, WebhookEndpoint

from apps.catalog.models import BillableMetric as MetricRow
from apps.catalog.models import Plan as PlanRow
from apps.catalog.models import Tax as TaxRow
from apps.webhooks.models import WebhookEndpoint as EndpointRow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloud(live_server, service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


@pytest.fixture
def desk(live_server, service_factory):
    issued = service_factory("nexadesk", "NexaDesk")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


def test_metrics_plans_and_taxes_are_listed_and_deleted_through_the_client(cloud, desk):
    cloud.billable_metrics.create(BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"))
    cloud.billable_metrics.create(BillableMetric(name="Seats", code="seats", aggregation_type="max_agg",
                                                 field_name="seats"))
    listed = cloud.billable_metrics.find_all({"per_page": 1})
    assert (len(listed["billable_metrics"]), listed["meta"]["total_count"]) == (1, 2)
    assert desk.billable_metrics.find_all()["billable_metrics"] == []
    removed = cloud.billable_metrics.destroy("seats")
    assert (removed.code, removed.aggregation_type) == ("seats", "max_agg")
    assert MetricRow.objects.get(code="seats").deleted_at is not None
    assert [item.code for item in cloud.billable_metrics.find_all()["billable_metrics"]] == ["calls"]

    cloud.plans.create(Plan(name="Basic", code="basic", interval="monthly", amount_cents=1000, amount_currency="CAD"))
    deleted = cloud.plans.destroy("basic")
    assert (deleted.code, deleted.amount_cents) == ("basic", 1000)
    assert PlanRow.objects.get(code="basic").deleted_at is not None
    assert cloud.plans.find_all()["plans"] == []
    with pytest.raises(LagoApiError) as gone:
        cloud.plans.find("basic")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "plan_not_found")

    created = cloud.taxes.create(Tax(name="Special", code="cloud_special", rate=2.5, description="A local levy"))
    assert (created.code, created.rate, created.description) == ("cloud_special", 2.5, "A local levy")
    assert TaxRow.objects.get(code="cloud_special").rate == 2.5
    assert cloud.taxes.find("cloud_special").lago_id == created.lago_id
    assert cloud.taxes.find("hst_sale_tax_13").rate == 13.0  # a hub-wide tax, readable by every service
    assert "cloud_special" in {item.code for item in cloud.taxes.find_all({"per_page": 100})["taxes"]}
    assert "cloud_special" not in {item.code for item in desk.taxes.find_all({"per_page": 100})["taxes"]}
    renamed = cloud.taxes.update(Tax(name="Special levy", rate=3.0), "cloud_special")
    assert (renamed.name, renamed.rate) == ("Special levy", 3.0)
    assert TaxRow.objects.get(code="cloud_special").rate == 3
    with pytest.raises(LagoApiError) as hub_wide:
        cloud.taxes.update(Tax(rate=0), "hst_sale_tax_13")
    assert hub_wide.value.status_code == 403
    assert cloud.taxes.destroy("cloud_special").code == "cloud_special"
    assert not TaxRow.objects.filter(code="cloud_special").exists()


def test_webhook_endpoints_through_the_client(cloud, desk):
    created = cloud.webhook_endpoints.create(WebhookEndpoint(
        webhook_url="https://app.example.com/lago", name="Main", event_types=["invoice.created"]))
    assert (created.webhook_url, created.signature_algo, created.name, created.event_types) == (
        "https://app.example.com/lago", "hmac", "Main", ["invoice.created"])
    assert cloud.webhook_endpoints.find(created.lago_id).dict() == created.dict()
    assert [item.lago_id for item in cloud.webhook_endpoints.find_all()["webhook_endpoints"]] == [created.lago_id]
    assert desk.webhook_endpoints.find_all()["webhook_endpoints"] == []
    updated = cloud.webhook_endpoints.update(WebhookEndpoint(name="Billing"), created.lago_id)
    assert (updated.name, updated.webhook_url, updated.event_types) == (
        "Billing", "https://app.example.com/lago", ["invoice.created"])
    assert EndpointRow.objects.get().name == "Billing"
    with pytest.raises(LagoApiError) as other_service:
        desk.webhook_endpoints.destroy(created.lago_id)
    assert other_service.value.status_code == 404
    assert cloud.webhook_endpoints.destroy(created.lago_id).lago_id == created.lago_id
    assert EndpointRow.objects.get().active is False
    assert cloud.webhook_endpoints.find_all()["webhook_endpoints"] == []

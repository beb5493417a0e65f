from __future__ import annotations

import pytest


@pytest.fixture
def cloud(service_factory, api_client_for):
    issued = service_factory("nexacloud", "NexaCloud")
    client = api_client_for(issued.raw_key)
    client.service = issued.service
    return client


@pytest.fixture
def desk(service_factory, api_client_for):
    issued = service_factory("nexadesk", "NexaDesk")
    client = api_client_for(issued.raw_key)
    client.service = issued.service
    return client


@pytest.fixture
def cloud_catalog(cloud):
    """A customer, two metrics, a plan with graduated and package charges and a subscription, for NexaCloud."""
    cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA", "state": "ON"}}, format="json")
    hours = cloud.post("/api/v1/billable_metrics", {"billable_metric": {"name": "Hours", "code": "hours", "aggregation_type": "sum_agg", "field_name": "h"}}, format="json").json()
    calls = cloud.post("/api/v1/billable_metrics", {"billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").json()
    plan = {
        "code": "pro", "name": "Pro", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD",
        "charges": [
            {"billable_metric_id": hours["billable_metric"]["lago_id"], "charge_model": "graduated",
             "properties": {"graduated_ranges": [
                 {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
                 {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "0"}]}},
            {"billable_metric_id": calls["billable_metric"]["lago_id"], "charge_model": "package",
             "properties": {"amount": "5", "package_size": 100, "free_units": 0}},
        ],
    }
    assert cloud.post("/api/v1/plans", {"plan": plan}, format="json").status_code == 200
    response = cloud.post("/api/v1/subscriptions", {"subscription": {"external_customer_id": "acme", "plan_code": "pro", "external_id": "sub-1"}}, format="json")
    assert response.status_code == 200, response.json()
    return cloud

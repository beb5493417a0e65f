"""Bad input: Lago's error bodies, and nothing written."""
from __future__ import annotations

import pytest

from apps.catalog.models import BillableMetric, Plan
from apps.customers.models import AccountLink, Customer
from apps.subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def test_missing_or_wrong_key_is_401(client, cloud):
    assert client.get("/api/v1/customers").json() == {"status": 401, "error": "Unauthorized"}
    assert client.get("/api/v1/customers", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/api/v1/customers", HTTP_AUTHORIZATION="Bearer").status_code == 401


def test_rotated_key_stops_working(cloud, api_client_for):
    from apps.customers.services import service_rotate_key

    assert cloud.get("/api/v1/customers").status_code == 200
    issued = service_rotate_key(service_id=cloud.service.pk)
    assert cloud.get("/api/v1/customers").status_code == 401
    assert api_client_for(issued.raw_key).get("/api/v1/customers").status_code == 200


def test_a_deactivated_services_key_stops_working_at_once(cloud):
    from apps.customers.models import Service

    assert cloud.get("/api/v1/customers").status_code == 200
    Service.objects.filter(pk=cloud.service.pk).update(active=False)
    assert cloud.get("/api/v1/customers").status_code == 401
    batch = {"events": [{"transaction_id": "t", "external_subscription_id": "s", "code": "c"}]}
    assert cloud.post("/api/v1/events/batch", batch, format="json").status_code == 401


def test_the_key_lookup_returns_the_whole_service_row(cloud):
    from apps.customers.models import Service
    from apps.customers.selectors import service_for_api_key

    raw_key = cloud._credentials["HTTP_AUTHORIZATION"].split()[1]
    found = service_for_api_key(raw_key=raw_key)
    stored = Service.objects.get(pk=cloud.service.pk)
    assert found is not None and found._state.adding is False
    assert {f.attname: getattr(found, f.attname) for f in Service._meta.concrete_fields} == {
        f.attname: getattr(stored, f.attname) for f in Service._meta.concrete_fields
    }
    assert service_for_api_key(raw_key=raw_key + "x") is None
    assert service_for_api_key(raw_key="") is None


def test_key_is_stored_only_as_sha256(service_factory):
    import hashlib

    issued = service_factory("hashy")
    assert issued.service.api_key_hash == hashlib.sha256(issued.raw_key.encode()).hexdigest()
    assert issued.raw_key not in str(issued.service.__dict__.values())


def test_malformed_json_is_400(cloud):
    response = cloud.generic("POST", "/api/v1/customers", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert response.json()["error"].startswith("BadRequest")


def test_missing_root_key_is_400_like_lago(cloud):
    response = cloud.post("/api/v1/customers", {"external_id": "x"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"status": 400, "error": "BadRequest: param is missing or the value is empty: customer"}


def test_unknown_route_is_json_404(cloud):
    response = cloud.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["status"] == 404


@pytest.mark.parametrize(
    "body,details",
    [
        ({"external_id": "x", "country": "ZZ"}, {"country": ["value_is_invalid"]}),
        ({"external_id": "x", "country": "CA", "state": "XX"}, {"state": ["value_is_invalid"]}),
        ({"external_id": "x", "currency": "ABC"}, {"currency": ["value_is_invalid"]}),
        ({"external_id": "x", "net_payment_term": -1}, {"net_payment_term": ["value_is_out_of_range"]}),
        ({"external_id": "x", "net_payment_term": "soon"}, {"net_payment_term": ["value_is_invalid"]}),
        ({"external_id": "x", "email": "not-an-email"}, {"email": ["value_is_invalid"]}),
        ({"name": "no id"}, {"external_id": ["value_is_mandatory"]}),
        ({"external_id": "x", "timezone": "Mars/Olympus"}, {"timezone": ["value_is_invalid"]}),
    ],
)
def test_invalid_customer_is_422_with_details_and_writes_nothing(cloud, body, details):
    response = cloud.post("/api/v1/customers", {"customer": body}, format="json")
    assert response.status_code == 422
    assert response.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors", "error_details": details}
    assert not Customer.objects.exists()
    assert not AccountLink.objects.exists()


def _plan(**overrides):
    plan = {"code": "p", "name": "P", "interval": "monthly", "amount_cents": 100, "amount_currency": "CAD"}
    plan.update(overrides)
    return {"plan": plan}


@pytest.fixture
def metric_id(cloud):
    body = {"billable_metric": {"name": "Hours", "code": "hours", "aggregation_type": "sum_agg", "field_name": "h"}}
    return cloud.post("/api/v1/billable_metrics", body, format="json").json()["billable_metric"]["lago_id"]


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"amount_cents": -1}, "amount_cents"),
        ({"amount_cents": 10.5}, "amount_cents"),
        ({"amount_cents": "ten"}, "amount_cents"),
        ({"interval": "daily"}, "interval"),
        ({"amount_currency": "ZZZ"}, "amount_currency"),
    ],
)
def test_invalid_plan_is_422(cloud, overrides, field):
    response = cloud.post("/api/v1/plans", _plan(**overrides), format="json")
    assert response.status_code == 422
    assert field in response.json()["error_details"]
    assert not Plan.objects.exists()


@pytest.mark.parametrize(
    "charge_model,properties,field",
    [
        ("magic", {}, "charges.0.charge_model"),
        ("standard", {"amount": "-1"}, "charges.0.amount"),
        ("standard", {"amount": "abc"}, "charges.0.amount"),
        ("graduated", {"graduated_ranges": [{"from_value": 5, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"}]}, "charges.0.graduated_ranges"),
        ("package", {"amount": "1", "package_size": 0}, "charges.0.package_size"),
    ],
)
def test_invalid_charge_is_422_and_writes_nothing(cloud, metric_id, charge_model, properties, field):
    body = _plan(charges=[{"billable_metric_id": metric_id, "charge_model": charge_model, "properties": properties}])
    response = cloud.post("/api/v1/plans", body, format="json")
    assert response.status_code == 422, response.json()
    assert field in response.json()["error_details"], response.json()
    assert not Plan.objects.exists()


def test_duplicate_metric_code_is_422(cloud, metric_id):
    body = {"billable_metric": {"name": "Again", "code": "hours", "aggregation_type": "count_agg"}}
    response = cloud.post("/api/v1/billable_metrics", body, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"code": ["value_already_exist"]}
    assert BillableMetric.objects.count() == 1


def test_recurring_max_metric_is_refused(cloud):
    body = {"billable_metric": {"name": "Peak", "code": "peak", "aggregation_type": "max_agg", "field_name": "gb", "recurring": True}}
    response = cloud.post("/api/v1/billable_metrics", body, format="json")
    assert response.json()["error_details"] == {"recurring": ["not_compatible_with_aggregation_type"]}


def test_subscription_external_id_of_another_customer_is_422(cloud_catalog):
    body = {"subscription": {"external_customer_id": "someone-else", "plan_code": "pro", "external_id": "sub-1"}}
    response = cloud_catalog.post("/api/v1/subscriptions", body, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"external_id": ["value_already_exist"]}
    assert Subscription.objects.count() == 1
    assert not AccountLink.objects.filter(external_id="someone-else").exists()

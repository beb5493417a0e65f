"""Every endpoint, called with another service's key, answers 404 and changes nothing."""
from __future__ import annotations

import pytest

from apps.catalog.models import BillableMetric, Charge, Plan, Tax
from apps.customers.models import AccountLink, Customer
from apps.subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def _snapshot():
    return {
        "links": list(AccountLink.objects.values_list("pk", "external_id", "deleted_at")),
        "customers": list(Customer.objects.values_list("pk", "name", "city", "updated_at")),
        "metrics": list(BillableMetric.objects.values_list("pk", "name", "deleted_at")),
        "plans": list(Plan.objects.values_list("pk", "name", "amount_cents", "deleted_at")),
        "charges": list(Charge.objects.values_list("pk", "properties")),
        "subscriptions": list(Subscription.objects.values_list("pk", "status", "name")),
        "taxes": list(Tax.objects.values_list("pk", "rate", "name")),
    }


OUTSIDER_CALLS = [
    ("get", "/api/v1/customers/acme", None, "customer_not_found"),
    ("delete", "/api/v1/customers/acme", None, "customer_not_found"),
    ("get", "/api/v1/billable_metrics/hours", None, "billable_metric_not_found"),
    ("put", "/api/v1/billable_metrics/hours", {"billable_metric": {"name": "X"}}, "billable_metric_not_found"),
    ("delete", "/api/v1/billable_metrics/hours", None, "billable_metric_not_found"),
    ("get", "/api/v1/plans/pro", None, "plan_not_found"),
    ("put", "/api/v1/plans/pro", {"plan": {"name": "X"}}, "plan_not_found"),
    ("delete", "/api/v1/plans/pro", None, "plan_not_found"),
    ("get", "/api/v1/subscriptions/sub-1", None, "subscription_not_found"),
    ("put", "/api/v1/subscriptions/sub-1", {"subscription": {"name": "X"}}, "subscription_not_found"),
    ("delete", "/api/v1/subscriptions/sub-1", None, "subscription_not_found"),
    ("get", "/api/v1/taxes/cloud_special", None, "tax_not_found"),
    ("put", "/api/v1/taxes/cloud_special", {"tax": {"name": "X"}}, "tax_not_found"),
    ("delete", "/api/v1/taxes/cloud_special", None, "tax_not_found"),
]


@pytest.mark.parametrize("method,path,body,code", OUTSIDER_CALLS)
def test_another_services_key_gets_404_and_changes_nothing(cloud_catalog, desk, method, path, body, code):
    cloud_catalog.post("/api/v1/taxes", {"tax": {"name": "Special", "code": "cloud_special", "rate": "2.5"}}, format="json")
    before = _snapshot()
    response = getattr(desk, method)(path, body, format="json") if body else getattr(desk, method)(path)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found", "code": code}
    assert _snapshot() == before


def test_lists_show_only_the_callers_objects(cloud_catalog, desk):
    for path, key in [("/api/v1/customers", "customers"), ("/api/v1/billable_metrics", "billable_metrics"),
                      ("/api/v1/plans", "plans"), ("/api/v1/subscriptions", "subscriptions")]:
        assert desk.get(path).json()[key] == []
        assert len(cloud_catalog.get(path).json()[key]) >= 1


def test_outsider_cannot_subscribe_to_another_services_plan(cloud_catalog, desk):
    before = _snapshot()
    response = desk.post("/api/v1/subscriptions", {"subscription": {"external_customer_id": "acme", "plan_code": "pro", "external_id": "x"}}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "plan_not_found"
    assert _snapshot() == before


def test_outsider_cannot_use_another_services_metric_in_a_plan(cloud_catalog, desk):
    metric_id = str(BillableMetric.objects.get(code="hours").lago_id)
    plan = {"code": "steal", "name": "S", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD",
            "charges": [{"billable_metric_id": metric_id, "charge_model": "standard", "properties": {"amount": "1"}}]}
    response = desk.post("/api/v1/plans", {"plan": plan}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "billable_metric_not_found"
    assert not Plan.objects.filter(code="steal").exists()


def test_shared_customer_never_shows_the_other_services_external_id(cloud_catalog, desk):
    from apps.customers.services import account_link_create

    acme = Customer.objects.get(account_links__external_id="acme")
    account_link_create(service=desk.service, customer=acme, external_id="desk-acme")
    desk_view = desk.get("/api/v1/customers/desk-acme").json()["customer"]
    cloud_view = cloud_catalog.get("/api/v1/customers/acme").json()["customer"]
    assert desk_view["external_id"] == "desk-acme"
    assert "acme" not in {desk_view["lago_id"], desk_view["external_id"]}
    assert desk_view["lago_id"] != cloud_view["lago_id"]
    assert "desk-acme" not in str(cloud_catalog.get("/api/v1/customers").json())
    assert desk.get("/api/v1/customers/acme").status_code == 404


def test_hub_wide_taxes_are_readable_but_not_writable_by_services(desk):
    assert desk.get("/api/v1/taxes/hst_sale_tax_13").json()["tax"]["rate"] == 13.0  # a number, as Lago sends it
    response = desk.put("/api/v1/taxes/hst_sale_tax_13", {"tax": {"rate": "0"}}, format="json")
    assert response.status_code == 403
    assert Tax.objects.get(code="hst_sale_tax_13").rate == 13

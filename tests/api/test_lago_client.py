"""Apps' view of the API: the official lago-python-client against a live hub on 127.0.0.1."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Plan,
    Subscription,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloud(live_server, service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


@pytest.fixture
def desk(live_server, service_factory):
    issued = service_factory("nexadesk", "NexaDesk")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


def _graduated_plan(metric_id: str, api_metric_id: str, code: str = "cloud_pro") -> Plan:
    return Plan(
        name="Cloud Pro",
        code=code,
        interval="monthly",
        amount_cents=4900,
        amount_currency="CAD",
        pay_in_advance=True,
        charges=Charges(
            __root__=[
                Charge(
                    billable_metric_id=metric_id,
                    charge_model="graduated",
                    properties={
                        "graduated_ranges": [
                            {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "0"},
                            {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "1"},
                        ]
                    },
                ),
                Charge(
                    billable_metric_id=api_metric_id,
                    charge_model="package",
                    properties={"amount": "5", "package_size": 1000, "free_units": 100},
                ),
            ]
        ),
    )


def test_catalog_customers_and_subscriptions_round_trip(cloud):
    created = cloud.customers.create(
        Customer(
            external_id="acme",
            name="Acme",
            legal_name="Acme Robotics Inc.",
            email="billing@acme.test",
            country="CA",
            state="ON",
            city="Toronto",
            currency="CAD",
            timezone="America/Toronto",
        )
    )
    assert created.external_id == "acme"
    assert created.lago_id
    updated = cloud.customers.create(Customer(external_id="acme", city="Ottawa"))
    assert updated.lago_id == created.lago_id
    assert cloud.customers.find("acme").city == "Ottawa"
    assert cloud.customers.find("acme").legal_name == "Acme Robotics Inc."

    hours = cloud.billable_metrics.create(
        BillableMetric(name="Compute hours", code="compute_hours", aggregation_type="sum_agg", field_name="hours")
    )
    calls = cloud.billable_metrics.create(BillableMetric(name="API calls", code="api_calls", aggregation_type="count_agg"))
    assert hours.filters == [] or hours.filters is not None
    renamed = cloud.billable_metrics.update(BillableMetric(name="Compute (h)"), "compute_hours")
    assert renamed.name == "Compute (h)"

    plan = cloud.plans.create(_graduated_plan(hours.lago_id, calls.lago_id))
    assert plan.code == "cloud_pro"
    charges = plan.charges.__root__
    assert [c.charge_model for c in charges] == ["graduated", "package"]
    assert charges[0].properties["graduated_ranges"][1]["flat_amount"] == "1"
    assert cloud.plans.find("cloud_pro").amount_cents == 4900
    repriced = cloud.plans.update(Plan(name="Cloud Pro 2026", amount_cents=5900), "cloud_pro")
    assert (repriced.name, repriced.amount_cents) == ("Cloud Pro 2026", 5900)
    assert len(repriced.charges.__root__) == 2  # charges untouched when not sent
    assert [p.code for p in cloud.plans.find_all()["plans"]] == ["cloud_pro"]

    subscription = cloud.subscriptions.create(
        Subscription(external_customer_id="acme", plan_code="cloud_pro", external_id="acme-cloud-1", billing_time="anniversary")
    )
    assert subscription.status == "active"
    assert subscription.external_customer_id == "acme"
    assert cloud.subscriptions.find("acme-cloud-1").plan_code == "cloud_pro"
    renamed_sub = cloud.subscriptions.update(Subscription(name="Main cluster"), "acme-cloud-1")
    assert renamed_sub.name == "Main cluster"
    listed = cloud.subscriptions.find_all({"external_customer_id": "acme"})
    assert [s.external_id for s in listed["subscriptions"]] == ["acme-cloud-1"]

    terminated = cloud.subscriptions.destroy("acme-cloud-1")
    assert terminated.status == "terminated"
    with pytest.raises(LagoApiError) as missing:
        cloud.subscriptions.find("acme-cloud-1")
    assert missing.value.status_code == 404


def test_lists_are_paginated(cloud):
    for index in range(5):
        cloud.customers.create(Customer(external_id=f"cust-{index}", name=f"Customer {index}"))
    first = cloud.customers.find_all({"per_page": 2, "page": 1})
    assert len(first["customers"]) == 2
    assert first["meta"]["total_count"] == 5
    assert first["meta"]["total_pages"] == 3
    assert first["meta"]["next_page"] == 2
    last = cloud.customers.find_all({"per_page": 2, "page": 3})
    assert len(last["customers"]) == 1
    assert last["meta"]["next_page"] is None
    seen = {c.external_id for page in (1, 2, 3) for c in cloud.customers.find_all({"per_page": 2, "page": page})["customers"]}
    assert seen == {f"cust-{i}" for i in range(5)}


def test_client_raises_its_own_errors_with_lago_statuses(cloud, live_server):
    bad_key = Client(api_key="nexa_wrong", api_url=live_server.url)
    with pytest.raises(LagoApiError) as unauthorized:
        bad_key.customers.find_all()
    assert unauthorized.value.status_code == 401

    with pytest.raises(LagoApiError) as not_found:
        cloud.customers.find("nobody")
    assert not_found.value.status_code == 404
    assert not_found.value.response["code"] == "customer_not_found"

    with pytest.raises(LagoApiError) as invalid:
        cloud.billable_metrics.create(BillableMetric(name="Storage", code="storage", aggregation_type="max_agg"))
    assert invalid.value.status_code == 422
    assert invalid.value.response["error_details"] == {"field_name": ["value_is_mandatory"]}

    with pytest.raises(LagoApiError) as unknown_plan:
        cloud.subscriptions.create(Subscription(external_customer_id="x", plan_code="nope", external_id="s1"))
    assert unknown_plan.value.status_code == 404
    assert unknown_plan.value.response["code"] == "plan_not_found"


def test_another_services_key_sees_404(cloud, desk):
    cloud.customers.create(Customer(external_id="shared", name="Shared"))
    with pytest.raises(LagoApiError) as err:
        desk.customers.find("shared")
    assert err.value.status_code == 404


def test_add_ons_and_a_one_off_invoice_billing_them(cloud, desk):
    from lago_python_client.models import AddOn
    from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList, OneOffInvoice

    cloud.customers.create(Customer(external_id="acme", country="CA", state="ON", currency="CAD"))
    created = cloud.add_ons.create(AddOn(name="Throttle removal", code="throttle_removal", amount_cents=4900,
                                         amount_currency="CAD", description="Lifts the rate limit"))
    assert (created.code, created.amount_cents, created.description) == ("throttle_removal", 4900, "Lifts the rate limit")
    assert created.lago_id and created.created_at
    cloud.add_ons.create(AddOn(name="Tokens", code="tokens", amount_cents=1000, amount_currency="CAD"))
    assert cloud.add_ons.update(AddOn(invoice_display_name="Tokens pack"), "tokens").invoice_display_name == "Tokens pack"
    assert cloud.add_ons.find("throttle_removal").name == "Throttle removal"
    assert sorted(a.code for a in cloud.add_ons.find_all()["add_ons"]) == ["throttle_removal", "tokens"]
    with pytest.raises(LagoApiError) as other_service:
        desk.add_ons.find("tokens")
    assert other_service.value.status_code == 404

    invoice = cloud.invoices.create(OneOffInvoice(external_customer_id="acme", currency="CAD", fees=InvoiceFeesList(
        __root__=[InvoiceFee(add_on_code="throttle_removal"), InvoiceFee(add_on_code="tokens", units=2.5,
                                                                         unit_amount_cents=800)])))
    assert invoice.invoice_type == "one_off"
    assert [fee.amount_cents for fee in invoice.fees.__root__] == [4900, 2000]
    assert (invoice.fees_amount_cents, invoice.taxes_amount_cents) == (6900, 897)  # HST 13%: 637 + 260

    assert cloud.add_ons.destroy("tokens").code == "tokens"
    with pytest.raises(LagoApiError) as deleted:
        cloud.invoices.create(OneOffInvoice(external_customer_id="acme", currency="CAD",
                                            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="tokens")])))
    assert deleted.value.status_code == 404


def test_coupons_and_applied_coupons(cloud, desk):
    from lago_python_client.models import AppliedCoupon, Coupon
    from lago_python_client.models.coupon import LimitationConfiguration

    cloud.customers.create(Customer(external_id="acme", country="CA", state="ON", currency="CAD"))
    fixed = cloud.coupons.create(Coupon(name="Startup Deal", code="startup_deal", coupon_type="fixed_amount",
                                        amount_cents=5000, amount_currency="CAD", frequency="once",
                                        expiration="no_expiration", reusable=False))
    assert (fixed.code, fixed.amount_cents, fixed.expiration, fixed.limited_plans) == ("startup_deal", 5000,
                                                                                       "no_expiration", False)
    cloud.billable_metrics.create(BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"))
    percent = cloud.coupons.create(Coupon(name="Ten", code="ten", coupon_type="percentage", percentage_rate=12.5,
                                          frequency="recurring", frequency_duration=3, expiration="time_limit",
                                          expiration_at="2099-01-01T00:00:00Z",
                                          applies_to=LimitationConfiguration(billable_metric_codes=["calls"])))
    assert (percent.percentage_rate, percent.billable_metric_codes) == (12.5, ["calls"])
    assert cloud.coupons.update(Coupon(name="Ten off"), "ten").name == "Ten off"
    assert cloud.coupons.find("ten").frequency_duration == 3
    assert sorted(c.code for c in cloud.coupons.find_all()["coupons"]) == ["startup_deal", "ten"]

    applied = cloud.applied_coupons.create(AppliedCoupon(external_customer_id="acme", coupon_code="startup_deal",
                                                         amount_cents=4000))
    assert (applied.coupon_code, applied.amount_cents, applied.amount_cents_remaining, applied.status) == (
        "startup_deal", 4000, 4000, "active")
    with pytest.raises(LagoApiError) as not_reusable:
        cloud.applied_coupons.create(AppliedCoupon(external_customer_id="acme", coupon_code="startup_deal"))
    assert not_reusable.value.status_code == 422
    cloud.applied_coupons.create(AppliedCoupon(external_customer_id="acme", coupon_code="ten"))
    listed = cloud.applied_coupons.find_all({"external_customer_id": "acme"})["applied_coupons"]
    assert [a.coupon_code for a in listed] == ["ten", "startup_deal"]
    removed = cloud.applied_coupons.destroy("acme", applied.lago_id)
    assert removed.status == "terminated" and removed.terminated_at
    with pytest.raises(LagoApiError) as other_service:
        desk.coupons.find("ten")
    assert other_service.value.status_code == 404
    assert cloud.coupons.destroy("ten").code == "ten"

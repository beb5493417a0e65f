"""lago-python-client against a live hub: plan minimum commitment and usage thresholds, plan overrides, lifetime
usage and subscription alerts (issue 21)."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.models import Customer, Plan, Subscription
from lago_python_client.models.alert import Alert, AlertsList, AlertThreshold, AlertThresholdList
from lago_python_client.models.minimum_commitment import MinimumCommitment, MinimumCommitmentOverrides
from lago_python_client.models.plan import PlanOverrides
from lago_python_client.models.usage_threshold import UsageThreshold, UsageThresholds

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloud(live_server, service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


def test_plan_terms_overrides_lifetime_usage_and_alerts_through_the_client(cloud):
    plan = cloud.plans.create(Plan(
        name="Pro", code="pro", interval="monthly", amount_cents=10000, amount_currency="CAD", pay_in_advance=False,
        minimum_commitment=MinimumCommitment(amount_cents=20000, invoice_display_name="Minimum"),
        usage_thresholds=UsageThresholds(__root__=[UsageThreshold(amount_cents=5000, threshold_display_name="Five")]),
    ))
    assert plan.minimum_commitment.amount_cents == 20000
    assert [t.amount_cents for t in plan.usage_thresholds.__root__] == [5000]

    cloud.customers.create(Customer(external_id="acme", name="Acme", country="CA", state="ON"))
    subscription = cloud.subscriptions.create(Subscription(
        external_customer_id="acme", plan_code="pro", external_id="s1",
        plan_overrides=PlanOverrides(amount_cents=8000, minimum_commitment=MinimumCommitmentOverrides(amount_cents=15000)),
    ))
    assert subscription.plan_code == "pro"
    assert cloud.plans.find("pro").amount_cents == 10000

    usage = cloud.subscriptions.update_lifetime_usage("s1", external_historical_usage_amount_cents=2500)
    assert (usage.external_historical_usage_amount_cents, usage.current_usage_amount_cents) == (2500, 0)
    assert [t.completion_ratio for t in cloud.subscriptions.lifetime_usage("s1").usage_thresholds] == [0.5]

    created = cloud.subscriptions.create_alerts("s1", AlertsList(alerts=[Alert(
        alert_type="current_usage_amount", code="spend", name="Spend",
        thresholds=AlertThresholdList(__root__=[AlertThreshold(code="warn", value="1000")]),
    )]))
    assert [(a.code, a.thresholds.__root__[0].value) for a in created["alerts"]] == [("spend", "1000")]
    cloud.subscriptions.delete_alerts("s1")

"""Wallet alerts (Lago 1.51's /customers/{id}/wallets/{code}/alerts, issue 21): CRUD with Lago's bodies and
errors, and `alert.triggered` once per threshold the falling balance crosses (Lago's decreasing rule)."""
from __future__ import annotations

import pytest

from apps.invoicing.models import Wallet
from apps.invoicing.top_ups import wallet_balance_check
from apps.invoicing.wallet_alerts import thresholds_crossed
from apps.webhooks.models import WebhookEvent
from decimal import Decimal

pytestmark = pytest.mark.django_db
URL = "/api/v1/customers/acme/wallets/tokens/alerts"


@pytest.fixture
def acme(cloud):
    response = cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                             "state": "ON", "currency": "CAD"}}, format="json")
    assert response.status_code == 200, response.json()
    wallet = cloud.post("/api/v1/wallets", {"wallet": {"external_customer_id": "acme", "currency": "CAD",
                                                      "rate_amount": "1", "code": "tokens",
                                                      "granted_credits": "100"}}, format="json")
    assert wallet.status_code == 200, wallet.json()
    return cloud


def _alert(**overrides):
    return {"alert": {"alert_type": "wallet_balance_amount", "code": "low", "name": "Low balance",
                      "thresholds": [{"code": "warn", "value": "5000"}, {"code": "crit", "value": "1000"}],
                      **overrides}}


def test_alerts_crud_with_lago_s_bodies_and_errors(acme, desk):
    created = acme.post(URL, _alert(), format="json")
    assert created.status_code == 200, created.json()
    body = created.json()["alert"]
    assert {k: body[k] for k in ("alert_type", "code", "name", "direction", "previous_value", "wallet_code",
                                 "thresholds")} == {
        "alert_type": "wallet_balance_amount", "code": "low", "name": "Low balance", "direction": "decreasing",
        "previous_value": 10000, "wallet_code": "tokens",
        "thresholds": [{"code": "warn", "value": "5000", "recurring": False},
                       {"code": "crit", "value": "1000", "recurring": False}]}
    assert acme.post(URL, _alert(alert_type="wallet_credits_balance"), format="json").json()["error_details"] == {
        "code": ["value_already_exist"]}
    assert acme.post(URL, _alert(code="other"), format="json").json()["error_details"] == {
        "base": ["alert_already_exists"]}
    assert acme.post(URL, _alert(code="x", alert_type="current_usage_amount"), format="json").json()[
        "error_details"] == {"alert_type": ["invalid_type"]}
    assert acme.post(URL, _alert(code="x", alert_type="wallet_credits_balance", thresholds=[]),
                     format="json").json()["error_details"] == {"thresholds": ["value_is_mandatory"]}
    batch = acme.post(URL, {"alerts": [
        {"alert_type": "wallet_credits_balance", "code": "credits", "thresholds": [{"value": "20"}]},
        {"alert_type": "wallet_ongoing_balance_amount", "code": "ongoing", "thresholds": [{"value": "100"}]}]},
        format="json")
    assert [a["code"] for a in batch.json()["alerts"]] == ["credits", "ongoing"]
    listed = acme.get(URL).json()
    assert ([a["code"] for a in listed["alerts"]], listed["meta"]["total_count"]) == (["low", "credits", "ongoing"], 3)
    assert acme.get(f"{URL}/low").json()["alert"]["lago_id"] == body["lago_id"]
    updated = acme.put(f"{URL}/low", {"alert": {"name": "Renamed", "thresholds": [{"value": "2500"}]}},
                       format="json").json()["alert"]
    assert (updated["name"], updated["thresholds"]) == ("Renamed", [{"code": None, "value": "2500",
                                                                    "recurring": False}])
    assert acme.get(f"{URL}/nope").json()["code"] == "alert_not_found"
    assert desk.get(URL).status_code == 404
    assert acme.delete(f"{URL}/credits").json()["alert"]["code"] == "credits"
    assert acme.get(f"{URL}/credits").status_code == 404
    assert acme.delete(URL).status_code == 200
    assert acme.get(URL).json()["meta"]["total_count"] == 0


def test_a_falling_balance_triggers_each_threshold_once(acme):
    assert acme.post(URL, _alert(), format="json").status_code == 200
    wallet = Wallet.objects.get(code="tokens")

    def triggered():
        return [e.payload["triggered_alert"] for e in
                WebhookEvent.objects.filter(event_type="alert.triggered").order_by("id")]

    Wallet.objects.filter(pk=wallet.pk).update(balance_amount_cents=4000)  # as a consumption would
    wallet_balance_check(wallet_id=wallet.pk)
    wallet_balance_check(wallet_id=wallet.pk)
    [first] = triggered()
    assert (first["alert_code"], first["previous_value"], first["current_value"], first["crossed_thresholds"],
            first["external_customer_id"]) == (
        "low", "10000", "4000", [{"code": "warn", "value": "5000", "recurring": False}], "acme")
    Wallet.objects.filter(pk=wallet.pk).update(balance_amount_cents=500)
    wallet_balance_check(wallet_id=wallet.pk)
    assert [t["crossed_thresholds"] for t in triggered()][1] == [{"code": "crit", "value": "1000",
                                                                 "recurring": False}]
    assert acme.get(f"{URL}/low").json()["alert"]["previous_value"] == 500


def test_lago_s_decreasing_rule():
    one_time = [{"code": "a", "value": "50", "recurring": False}, {"code": "b", "value": "20", "recurring": False}]
    assert thresholds_crossed(one_time, previous=Decimal(100), current=Decimal(10)) == [Decimal(20), Decimal(50)]
    assert thresholds_crossed(one_time, previous=Decimal(100), current=Decimal(60)) == []
    assert thresholds_crossed(one_time, previous=Decimal(10), current=Decimal(60)) == []  # rising: nothing
    with_steps = [*one_time, {"code": "r", "value": "5", "recurring": True}]
    # Below the lowest one-time threshold (20), every 5: 15 and 10 crossed on the way from 30 to 9.
    assert thresholds_crossed(with_steps, previous=Decimal(30), current=Decimal(9)) == [
        Decimal(10), Decimal(15), Decimal(20)]

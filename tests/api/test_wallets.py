"""Wallets (`/wallets`) and wallet transactions (`/wallet_transactions`) with Lago's bodies and errors (issue 20)."""
from __future__ import annotations

import pytest

from apps.invoicing.models import Invoice, Wallet, WalletTransaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(cloud):
    response = cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                             "state": "ON", "currency": "CAD"}}, format="json")
    assert response.status_code == 200, response.json()
    return cloud


def _create(client, **body):
    wallet = {"external_customer_id": "acme", "currency": "CAD", "rate_amount": "1.5", "name": "Tokens", **body}
    return client.post("/api/v1/wallets", {"wallet": wallet}, format="json")


def test_wallet_with_granted_credits_is_credited_at_once(acme):
    created = _create(acme, granted_credits="10", expiration_at="2099-01-01T00:00:00Z", code="tokens")
    assert created.status_code == 200, created.json()
    body = created.json()["wallet"]
    assert {k: body[k] for k in ("external_customer_id", "status", "currency", "rate_amount", "credits_balance",
                                 "balance_cents", "consumed_credits", "ongoing_balance_cents", "name", "code",
                                 "expiration_at", "terminated_at")} == {
        "external_customer_id": "acme", "status": "active", "currency": "CAD", "rate_amount": "1.5",
        "credits_balance": "10", "balance_cents": 1500, "consumed_credits": "0", "ongoing_balance_cents": 1500,
        "name": "Tokens", "code": "tokens", "expiration_at": "2099-01-01T00:00:00Z", "terminated_at": None}
    customer = acme.get("/api/v1/customers/acme").json()["customer"]
    assert body["lago_customer_id"] == customer["lago_id"]
    listed = acme.get(f"/api/v1/wallets/{body['lago_id']}/wallet_transactions").json()
    assert [(t["transaction_type"], t["status"], t["transaction_status"], t["amount"], t["credit_amount"])
            for t in listed["wallet_transactions"]] == [("inbound", "settled", "granted", "15", "10")]
    assert listed["meta"]["total_count"] == 1
    assert not Invoice.objects.exists()


def test_paid_credits_bill_a_credit_invoice_and_credit_nothing_until_paid(acme):
    created = _create(acme, paid_credits="20", granted_credits="5")
    body = created.json()["wallet"]
    assert body["balance_cents"] == 750  # the granted 5 credits only
    top = acme.post("/api/v1/wallet_transactions", {"wallet_transaction": {"wallet_id": body["lago_id"],
                                                                           "paid_credits": "2.5"}}, format="json")
    assert top.status_code == 200, top.json()
    [paid] = top.json()["wallet_transactions"]
    assert (paid["status"], paid["transaction_status"], paid["amount"], paid["credit_amount"]) == (
        "pending", "purchased", "3.75", "2.5")
    invoices = Invoice.objects.filter(invoice_type="credit").order_by("id")
    assert [(i.status, i.total_amount_cents, i.taxes_amount_cents) for i in invoices] == [
        ("finalized", 3000, 0), ("finalized", 375, 0)]
    assert paid["lago_invoice_id"] == str(invoices[1].lago_id)
    invoice = acme.get(f"/api/v1/invoices/{paid['lago_invoice_id']}").json()["invoice"]
    assert (invoice["invoice_type"], invoice["total_amount_cents"], invoice["taxes_amount_cents"]) == ("credit", 375, 0)
    [fee] = invoice["fees"]
    assert (fee["item"]["type"], fee["item"]["code"], fee["item"]["item_type"], fee["item"]["lago_item_id"],
            fee["units"]) == ("credit", "credit", "WalletTransaction", paid["lago_id"], "2.5")
    assert acme.get(f"/api/v1/wallets/{body['lago_id']}").json()["wallet"]["balance_cents"] == 750
    pending = acme.get(f"/api/v1/wallets/{body['lago_id']}/wallet_transactions", {"status": "pending"}).json()
    assert pending["meta"]["total_count"] == 2


def test_update_list_and_terminate(acme):
    body = _create(acme).json()["wallet"]
    updated = acme.put(f"/api/v1/wallets/{body['lago_id']}", {"wallet": {"name": "Renamed", "priority": 3}},
                       format="json")
    assert updated.status_code == 200 and (updated.json()["wallet"]["name"], updated.json()["wallet"]["priority"]) == (
        "Renamed", 3)
    assert acme.get("/api/v1/wallets", {"external_customer_id": "acme"}).json()["meta"]["total_count"] == 1
    by_customer = acme.get("/api/v1/customers/acme/wallets").json()
    assert [w["lago_id"] for w in by_customer["wallets"]] == [body["lago_id"]]
    assert acme.get("/api/v1/customers/nobody/wallets").json()["code"] == "customer_not_found"
    deleted = acme.delete(f"/api/v1/wallets/{body['lago_id']}")
    assert deleted.status_code == 200 and deleted.json()["wallet"]["status"] == "terminated"
    assert deleted.json()["wallet"]["terminated_at"] is not None
    assert acme.delete(f"/api/v1/wallets/{body['lago_id']}").status_code == 200  # idempotent
    top = acme.post("/api/v1/wallet_transactions", {"wallet_transaction": {"wallet_id": body["lago_id"],
                                                                           "granted_credits": "1"}}, format="json")
    assert top.json() == {"status": 404, "error": "Not Found", "code": "wallet_not_found"}
    again = acme.put(f"/api/v1/wallets/{body['lago_id']}", {"wallet": {"name": "x"}}, format="json")
    assert (again.status_code, again.json()["code"]) == (405, "wallet_is_terminated")
    assert acme.get("/api/v1/wallets", {"status": "active"}).json()["meta"]["total_count"] == 0


def test_bad_input_gets_lago_s_errors_and_writes_nothing(acme):
    assert _create(acme, external_customer_id="nobody").json()["code"] == "customer_not_found"
    zero_rate = _create(acme, rate_amount="0")
    assert (zero_rate.status_code, zero_rate.json()["error_details"]) == (422, {"rate_amount": ["value_is_out_of_range"]})
    other = _create(acme, currency="USD")
    assert other.json()["error_details"] == {"currency": ["currencies_does_not_match"]}
    negative = _create(acme, paid_credits="-1")
    assert negative.json()["error_details"] == {"paid_credits": ["value_is_out_of_range"]}
    dust = _create(acme, rate_amount="0.001", granted_credits="1")  # 0.001 CAD: rounds to nothing
    assert dust.json()["error_details"] == {"granted_credits": ["invalid_granted_credits"]}
    past = _create(acme, expiration_at="2001-01-01T00:00:00Z")
    assert past.json()["error_details"] == {"expiration_at": ["invalid_date"]}
    assert _create(acme, rate_amount="abc").status_code == 422
    assert acme.post("/api/v1/wallets", {"wallets": {}}, format="json").status_code == 400
    assert not Wallet.objects.exists() and not WalletTransaction.objects.exists() and not Invoice.objects.exists()

    wallet = _create(acme).json()["wallet"]
    bad = acme.post("/api/v1/wallet_transactions", {"wallet_transaction": {"wallet_id": wallet["lago_id"],
                                                                           "paid_credits": "1", "granted_credits": "-2"}},
                    format="json")
    assert bad.json()["error_details"] == {"granted_credits": ["value_is_out_of_range"]}
    assert not WalletTransaction.objects.exists() and not Invoice.objects.exists()
    assert acme.get("/api/v1/wallets/not-a-uuid").json()["code"] == "wallet_not_found"


def test_another_service_sees_none_of_them(acme, desk):
    wallet = _create(acme, granted_credits="1").json()["wallet"]
    assert desk.get(f"/api/v1/wallets/{wallet['lago_id']}").json()["code"] == "wallet_not_found"
    assert desk.get("/api/v1/wallets").json()["meta"]["total_count"] == 0
    assert desk.get(f"/api/v1/wallets/{wallet['lago_id']}/wallet_transactions").status_code == 404
    assert desk.delete(f"/api/v1/wallets/{wallet['lago_id']}").status_code == 404
    top = desk.post("/api/v1/wallet_transactions", {"wallet_transaction": {"wallet_id": wallet["lago_id"],
                                                                           "granted_credits": "1"}}, format="json")
    assert top.json()["code"] == "wallet_not_found"
    assert Wallet.objects.get().balance_amount_cents == 150


def test_recurring_transaction_rules_with_lago_s_bodies_and_errors(acme):
    """Lago's example rule (a monthly target top-up to 200 credits) on create, shown on the wallet; an update
    naming it changes it, one without a lago_id replaces it; two rules or a bad one answer Lago's 422."""
    rule = {"trigger": "interval", "method": "target", "interval": "monthly", "target_ongoing_balance": "200.0",
            "started_at": "2099-08-08T00:00:00Z", "transaction_metadata": [{"key": "example_key",
                                                                            "value": "example_value"}],
            "transaction_name": "Tokens for models 'high-fidelity-boost'"}
    created = _create(acme, granted_credits="10", recurring_transaction_rules=[rule])
    assert created.status_code == 200, created.json()
    [shown] = created.json()["wallet"]["recurring_transaction_rules"]
    assert {k: shown[k] for k in ("trigger", "method", "interval", "status", "target_ongoing_balance", "paid_credits",
                                  "granted_credits", "threshold_credits", "grants_target_top_up", "started_at",
                                  "transaction_name", "transaction_metadata")} == {
        "trigger": "interval", "method": "target", "interval": "monthly", "status": "active",
        "target_ongoing_balance": "200", "paid_credits": "0", "granted_credits": "0", "threshold_credits": "0",
        "grants_target_top_up": False, "started_at": "2099-08-08T00:00:00Z",
        "transaction_name": "Tokens for models 'high-fidelity-boost'",
        "transaction_metadata": [{"key": "example_key", "value": "example_value"}]}
    lago_id = created.json()["wallet"]["lago_id"]
    changed = acme.put(f"/api/v1/wallets/{lago_id}", {"wallet": {"recurring_transaction_rules": [
        {**rule, "lago_id": shown["lago_id"], "target_ongoing_balance": "300"}]}}, format="json")
    [kept] = changed.json()["wallet"]["recurring_transaction_rules"]
    assert (kept["lago_id"], kept["target_ongoing_balance"]) == (shown["lago_id"], "300")
    replaced = acme.put(f"/api/v1/wallets/{lago_id}", {"wallet": {"recurring_transaction_rules": [
        {"trigger": "threshold", "threshold_credits": "5", "paid_credits": "20"}]}}, format="json")
    [new] = replaced.json()["wallet"]["recurring_transaction_rules"]
    assert new["lago_id"] != shown["lago_id"] and (new["trigger"], new["grants_target_top_up"]) == ("threshold", None)
    assert acme.get("/api/v1/wallets").json()["wallets"][0]["recurring_transaction_rules"] == [new]

    two = _create(acme, recurring_transaction_rules=[rule, rule])
    assert (two.status_code, two.json()["error_details"]) == (
        422, {"recurring_transaction_rules": ["invalid_number_of_recurring_rules"]})
    bad = acme.put(f"/api/v1/wallets/{lago_id}", {"wallet": {"recurring_transaction_rules": [
        {"trigger": "threshold", "method": "target", "threshold_credits": "50", "target_ongoing_balance": "10"}]}},
        format="json")
    assert (bad.status_code, bad.json()["error_details"]) == (
        422, {"recurring_transaction_rules": ["invalid_recurring_rule"]})
    assert Wallet.objects.count() == 1


def test_applies_to_in_lago_s_body(acme):
    metric = acme.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Tokens", "code": "tokens", "aggregation_type": "sum_agg", "field_name": "n"}}, format="json")
    assert metric.status_code == 200, metric.json()
    created = _create(acme, applies_to={"fee_types": ["charge"], "billable_metric_codes": ["tokens"]})
    assert created.json()["wallet"]["applies_to"] == {"fee_types": ["charge"], "billable_metric_codes": ["tokens"]}
    bad = _create(acme, applies_to={"billable_metric_codes": ["unknown"]})
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"billable_metrics": ["invalid_identifier"]})


def test_deleting_the_customer_terminates_its_wallets(acme):
    """Lago's Customers::DestroyService terminates the customer's wallets: none is consumed again, the unused
    credit is forfeited."""
    wallet = _create(acme, granted_credits="4").json()["wallet"]
    assert acme.delete("/api/v1/customers/acme").status_code == 200
    ended = Wallet.objects.get(lago_id=wallet["lago_id"])
    assert (ended.status, ended.balance_amount_cents) == ("terminated", 0)
    assert ended.terminated_at is not None
    assert WalletTransaction.objects.filter(wallet=ended, reason="forfeit", amount_cents=600).exists()
    assert acme.get(f"/api/v1/wallets/{wallet['lago_id']}").json()["wallet"]["status"] == "terminated"

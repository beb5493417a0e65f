"""Apps' view of wallets: the official lago-python-client against a live hub (issue 20)."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Wallet, WalletTransaction

pytestmark = pytest.mark.django_db(transaction=True)


def test_lago_client_creates_tops_up_lists_updates_and_terminates(live_server, service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    client = Client(api_key=issued.raw_key, api_url=live_server.url)
    client.customers.create(Customer(external_id="acme", name="Acme", country="CA", state="ON", currency="CAD"))

    wallet = client.wallets.create(Wallet(external_customer_id="acme", name="Tokens", rate_amount="0.5",
                                          currency="CAD", granted_credits="10", paid_credits="4"))
    assert (wallet.status, wallet.rate_amount, wallet.credits_balance, wallet.balance_cents) == (
        "active", "0.5", "10", 500)
    assert client.wallets.find(wallet.lago_id).external_customer_id == "acme"
    assert len(client.wallets.find_all({"external_customer_id": "acme"})["wallets"]) == 1

    created = client.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, granted_credits="2",
                                                                  paid_credits="6"))
    rows = created["wallet_transactions"]
    assert sorted((t.transaction_status, t.status, t.credit_amount, t.amount) for t in rows) == [
        ("granted", "settled", "2", "1"), ("purchased", "pending", "6", "3")]
    history = client.wallet_transactions.find_all(wallet.lago_id)["wallet_transactions"]
    assert len(history) == 4  # the creation's grant and purchase, then these two
    assert client.wallets.find(wallet.lago_id).balance_cents == 600  # purchases wait for their invoice's payment

    renamed = client.wallets.update(Wallet(name="Renamed", priority=5), wallet.lago_id)
    assert (renamed.name, renamed.priority, renamed.balance_cents) == ("Renamed", 5, 600)
    assert client.wallets.destroy(wallet.lago_id).status == "terminated"

    with pytest.raises(LagoApiError) as refused:
        client.wallets.find("00000000-0000-0000-0000-000000000000")
    assert refused.value.status_code == 404


def test_lago_client_rules_metadata_customer_wallets_and_alerts(live_server, service_factory):
    """lago-python-client's recurring rules, applies_to, metadata, customer-nested wallets and wallet alerts."""
    from lago_python_client.models.alert import Alert, AlertThreshold, AlertThresholdList
    from lago_python_client.models.wallet import AppliesTo, RecurringTransactionRule, RecurringTransactionRuleList

    issued = service_factory("nexacloud", "NexaCloud")
    client = Client(api_key=issued.raw_key, api_url=live_server.url)
    client.customers.create(Customer(external_id="acme", name="Acme", country="CA", state="ON", currency="CAD"))
    rule = RecurringTransactionRule(trigger="threshold", method="fixed", threshold_credits="5", granted_credits="10")
    wallet = client.wallets.create(Wallet(
        external_customer_id="acme", rate_amount="1", currency="CAD", code="tokens", granted_credits="20",
        recurring_transaction_rules=RecurringTransactionRuleList(__root__=[rule]),
        applies_to=AppliesTo(fee_types=["subscription"]), metadata={"team": "ml"}))
    [shown] = wallet.recurring_transaction_rules.__root__
    assert (shown.trigger, shown.threshold_credits, shown.granted_credits) == ("threshold", "5", "10")
    assert wallet.applies_to.fee_types == ["subscription"]
    assert client.wallets.merge_metadata(wallet.lago_id, {"owner": "ops"}) == {"team": "ml", "owner": "ops"}
    assert client.wallets.delete_metadata_key(wallet.lago_id, "team") == {"owner": "ops"}

    nested = client.customers.wallets.find("acme", "tokens")
    assert nested.lago_id == wallet.lago_id
    client.customers.wallets.alerts.create("acme", "tokens", Alert(
        alert_type="wallet_balance_amount", code="low",
        thresholds=AlertThresholdList(__root__=[AlertThreshold(code="warn", value="500")])))
    assert client.customers.wallets.alerts.find("acme", "tokens", "low").code == "low"
    client.customers.wallets.alerts.destroy_all("acme", "tokens")
    assert client.customers.wallets.destroy("acme", "tokens").status == "terminated"

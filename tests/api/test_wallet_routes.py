"""Lago 1.51's remaining wallet routes (issue 21): wallets by code under their customer, wallet metadata on both
paths, a wallet transaction by id, its consumptions and fundings (not traceable here), and the payment link of a
paid top-up, with Lago's bodies and errors (every body checked against Lago's schemas where the document is)."""
from __future__ import annotations

import pytest

from apps.invoicing.models import Wallet, WalletTransaction
from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(cloud):
    response = cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                             "state": "ON", "currency": "CAD"}}, format="json")
    assert response.status_code == 200, response.json()
    return cloud


def test_wallets_by_code_under_their_customer(acme, desk):
    created = acme.post("/api/v1/customers/acme/wallets", {"wallet": {
        "currency": "CAD", "rate_amount": "1", "name": "Tokens", "code": "tokens", "granted_credits": "5"}},
        format="json")
    assert created.status_code == 200, created.json()
    body = created.json()["wallet"]
    assert (body["external_customer_id"], body["code"], body["balance_cents"]) == ("acme", "tokens", 500)
    assert acme.get("/api/v1/customers/acme/wallets/tokens").json()["wallet"]["lago_id"] == body["lago_id"]
    renamed = acme.put("/api/v1/customers/acme/wallets/tokens", {"wallet": {"name": "Renamed"}}, format="json")
    assert renamed.json()["wallet"]["name"] == "Renamed"
    assert acme.get("/api/v1/customers/acme/wallets/other").json() == {
        "status": 404, "error": "Not Found", "code": "wallet_not_found"}
    assert acme.get("/api/v1/customers/nobody/wallets/tokens").json()["code"] == "customer_not_found"
    assert desk.get("/api/v1/customers/acme/wallets/tokens").status_code == 404
    assert acme.post("/api/v1/customers/nobody/wallets", {"wallet": {"currency": "CAD", "rate_amount": "1"}},
                     format="json").json()["code"] == "customer_not_found"
    deleted = acme.delete("/api/v1/customers/acme/wallets/tokens")
    assert deleted.status_code == 200 and deleted.json()["wallet"]["status"] == "terminated"
    again = acme.post("/api/v1/customers/acme/wallets", {"wallet": {"currency": "CAD", "rate_amount": "1",
                                                                    "code": "tokens"}}, format="json")
    # The active wallet of a code comes before a terminated one of the same code, as Lago orders them.
    assert acme.get("/api/v1/customers/acme/wallets/tokens").json()["wallet"]["lago_id"] == \
        again.json()["wallet"]["lago_id"]


@pytest.mark.parametrize("nested", [False, True], ids=["by-id", "by-customer-and-code"])
def test_wallet_metadata_replace_merge_delete_key_and_all(acme, desk, nested):
    wallet = acme.post("/api/v1/wallets", {"wallet": {"external_customer_id": "acme", "currency": "CAD",
                                                      "rate_amount": "1", "code": "tokens"}}, format="json")
    lago_id = wallet.json()["wallet"]["lago_id"]
    assert "metadata" not in wallet.json()["wallet"]  # none set yet: Lago leaves it out
    url = "/api/v1/customers/acme/wallets/tokens/metadata" if nested else f"/api/v1/wallets/{lago_id}/metadata"
    assert acme.delete(f"{url}/a").json()["code"] == "metadata_not_found"
    replaced = acme.post(url, {"metadata": {"a": "1", "b": "2"}}, format="json")
    assert (replaced.status_code, replaced.json()) == (200, {"metadata": {"a": "1", "b": "2"}})
    assert acme.post(url, {"metadata": {"a": "1"}}, format="json").json() == {"metadata": {"a": "1"}}
    assert acme.patch(url, {"metadata": {"c": None}}, format="json").json() == {"metadata": {"a": "1", "c": None}}
    assert acme.get(f"/api/v1/wallets/{lago_id}").json()["wallet"]["metadata"] == {"a": "1", "c": None}
    assert acme.delete(f"{url}/a").json() == {"metadata": {"c": None}}
    assert acme.delete(f"{url}/zzz").json() == {"metadata": {"c": None}}
    bad = acme.patch(url, {"metadata": {"k" * 101: "x"}}, format="json")
    assert (bad.status_code, bad.json()["error_details"]) == (422, {"metadata": ["invalid_value"]})
    assert acme.delete(url).json() == {"metadata": None}
    outsider = "/api/v1/customers/acme/wallets/tokens/metadata" if nested else f"/api/v1/wallets/{lago_id}/metadata"
    assert desk.post(outsider, {"metadata": {"x": "y"}}, format="json").status_code == 404
    assert Wallet.objects.get(lago_id=lago_id).metadata is None


def test_a_wallet_transaction_by_id_and_its_consumptions_and_fundings(acme, desk):
    wallet = acme.post("/api/v1/wallets", {"wallet": {"external_customer_id": "acme", "currency": "CAD",
                                                      "rate_amount": "2", "granted_credits": "3"}}, format="json")
    row = WalletTransaction.objects.get(wallet__lago_id=wallet.json()["wallet"]["lago_id"])
    found = acme.get(f"/api/v1/wallet_transactions/{row.lago_id}")
    assert found.status_code == 200
    assert {k: found.json()["wallet_transaction"][k] for k in ("lago_id", "amount", "credit_amount", "status")} == {
        "lago_id": str(row.lago_id), "amount": "6", "credit_amount": "3", "status": "settled"}
    for path in ("", "/consumptions", "/fundings"):
        assert desk.get(f"/api/v1/wallet_transactions/{row.lago_id}{path}").json()["code"] == \
            "wallet_transaction_not_found"
        assert acme.get(f"/api/v1/wallet_transactions/not-a-uuid{path}").status_code == 404
    for path in ("/consumptions", "/fundings"):
        refused = acme.get(f"/api/v1/wallet_transactions/{row.lago_id}{path}")
        assert (refused.status_code, refused.json()["error_details"]) == (422, {"wallet": ["not_traceable"]})


def test_the_payment_url_of_a_paid_top_up(acme, desk, stripe_env):  # noqa: F811
    wallet = acme.post("/api/v1/wallets", {"wallet": {"external_customer_id": "acme", "currency": "CAD",
                                                      "rate_amount": "1", "paid_credits": "20",
                                                      "granted_credits": "1"}}, format="json")
    rows = {row.transaction_status: row for row in
            WalletTransaction.objects.filter(wallet__lago_id=wallet.json()["wallet"]["lago_id"])}
    paid, granted = rows["purchased"], rows["granted"]
    answer = acme.post(f"/api/v1/wallet_transactions/{paid.lago_id}/payment_url")
    assert answer.status_code == 200, answer.json()
    details = answer.json()["wallet_transaction_payment_details"]
    assert details["payment_url"].startswith("http://localstripe.invalid/checkout/cs_test_")
    assert (details["lago_wallet_transaction_id"], details["external_customer_id"], details["payment_provider"]) == (
        str(paid.lago_id), "acme", "stripe")
    refused = acme.post(f"/api/v1/wallet_transactions/{granted.lago_id}/payment_url")
    assert (refused.status_code, refused.json()["error_details"]) == (422, {"base": ["wallet_transaction_not_purchased"]})
    WalletTransaction.objects.filter(pk=paid.pk).update(status="settled")
    settled = acme.post(f"/api/v1/wallet_transactions/{paid.lago_id}/payment_url")
    assert settled.json()["error_details"] == {"base": ["wallet_transaction_already_settled"]}
    assert desk.post(f"/api/v1/wallet_transactions/{paid.lago_id}/payment_url").status_code == 404

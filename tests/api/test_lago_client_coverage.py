"""Every lago-python-client call the hub routes is made through the client by some test (issue 21); the table is
bench/lago_client_coverage.py's, quoted in test_charges_lago_client.py."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import lago_client_coverage  # noqa: E402
from lago_coverage import routed  # noqa: E402


def test_every_routed_client_call_has_a_client_test():
    tests = lago_client_coverage.client_tests()
    operations = lago_client_coverage.client_operations()
    assert len(operations) > 150  # the whole client was walked, not a part of it
    missing = [f"{call} ({method} {path})" for call, method, path in operations
               if routed(method.lower(), path) and not tests.get(call)]
    assert missing == []


def test_the_walk_sees_what_each_call_sends():
    operations = {call: (method, path) for call, method, path in lago_client_coverage.client_operations()}
    assert operations["plan_charges.update"] == ("PUT", "/plans/{parent_id}/charges/{child_id}")
    assert operations["subscriptions.update_charge_filter"] == (
        "PUT", "/subscriptions/{external_id}/charges/{charge_code}/filters/{filter_id}")
    assert operations["customers.wallets.alerts.find"] == (
        "GET", "/customers/{customer_id}/wallets/{wallet_code}/alerts/{id}")
    assert operations["organizations.update"] == ("PUT", "/organizations")

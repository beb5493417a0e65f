"""The optional read replica (apps/core/replica.py): safe API and admin requests read from it, writes and a
caller's own recent writes from the primary.

The replica here is a second connection to the test database whose sessions are read-only, as a streaming
replica's are: what the router sends it shows in its captured queries, and a write sent there would fail.
"""
from __future__ import annotations

import copy

import pytest
from django.core.cache import cache
from django.db import DatabaseError, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.replica import REPLICA, replica_reads
from apps.customers.models import Customer


@pytest.fixture(scope="module")
def _replica_alias():
    """Configured for this module only, before each test's database set-up (which must know the alias)."""
    primary = copy.deepcopy(connections["default"].settings_dict)
    primary["OPTIONS"]["options"] = "-c default_transaction_read_only=on"
    primary["TEST"] = {**primary.get("TEST", {}), "MIRROR": "default"}  # not flushed apart: it is the same database
    connections.settings[REPLICA] = primary
    try:
        yield
    finally:
        connections[REPLICA].close()
        del connections[REPLICA]
        del connections.settings[REPLICA]


@pytest.fixture
def replica(_replica_alias):
    cache.clear()
    yield connections[REPLICA]
    connections[REPLICA].close()
    cache.clear()


def _tables(queries) -> str:
    return " ".join(query["sql"] for query in queries.captured_queries)


@pytest.fixture
def cloud_customer(cloud):
    response = cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                             "state": "ON"}}, format="json")
    assert response.status_code == 200, response.json()
    return cloud


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_the_replica_refuses_writes(replica):
    with pytest.raises(DatabaseError, match="read-only transaction"):
        with replica.cursor() as cursor:
            cursor.execute("UPDATE customers_customer SET name = name")


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_api_reads_come_from_the_replica_until_the_caller_writes(cloud_customer, replica):
    cache.clear()  # the fixture's own POST made this key sticky
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        response = cloud_customer.get("/api/v1/customers/acme")
    assert response.status_code == 200 and response.json()["customer"]["name"] == "Acme"
    assert "customers_customer" in _tables(on_replica)
    assert "customers_customer" not in _tables(on_primary)

    with CaptureQueriesContext(replica) as on_replica:
        response = cloud_customer.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme Corp"}},
                                       format="json")
    assert response.status_code == 200
    assert on_replica.captured_queries == []  # a write request reads and writes on the primary only

    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        response = cloud_customer.get("/api/v1/customers/acme")
    assert response.json()["customer"]["name"] == "Acme Corp"
    assert on_replica.captured_queries == []  # its own write moments ago: read from the primary
    assert "customers_customer" in _tables(on_primary)


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_another_callers_reads_stay_on_the_replica_after_a_write(cloud_customer, desk, replica):
    cache.clear()
    assert cloud_customer.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme Corp"}},
                               format="json").status_code == 200
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        assert desk.get("/api/v1/customers").status_code == 200
    assert "customers_accountlink" in _tables(on_replica)
    assert "customers_accountlink" not in _tables(on_primary)


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_admin_pages_read_from_the_replica_and_a_save_reads_back_from_the_primary(admin_client, cloud_customer, replica):
    customer = Customer.objects.get(account_links__external_id="acme")
    cache.clear()
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        page = admin_client.get(reverse("admin:customers_customer_changelist"))
    assert page.status_code == 200 and "Acme" in page.content.decode()
    assert "customers_customer" in _tables(on_replica)
    assert "customers_customer" not in _tables(on_primary)

    with CaptureQueriesContext(replica) as on_replica:
        admin_client.post(reverse("admin:customers_customer_change", args=[customer.pk]), {})  # a write (even refused)
    assert on_replica.captured_queries == []
    with CaptureQueriesContext(replica) as on_replica:
        assert admin_client.get(reverse("admin:customers_customer_changelist")).status_code == 200
    assert on_replica.captured_queries == []  # the session's own write moments ago: the primary


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_reads_inside_a_primary_transaction_stay_on_the_primary(cloud_customer, replica):
    with replica_reads():
        with CaptureQueriesContext(replica) as on_replica:
            assert Customer.objects.filter(account_links__external_id="acme").exists()
        assert "customers_customer" in _tables(on_replica)
        with CaptureQueriesContext(replica) as on_replica, transaction.atomic():
            customer = Customer.objects.select_for_update(of=("self",)).get(account_links__external_id="acme")
            assert Customer.objects.get(pk=customer.pk).name == "Acme"
        assert on_replica.captured_queries == []


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_an_instance_read_from_the_replica_is_saved_to_the_primary(cloud_customer, replica):
    with replica_reads():
        customer = Customer.objects.get(account_links__external_id="acme")
    assert customer._state.db == REPLICA
    customer.name = "Acme Renamed"
    customer.save(update_fields=["name"])  # would fail on the read-only replica
    assert Customer.objects.get(pk=customer.pk).name == "Acme Renamed"


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_every_safe_api_list_works_through_the_replica(cloud_customer, replica):
    cache.clear()
    paths = ["/api/v1/customers", "/api/v1/plans", "/api/v1/billable_metrics", "/api/v1/subscriptions?external_customer_id=acme",
             "/api/v1/invoices", "/api/v1/credit_notes", "/api/v1/events", "/api/v1/fees", "/api/v1/taxes",
             "/api/v1/add_ons", "/api/v1/coupons", "/api/v1/applied_coupons", "/api/v1/wallets?external_customer_id=acme",
             "/api/v1/webhook_endpoints", "/api/v1/customers/acme/invoices"]
    with CaptureQueriesContext(replica) as on_replica:
        statuses = {path: cloud_customer.get(path).status_code for path in paths}
    assert statuses == {path: 200 for path in paths}
    assert len(on_replica.captured_queries) >= len(paths)

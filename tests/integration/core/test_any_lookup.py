"""`__any` (apps/core/lookups.py) selects exactly what `__in` selects, with the list sent as one array."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.customers.models import AccountLink, Customer, Service
from tests.integration.ledger.builders import customer_make


@pytest.mark.django_db
def test_any_selects_what_in_selects_on_keys_relations_and_instances(service_factory):
    service_factory("anysvc")
    service = Service.objects.get(code="anysvc")
    customers = [customer_make() for _ in range(5)]
    for customer in customers:
        AccountLink.objects.create(service=service, customer=customer, external_id=customer.external_id)
    wanted = [customers[0].pk, customers[3].pk, 10**12]  # a key no row has, beyond int4
    assert set(Customer.objects.filter(pk__any=wanted)) == set(Customer.objects.filter(pk__in=wanted))
    assert set(Customer.objects.filter(pk__any=wanted)) == {customers[0], customers[3]}
    assert set(Customer.objects.filter(pk__any=[customers[1], customers[2]])) == {customers[1], customers[2]}
    assert list(Customer.objects.filter(pk__any=[])) == []
    assert Customer.objects.exclude(pk__any=wanted).count() == 3
    links = AccountLink.objects.filter(customer__any=wanted)
    assert sorted(link.customer_id for link in links) == sorted(wanted[:2])
    assert set(AccountLink.objects.filter(customer_id__any=wanted)) == set(links)


@pytest.mark.django_db
def test_any_sends_one_parameter_whatever_the_list_length():
    ids = list(range(1, 1001))
    with CaptureQueriesContext(connection) as queries:
        list(Customer.objects.filter(pk__any=ids))
    sql = queries.captured_queries[-1]["sql"]
    assert "= ANY(" in sql and " IN (" not in sql

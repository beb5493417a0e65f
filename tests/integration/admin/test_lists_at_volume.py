"""Invoice list reads that stay cheap at volume: customers-first search, currencies without a scan, sorted pages
an index serves (bench/admin.py times them at 240,000 invoices)."""
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(billing, settings):
    """Three customers' finalized invoices: Acme Boreal 7 Inc., Maple 17 Ltd. and Boreal 2 Corp."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan(amount_cents=10000)
    for external_id, legal_name in (("acme", "Acme Boreal 7 Inc."), ("maple", "Maple 17 Ltd."),
                                    ("boreal2", "Boreal 2 Corp.")):
        billing.customer(external_id, legal_name=legal_name, name=legal_name.split()[0])
        billing.subscribe(f"s-{external_id}", plan, customer=external_id, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoices = {invoice.customer.external_id.split(":")[-1]: invoice for invoice in Invoice.objects.select_related("customer")}
    assert len(invoices) == 3 and all(invoice.number for invoice in invoices.values())
    return invoices


def listed(client, **params):
    response = client.get(reverse("admin:invoicing_invoice_changelist"), params)
    assert response.status_code == 200
    return {invoice.pk for invoice in response.context["cl"].result_list}


def test_search_matches_every_word_against_customers_then_lists_their_invoices(admin_client, three):
    assert listed(admin_client, q="boreal 7") == {three["acme"].pk}  # both words, any field, any case
    assert listed(admin_client, q="Boreal") == {three["acme"].pk, three["boreal2"].pk}
    assert listed(admin_client, q="maple") == {three["maple"].pk}  # the external id
    assert listed(admin_client, q="Nobody") == set()


def test_a_search_matching_many_customers_reads_them_as_a_subquery_with_the_same_answer(admin_client, three,
                                                                                        monkeypatch):
    monkeypatch.setattr("apps.invoicing.selectors.SEARCH_CUSTOMER_IDS_INLINE", 1)
    assert listed(admin_client, q="Boreal") == {three["acme"].pk, three["boreal2"].pk}  # 2 customers > 1
    assert listed(admin_client, q=three["maple"].number) == {three["maple"].pk}


def test_search_finds_an_invoice_by_its_whole_number_its_lago_id_or_a_part_of_its_number(admin_client, three):
    maple = three["maple"]
    assert listed(admin_client, q=maple.number) == {maple.pk}
    assert listed(admin_client, q=maple.number.lower()) == {maple.pk}
    assert listed(admin_client, q=str(maple.lago_id)) == {maple.pk}
    tail = maple.number.rsplit("-", 1)[-1]  # no customer has it in a name: looked for inside numbers
    assert listed(admin_client, q=tail) == {maple.pk}


def test_currencies_are_offered_without_reading_the_invoices_and_filter_them(admin_client, three):
    Invoice.objects.filter(pk=three["maple"].pk).update(currency="USD")
    response = admin_client.get(reverse("admin:invoicing_invoice_changelist"))
    currency = next(spec for spec in response.context["cl"].filter_specs if spec.title == "currency")
    assert currency.lookup_choices[:2] == [("AUD", "AUD"), ("CAD", "CAD")]  # the hub's currencies, not the rows'
    assert listed(admin_client, currency__exact="USD") == {three["maple"].pk}


def test_sorting_by_total_breaks_ties_by_id_in_the_same_direction(admin_client, three):
    url = reverse("admin:invoicing_invoice_changelist")
    up = admin_client.get(url, {"o": "7"}).context["cl"]
    assert str(up.queryset.query).endswith(
        'ORDER BY "invoicing_invoice"."total_amount_cents" ASC, "invoicing_invoice"."id" ASC')
    down = admin_client.get(url, {"o": "-7"}).context["cl"]
    assert str(down.queryset.query).endswith(
        'ORDER BY "invoicing_invoice"."total_amount_cents" DESC, "invoicing_invoice"."id" DESC')
    assert [invoice.pk for invoice in up.result_list] == sorted(invoice.pk for invoice in three.values())

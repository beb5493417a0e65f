"""Through the real posting path, Odoo's totals equal the hub's to the cent (hypothesis; issue 16).

The hub's services write one-off invoices (units x unit price, taxed for a random province) and credit notes on
them; the ledger sends them over JSON-2 and XML-RPC to the Odoo stand-in, which computes as Odoo 19 does with its
company set to round_per_line, and compares Odoo's untaxed/tax/total with the hub's: every posting must end
POSTED, none MISMATCH. The thousands of cases without HTTP are tests/unit/ledger/test_odoo_rounding_properties.py.
"""
from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.core.money import to_minor_units
from apps.customers.services import customer_upsert
from apps.invoicing.services import AddOnFee, CreditNoteItemIn, credit_note_create, invoice_create_one_off
from apps.ledger.models import LedgerPosting, OdooTaxMapping
from apps.ledger.services import ledger_post_pending_batch
from tests.integration.ledger.builders import mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.tax_amounts import line_amounts
from tests.tax_rates import PROVINCE_TAXES, PROVINCES

pytestmark = pytest.mark.django_db

_customers = itertools.count(1)


@pytest.fixture
def service(service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    for code in ("hst_sale_tax_14", "pst_sale_tax_6", "pst_sale_tax_7_mb"):  # the rest of ca_2023's sales taxes
        OdooTaxMapping.objects.create(tax_code=code, odoo_tax=f"account.1_{code}")
    return service


@st.composite
def cases(draw: Any) -> tuple[str, list[tuple[Decimal, int]], list[tuple[int, int]]]:
    """(province, fees as (units, unit cents), credits as (fee index, cents) clipped to what the fee has left)."""
    province = draw(st.sampled_from(PROVINCES))
    amounts = line_amounts(PROVINCE_TAXES[province], max_cents=10**8)
    fractional = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3)
    fee = st.one_of(st.tuples(st.just(Decimal(1)), amounts),  # a priced line, as most fees are
                    st.tuples(fractional, st.integers(1, 50)))  # many units at a cent or a few
    fees = draw(st.lists(fee.filter(lambda f: to_minor_units(f[0] * f[1] / 100, "CAD") > 0), min_size=1,
                         max_size=12))
    credits = draw(st.lists(st.tuples(st.integers(0, 11), st.integers(1, 10**6)), max_size=4))
    return province, fees, credits


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
def test_posted_invoices_and_credit_notes_match_odoo_to_the_cent(service, odoo_client, case) -> None:
    province, fees, credits = case
    link = customer_upsert(service=service, external_id=f"rounding-{next(_customers)}",
                           attributes={"country": "CA", "state": province, "timezone": "America/Toronto"})
    invoice = invoice_create_one_off(service=service, customer=link.customer, currency="CAD", fees=[
        AddOnFee(add_on_code=f"a{i}", units=units, unit_amount_cents=cents) for i, (units, cents) in enumerate(fees)])
    fee_rows = list(invoice.fees.order_by("id"))
    left = {fee.pk: fee.amount_cents for fee in fee_rows}
    for index, cents in credits:
        fee = fee_rows[index % len(fee_rows)]
        cents = min(cents, left[fee.pk])
        if cents:
            credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)])
            left[fee.pk] -= cents

    for _ in range(1 + len(credits)):  # one credit note of an invoice per round, in the hub's order
        LedgerPosting.objects.filter(status=LedgerPosting.Status.PENDING).update(next_attempt_at=None)
        ledger_post_pending_batch(limit=50, client=odoo_client)

    postings = list(LedgerPosting.objects.filter(invoice=invoice).union(
        LedgerPosting.objects.filter(credit_note__invoice=invoice)))
    assert len(postings) == 1 + invoice.credit_notes.count()
    for posting in postings:
        assert posting.status == LedgerPosting.Status.POSTED, (posting.ref, posting.last_error)
        assert (posting.odoo_amount_untaxed_cents, posting.odoo_amount_tax_cents, posting.odoo_amount_total_cents) \
            == (posting.hub_amount_untaxed_cents, posting.hub_amount_tax_cents, posting.hub_amount_total_cents)

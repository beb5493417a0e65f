"""Sales taxes are dated data: the rows in force on an invoice's issuing date are charged (issue 16)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.catalog.models import Tax
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.invoicing.selectors import tax_schedule
from apps.invoicing.services import CreditNoteItemIn, credit_note_create
from tests.tax_rates import CANADA, PROVINCES

from .conftest import at

pytestmark = pytest.mark.django_db


def test_the_seeded_rows_are_canadas_taxes():
    seeded = tax_schedule()
    for on in (date(2025, 3, 31), date(2025, 4, 1), date(2026, 12, 1)):
        for province in PROVINCES:
            assert seeded.rates_for("CA", province, on=on) == CANADA.rates_for("CA", province, on=on), province
    assert seeded.provinces("CA") == PROVINCES and len(PROVINCES) == 13


def test_a_future_rate_applies_from_its_date_and_credit_notes_keep_the_old_one(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    # Staff add Ontario's next HST rate ahead of time (admin: Catalog -> Taxes).
    Tax.objects.create(code="hst_sale_tax_14_on", name="14% HST (ON)", rate=Decimal("14"), country="CA",
                       provinces=["ON"], component="hst", valid_from=date(2026, 5, 1))
    plan = billing.plan(amount_cents=10000)
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    periods_close(as_of=at(2026, 5, 1, 1, 0))

    march, april = Invoice.objects.order_by("issuing_date")
    assert (str(march.issuing_date), march.taxes_amount_cents) == ("2026-04-01", 1300)
    assert [tax.tax_code for tax in march.applied_taxes.all()] == ["hst_sale_tax_13"]
    assert (str(april.issuing_date), april.taxes_amount_cents) == ("2026-05-01", 1400)
    assert [(tax.tax_code, tax.tax_rate) for tax in april.applied_taxes.all()] == [("hst_sale_tax_14_on", Decimal("14"))]

    fee = march.fees.get()
    note = credit_note_create(invoice_id=march.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=5000)])
    assert note.taxes_amount_cents == 650  # 13% of 50.00, the rate the credited invoice charged

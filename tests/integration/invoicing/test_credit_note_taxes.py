"""Credit notes never credit more tax than was charged, per fee and rate; crediting a fee in full credits exactly
its tax, however it is split (issue 15, defect 6)."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.customers.services import customer_upsert
from apps.invoicing.models import CreditNote, Fee
from apps.invoicing.services import (
    AddOnFee,
    CreditNoteItemIn,
    credit_note_create,
    credit_note_estimate,
    invoice_create_one_off,
)
from apps.catalog.taxes import credit_applied_taxes, line_tax_cents
from tests.tax_rates import PROVINCE_TAXES

pytestmark = pytest.mark.django_db

_customers = iter(range(1, 1_000_000))


def _one_off(service, *, province: str, fees_cents: list[int]):
    link = customer_upsert(service=service, external_id=f"cust-{next(_customers)}",
                           attributes={"country": "CA", "state": province, "timezone": "America/Toronto"})
    return invoice_create_one_off(
        service=service, customer=link.customer, currency="CAD",
        fees=[AddOnFee(add_on_code=f"a{i}", units=Decimal(1), unit_amount_cents=cents) for i, cents in enumerate(fees_cents)],
    )


def _credited_per_rate(fee: Fee) -> dict[str, int]:
    credited: dict[str, int] = defaultdict(int)
    for item in fee.credit_note_items.all():
        for tax in item.applied_taxes:
            credited[tax["code"]] += tax["amount_cents"]
    return dict(credited)


def test_an_8_cent_fee_taxed_1_cent_credited_as_two_4_cent_notes_credits_1_cent(service_factory) -> None:
    invoice = _one_off(service_factory().service, province="ON", fees_cents=[8])
    fee = invoice.fees.get()
    assert (fee.amount_cents, fee.taxes_amount_cents) == (8, 1)  # 8 × 13 % = 1.04 -> 1

    first = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=4)])
    second = credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=4)])

    # 4 × 13 % = 0.52 rounds to 1 on its own; the second note only has what the first left: 0.
    assert (first.taxes_amount_cents, first.total_amount_cents) == (1, 5)
    assert (second.taxes_amount_cents, second.total_amount_cents) == (0, 4)
    assert _credited_per_rate(fee) == {"hst_sale_tax_13": 1}
    assert second.items.get().applied_taxes == [
        {"code": "hst_sale_tax_13", "name": "13% HST", "rate": "13", "amount_cents": 0}]


def test_the_note_that_credits_the_last_of_a_fee_takes_the_remaining_tax(service_factory) -> None:
    invoice = _one_off(service_factory().service, province="ON", fees_cents=[8])
    fee = invoice.fees.get()
    taxes = [credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)])
             .taxes_amount_cents for cents in (3, 3, 2)]
    # Cumulative: 3 -> 0.39 -> 0; 6 -> 0.78 -> 1; the last 2 take what is left of the 1 charged: 0.
    assert taxes == [0, 1, 0]


def test_gst_and_qst_are_capped_each_on_their_own(service_factory) -> None:
    invoice = _one_off(service_factory().service, province="QC", fees_cents=[10])
    fee = invoice.fees.get()
    # 10 × 5 % = 0.5 -> 1 GST; 10 × 9.975 % = 0.9975 -> 1 QST
    assert [tax["amount_cents"] for tax in fee.applied_taxes] == [1, 1]
    for cents in (5, 5):
        credit_note_create(invoice_id=invoice.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=cents)])
    assert _credited_per_rate(fee) == {"gst_sale_tax_5": 1, "qst_sale_tax_9975": 1}


def test_two_items_on_one_fee_in_one_note_are_rounded_together(service_factory) -> None:
    invoice = _one_off(service_factory().service, province="ON", fees_cents=[8])
    fee = invoice.fees.get()
    items = [CreditNoteItemIn(fee_id=fee.pk, amount_cents=4), CreditNoteItemIn(fee_id=fee.pk, amount_cents=4)]
    estimate = credit_note_estimate(invoice=invoice, items=items)
    note = credit_note_create(invoice_id=invoice.pk, items=items)
    assert [tax for _, _, tax, _ in estimate.items] == [1, 0]
    assert list(note.items.order_by("id").values_list("taxes_amount_cents", flat=True)) == [1, 0]
    assert note.taxes_amount_cents == estimate.taxes_amount_cents == 1


# --------------------------------------------------------------------------- properties

rates_of = st.sampled_from(sorted(PROVINCE_TAXES)).map(lambda province: PROVINCE_TAXES[province])


@st.composite
def fee_and_split(draw):
    """A fee amount and a split of some or all of it into credits (at least one)."""
    amount = draw(st.integers(min_value=1, max_value=100_000))
    parts, left = [], amount
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        if left == 0:
            break
        part = draw(st.one_of(st.integers(min_value=1, max_value=min(left, 9)), st.integers(min_value=1, max_value=left)))
        parts.append(part)
        left -= part
    if draw(st.booleans()) and left:
        parts.append(left)  # fully credited
    return amount, parts


@settings(max_examples=500, deadline=None)
@given(rates=rates_of, case=fee_and_split())
def test_cumulative_credit_taxes_never_exceed_the_charge_and_a_full_credit_takes_all_of_it(rates, case) -> None:
    amount, parts = case
    applied = [{"code": r.code, "name": r.name, "rate": str(r.rate), "amount_cents": line_tax_cents(amount, r)}
               for r in rates]
    credited_amount, credited = 0, defaultdict(int)
    for part in parts:
        taxes = credit_applied_taxes(amount_cents=part, fee_amount_cents=amount, fee_applied_taxes=applied,
                                     credited_amount_cents=credited_amount, credited_taxes=credited)
        for tax, rate in zip(taxes, rates):
            assert tax["amount_cents"] >= 0
            # each credit stays within a cent per rate of its own per-line rounding
            assert abs(tax["amount_cents"] - line_tax_cents(part, rate)) <= 1
            credited[tax["code"]] += tax["amount_cents"]
        credited_amount += part
    for item in applied:
        assert credited[item["code"]] <= item["amount_cents"]
        if credited_amount == amount:
            assert credited[item["code"]] == item["amount_cents"]


@st.composite
def invoice_and_notes(draw):
    """Fees of a one-off invoice, and credit notes crediting random parts of them (fee index, cents)."""
    fees = draw(st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=4))
    left = list(fees)
    notes = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        items = []
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            open_fees = [i for i, cents in enumerate(left) if cents > 0]
            if not open_fees:
                break
            index = draw(st.sampled_from(open_fees))
            cents = draw(st.one_of(st.integers(min_value=1, max_value=min(left[index], 20)),
                                   st.integers(min_value=1, max_value=left[index]), st.just(left[index])))
            left[index] -= cents
            items.append((index, cents))
        if items:
            notes.append(items)
    return fees, notes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(province=st.sampled_from(sorted(PROVINCE_TAXES)), case=invoice_and_notes())
def test_credit_notes_split_at_random_credit_each_fees_tax_at_most_once(service_factory, province, case) -> None:
    fees_cents, notes = case
    invoice = _one_off(service_factory().service, province=province, fees_cents=fees_cents)
    fees = list(invoice.fees.order_by("id"))
    for items in notes:
        wanted = [CreditNoteItemIn(fee_id=fees[index].pk, amount_cents=cents) for index, cents in items]
        estimate = credit_note_estimate(invoice=invoice, items=wanted)
        note = credit_note_create(invoice_id=invoice.pk, items=wanted)
        assert (note.sub_total_excluding_taxes_amount_cents, note.taxes_amount_cents, note.total_amount_cents) == (
            estimate.sub_total_excluding_taxes_amount_cents, estimate.taxes_amount_cents, estimate.total_amount_cents)
        assert [(i.amount_cents, i.taxes_amount_cents, i.applied_taxes) for i in note.items.order_by("id")] == [
            (amount, tax, applied) for _, amount, tax, applied in estimate.items]
    for fee in fees:
        credited = _credited_per_rate(fee)
        fully = sum(fee.credit_note_items.values_list("amount_cents", flat=True)) == fee.amount_cents
        for charged in fee.applied_taxes:
            assert credited.get(charged["code"], 0) <= charged["amount_cents"]
            if fully:
                assert credited.get(charged["code"], 0) == charged["amount_cents"]
    notes_tax = sum(CreditNote.objects.filter(invoice=invoice).values_list("taxes_amount_cents", flat=True))
    assert notes_tax <= invoice.taxes_amount_cents

"""What an invoice bills: lines (a fee before it is written), their taxes per line, and invoice totals.

Shared by the period close (apps/invoicing/close/) and the other invoice writers (one-off invoices, refresh):
one rule for a fee's taxes and an invoice's totals. Money via rating.py and apps/catalog/taxes.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

from apps.catalog.models import Charge, ChargeFilter
from apps.catalog.taxes import TaxRate, TaxSchedule, applied_rates, invoice_totals, line_tax_cents
from apps.customers.models import Customer
from apps.subscriptions.models import Subscription

from .models import Fee, Invoice, InvoiceAppliedTax
from .selectors import tax_schedule

ZERO = Decimal(0)


@dataclass(frozen=True)
class Window:
    """A charges window in UTC, [from, to)."""

    start: datetime
    end: datetime


@dataclass
class Line:
    """A fee the close will write (or, for current usage, show)."""

    billing_on: date  # local day the fee is invoiced (invoice issuing_date)
    currency: str
    fee_key: str
    fee_type: str
    subscription: Subscription | None
    name: str
    charge: Charge | None = None
    # One of the charge's filters: the line bills the events it prices, at its properties. None on a charge with
    # filters: the events no filter prices, at the charge's own (apps/invoicing/filters.py).
    charge_filter: ChargeFilter | None = None
    description: str = ""
    units: Decimal = ZERO
    total_aggregated_units: Decimal = ZERO
    events_count: int = 0
    precise_unit_amount: Decimal = ZERO  # major units
    precise_amount: Decimal = ZERO  # major units, unrounded
    amount_cents: int = 0  # minor units
    amount_details: dict = field(default_factory=dict)
    from_datetime: datetime | None = None
    to_datetime: datetime | None = None
    is_adjustment: bool = False
    window: Window | None = None  # charges: priced once usage is fetched
    period_from: datetime | None = None  # the subscription period the line belongs to (InvoiceSubscription)
    period_to: datetime | None = None
    min_amount_cents: int = 0  # charge minimum to true up once priced
    proration: tuple | None = None  # (period, active_from, active_to) for the minimum
    late_event_ids: tuple[int, ...] = ()  # late usage rows this adjustment bills
    # A charge with pricing group keys: the group of events this line bills ({key: value or None}); None: not split.
    grouped_by: dict | None = None

    @property
    def properties(self) -> dict:
        """The charge-model properties this line is priced with: its filter's, else its charge's."""
        return self.charge_filter.properties if self.charge_filter is not None else self.charge.properties


def _json(value: Any) -> Any:
    """Make rating details JSON-safe without floats: Decimals and dates become strings."""
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    if isinstance(value, (Decimal, date)):
        return str(value)
    return value


def customer_tax_rates(customer: Customer, *, on: date, schedule: TaxSchedule | None = None) -> list[TaxRate]:
    """Return the customer's sales taxes in force on `on` (an invoice's issuing date); a customer without a
    country is untaxed (as in Lago). `schedule`: the taxes read once for many customers (else read now)."""
    if not customer.country:
        return []
    if schedule is None:
        schedule = tax_schedule()
    return schedule.rates_for(customer.country, customer.state or None, on=on)


def fee_taxes(amount_cents: int, rates: Iterable[TaxRate]) -> tuple[int, Decimal, list[dict]]:
    """Return (tax cents, summed rate, applied_taxes JSON) for one line, rounded per line and rate."""
    applied = [
        {"code": rate.code, "name": rate.name, "rate": str(rate.rate), "amount_cents": line_tax_cents(amount_cents, rate)}
        for rate in rates
    ]
    return sum(item["amount_cents"] for item in applied), sum((rate.rate for rate in rates), ZERO), applied


def _rates_of(fee: Fee) -> list[TaxRate]:
    return applied_rates(fee.applied_taxes)


def invoice_recompute_totals(invoice: Invoice) -> Invoice:
    """Recompute an invoice's totals and per-rate tax summary from its fees. Call under the invoice's lock."""
    fees = list(invoice.fees.all())
    totals = invoice_totals([(fee.amount_cents, _rates_of(fee)) for fee in fees])
    InvoiceAppliedTax.objects.filter(invoice=invoice).delete()
    InvoiceAppliedTax.objects.bulk_create(
        InvoiceAppliedTax(
            invoice=invoice,
            tax_code=line.code,
            tax_name=line.name,
            tax_rate=line.rate,
            base_amount_cents=line.base_amount_cents,
            amount_cents=line.tax_amount_cents,
        )
        for line in totals.tax_lines
    )
    invoice.fees_amount_cents = totals.untaxed_amount_cents
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = totals.total_amount_cents
    invoice.total_amount_cents = totals.total_amount_cents - invoice.credit_notes_amount_cents
    invoice.save(
        update_fields=[
            "fees_amount_cents", "sub_total_excluding_taxes_amount_cents", "taxes_amount_cents",
            "sub_total_including_taxes_amount_cents", "total_amount_cents", "updated_at",
        ]
    )
    return invoice


def fee_values(line: Line, *, rates: list[TaxRate], taxed: dict | None = None) -> dict[str, Any]:
    """Return the fee row a line becomes (Fee attribute names; no invoice): taxes per line, rounded once.

    `taxed` memoizes `fee_taxes` across a batch's fees (a close bills the same few amounts and provinces
    many times); its `applied_taxes` lists are then shared between rows, which are written, never mutated.
    """
    if taxed is None:
        taxes_cents, taxes_rate, applied = fee_taxes(line.amount_cents, rates)
    else:
        key = (line.amount_cents, *map(id, rates))  # one TaxRate object per tax row in a batch: identity names it
        found = taxed.get(key)
        if found is None:
            found = taxed[key] = fee_taxes(line.amount_cents, rates)
        taxes_cents, taxes_rate, applied = found
    subscription = line.subscription
    return {
        "fee_key": line.fee_key,
        "fee_type": line.fee_type,
        "service_id": subscription.service_id if subscription is not None else None,
        "subscription_id": subscription.pk if subscription is not None else None,
        "charge_id": line.charge.pk if line.charge is not None else None,
        "charge_filter_id": line.charge_filter.pk if line.charge_filter is not None else None,
        "grouped_by": line.grouped_by or {},
        "name": line.name,
        "description": line.description,
        "currency": line.currency,
        "units": line.units,
        "total_aggregated_units": line.total_aggregated_units,
        "events_count": line.events_count,
        "precise_unit_amount": line.precise_unit_amount,
        "precise_amount": line.precise_amount,
        "amount_cents": line.amount_cents,
        "taxes_amount_cents": taxes_cents,
        "taxes_rate": taxes_rate,
        "applied_taxes": applied,
        "amount_details": line.amount_details,
        "from_datetime": line.from_datetime,
        "to_datetime": line.to_datetime,
        "is_adjustment": line.is_adjustment,
    }


def fee_from_line(line: Line, *, invoice: Invoice, rates: list[TaxRate]) -> Fee:
    return Fee(invoice=invoice, **fee_values(line, rates=rates))


def _set_totals(invoice: Invoice, fees: list[tuple[int, list[TaxRate]]]) -> list[dict[str, Any]]:
    """Set an invoice's totals from (amount cents, rates) per fee; return its per-rate tax rows (`_copy_insert` dicts)."""
    totals = invoice_totals(fees)
    invoice.fees_amount_cents = totals.untaxed_amount_cents
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = totals.total_amount_cents
    invoice.total_amount_cents = totals.total_amount_cents - invoice.credit_notes_amount_cents
    return [
        {
            "invoice_id": invoice, "tax_code": line.code, "tax_name": line.name, "tax_rate": line.rate,
            "base_amount_cents": line.base_amount_cents, "amount_cents": line.tax_amount_cents,
        }
        for line in totals.tax_lines
    ]


TOTAL_FIELDS = [
    "fees_amount_cents", "sub_total_excluding_taxes_amount_cents", "taxes_amount_cents",
    "sub_total_including_taxes_amount_cents", "total_amount_cents", "updated_at",
]

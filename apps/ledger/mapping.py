"""Turn a hub document into an Odoo move draft (pure: no ORM, no I/O).

services.py loads documents and the admin mapping into the dataclasses below, resolves the Odoo
references this module asks for (`refs_needed`) and calls `move_draft`. Every line is sent with
quantity 1 and the fee's rounded amount as price, and explicit `tax_ids`, so Odoo's round_per_line
tax equals the hub's per-fee tax (research/odoo.md §5.3, §5.5).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from apps.core.money import from_minor_units
from apps.ledger.odoo_client import MoveDraft, MoveLineDraft

# Odoo model of each kind of mapped reference.
PRODUCT, ACCOUNT, TAX, JOURNAL, ANALYTIC = (
    "product.product", "account.account", "account.tax", "account.journal", "account.analytic.account")
HUNDRED = Decimal(100)


class MappingMissing(Exception):
    """A document cannot be mapped to Odoo; `problems` name each missing mapping or record."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LineIn:
    name: str
    amount_cents: int  # tax excluded, minor units of the document currency
    service_id: int | None
    service_code: str = ""
    metric_id: int | None = None  # usage fees
    plan_id: int | None = None  # plan (subscription) fees
    tax_codes: tuple[str, ...] = ()  # hub tax codes applied to this line
    # Hub tax code -> tax cents of every code of the line, set only when the hub's tax is not the rate rounded on
    # this line (a credit note item, rounded cumulatively over its fee's credits): Odoo is told the amounts.
    manual_tax_cents: tuple[tuple[str, int], ...] = ()
    # An account purpose (OdooAccountMapping.Purpose: "prepayment", "prepaid_discount") posted without a product
    # instead of the service's income account: wallet credit bought, consumed or given back.
    account_purpose: str = ""


@dataclass(frozen=True)
class DocumentIn:
    ref: str
    move_type: str  # out_invoice | out_refund
    number: str
    issuing_date: date
    currency: str
    lines: tuple[LineIn, ...]
    due_date: date | None = None
    reversed_entry_id: int | None = None


@dataclass(frozen=True)
class ProductRef:
    product: str  # Odoo ref string (xml id, code or numeric id)
    account: str = ""  # blank: the product's income account


@dataclass(frozen=True)
class MappingRefs:
    """The admin mapping, as Odoo ref strings."""

    products: Mapping[tuple[int, str, int | None], ProductRef] = field(default_factory=dict)
    # keys: (service_id, "metric", metric_id) | (service_id, "plan", plan_id) | (service_id, "default", None)
    taxes: Mapping[str, str] = field(default_factory=dict)  # hub tax code -> Odoo tax ref
    analytics: Mapping[int, str] = field(default_factory=dict)  # service id -> analytic account ref
    sales_journal: str = ""
    receipts_journal: str = ""
    accounts: Mapping[str, str] = field(default_factory=dict)  # account purpose -> Odoo account ref ("": unmapped)


def odoo_ref(value: str) -> int | str:
    """Return a mapping string as refs_resolve expects it: "#42" is a database id, anything else an
    xml id or code (account codes are digits, so bare digits stay codes)."""
    value = value.strip()
    return int(value[1:]) if value.startswith("#") and value[1:].isdigit() else value


def line_product(refs: MappingRefs, line: LineIn) -> ProductRef | None:
    """Return the product mapping for a line: per metric, else per plan, else the service default."""
    if line.service_id is None:
        return None
    for key in ((line.service_id, "metric", line.metric_id), (line.service_id, "plan", line.plan_id)):
        if key[2] is not None and key in refs.products:
            return refs.products[key]
    return refs.products.get((line.service_id, "default", None))


def refs_needed(refs: MappingRefs, documents: Iterable[DocumentIn]) -> dict[str, set[str]]:
    """Return, per Odoo model, the ref strings these documents need resolved (sales journal included)."""
    needed: dict[str, set[str]] = {PRODUCT: set(), ACCOUNT: set(), TAX: set(), JOURNAL: set(), ANALYTIC: set()}
    if refs.sales_journal:
        needed[JOURNAL].add(refs.sales_journal)
    for document in documents:
        for line in document.lines:
            if line.account_purpose:
                if refs.accounts.get(line.account_purpose):
                    needed[ACCOUNT].add(refs.accounts[line.account_purpose])
                needed[TAX].update(refs.taxes[code] for code in line.tax_codes if code in refs.taxes)
                continue
            product = line_product(refs, line)
            if product:
                needed[PRODUCT].add(product.product)
                if product.account:
                    needed[ACCOUNT].add(product.account)
            needed[TAX].update(refs.taxes[code] for code in line.tax_codes if code in refs.taxes)
            if line.service_id in refs.analytics:
                needed[ANALYTIC].add(refs.analytics[line.service_id])
    return needed


def _resolve(resolved: Mapping[str, Mapping[str, int]], model: str, ref: str, what: str,
             problems: list[str]) -> int | None:
    rid = resolved.get(model, {}).get(ref)
    if rid is None:
        problems.append(f"{what} -> {ref}: not found in Odoo ({model})")
    return rid


def move_draft(document: DocumentIn, *, partner_id: int, refs: MappingRefs,
               resolved: Mapping[str, Mapping[str, int]]) -> MoveDraft:
    """Return the Odoo move for `document`; raise MappingMissing naming every unmapped or unknown ref.

    `resolved` maps model -> ref string -> Odoo id for the refs found in Odoo. Zero-amount lines
    are left out (they change no total).
    """
    problems: list[str] = []
    journal_id = None
    if not refs.sales_journal:
        problems.append("journal sales: no Odoo journal mapped")
    else:
        journal_id = _resolve(resolved, JOURNAL, refs.sales_journal, "journal sales", problems)
    lines: list[MoveLineDraft] = []
    for line in document.lines:
        if line.amount_cents == 0:
            continue
        service = line.service_code or str(line.service_id)
        product = line_product(refs, line)
        product_id = account_id = None
        if line.account_purpose:
            product = None  # no product: the line is the mapped account's, not a sale of the service
            account_ref = refs.accounts.get(line.account_purpose, "")
            if not account_ref:
                problems.append(f"account {line.account_purpose}: no Odoo account mapped")
            else:
                account_id = _resolve(resolved, ACCOUNT, account_ref, f"account {line.account_purpose}", problems)
        elif product is None:
            problems.append(f"product for service {service} (line {line.name!r}): no Odoo product mapped")
        else:
            product_id = _resolve(resolved, PRODUCT, product.product, f"product for service {service}", problems)
            if product.account:
                account_id = _resolve(resolved, ACCOUNT, product.account, f"income account for service {service}",
                                      problems)
        tax_ids: list[int] = []
        tax_id_of: dict[str, int] = {}
        for code in line.tax_codes:
            if code not in refs.taxes:
                problems.append(f"tax {code}: no Odoo tax mapped")
                continue
            tax_id = _resolve(resolved, TAX, refs.taxes[code], f"tax {code}", problems)
            if tax_id is not None:
                tax_ids.append(tax_id)
                tax_id_of[code] = tax_id
        manual: dict[int, Decimal] = {}
        for code, cents in line.manual_tax_cents:
            if code in tax_id_of:
                tax_id = tax_id_of[code]
                manual[tax_id] = manual.get(tax_id, Decimal(0)) + from_minor_units(cents, document.currency)
        analytic = None
        if line.service_id in refs.analytics and not line.account_purpose:
            analytic_id = _resolve(resolved, ANALYTIC, refs.analytics[line.service_id],
                                   f"analytic account for service {service}", problems)
            analytic = {analytic_id: HUNDRED} if analytic_id is not None else None
        lines.append(MoveLineDraft(name=line.name, price_unit=from_minor_units(line.amount_cents, document.currency),
                                   product_id=product_id, account_id=account_id, tax_ids=tuple(dict.fromkeys(tax_ids)),
                                   analytic_distribution=analytic, manual_tax_amounts=tuple(manual.items())))
    if problems:
        raise MappingMissing(list(dict.fromkeys(problems)))
    if not lines:
        raise ValueError(f"{document.ref} has no non-zero line")
    assert journal_id is not None
    return MoveDraft(ref=document.ref, move_type=document.move_type, partner_id=partner_id,
                     invoice_date=document.issuing_date, currency=document.currency, journal_id=journal_id,
                     lines=tuple(lines), reversed_entry_id=document.reversed_entry_id,
                     invoice_origin=document.number, invoice_date_due=document.due_date)

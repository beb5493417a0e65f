"""The close's writing stage: lock customers, plan them under the lock, write invoices, fees, billing periods and
taxes set-based, issue in-advance credits, finalize. One writer for a batch of customers and for one customer.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.taxes import TaxRate
from apps.core.models import uuid4_many
from apps.customers.models import Customer
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_transitions_apply

from ..fees import TOTAL_FIELDS, Line, _rates_of, _set_totals, fee_values
from ..models import CreditNote, Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription
from ..services import (
    CreditNoteItemIn,
    credit_note_create,
    credit_note_estimate,
    invoices_drafted_record,
    invoices_finalize,
)
from .planning import Loaded, _is_upgrade, plan_locked, split_credits
from .usage import UsageFetcher, WindowsNotFenced, _late_usage_mark_billed, _usage_totals, usage_cutoffs_advance


def _grace_days(customer: Customer) -> int:
    if customer.invoice_grace_period is not None:
        return customer.invoice_grace_period
    return settings.INVOICE_GRACE_PERIOD_DAYS


def _charges_bounds(lines: list[Line]) -> tuple[datetime, datetime]:
    """The usage window a billing period row records: what its charge lines billed. With none (an in-advance base
    fee alone), an empty window at the period start: finalization moves the usage cut-off to the end of this
    window, so it must only ever cover usage the invoice actually billed (else that period's usage is all late)."""
    usage = [line for line in lines if line.window is not None]
    if usage:
        return min(line.from_datetime for line in usage), max(line.to_datetime for line in usage)
    start = min(line.period_from for line in lines)
    return start, start


def _charges_union(kept: tuple[datetime, datetime], added: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """Merge two usage windows of one billing period row; an empty one (no usage billed) adds nothing."""
    if added[0] >= added[1]:
        return kept
    if kept[0] >= kept[1]:
        return added
    return min(kept[0], added[0]), max(kept[1], added[1])


def termination_credits_issue(credits: list[Line], *, as_of: datetime) -> int:
    """Issue a credit note per in-advance credit line, exactly once (`CreditNote.close_key` is the line's key);
    return how many. Call under the customers' locks, in the close's transaction.

    Credited on the base fee it returns, never beyond what is left to credit on it (staff may have credited
    part already). A base fee still on a draft waits for its finalization (the next close plans the line again);
    one on a voided invoice was never owed, so nothing is credited. Every note first offsets what its invoice still
    owes (`credit_note_create`); of the rest, an upgrade's is kept as credit (Lago), a termination's follows the
    subscription's `on_termination_credit_note`: refund and offset (Lago: refund the paid part, offset the unpaid
    part) pay back up to what was paid and keep the rest as credit, credit keeps it all.
    """
    if not credits:
        return 0
    bases = {
        fee.fee_key: fee
        for fee in Fee.objects.select_related("invoice").filter(
            fee_key__in=[line.fee_key.replace(":credit:", ":base:", 1) for line in credits]
        )
    }
    issued = 0
    for line in credits:
        base = bases.get(line.fee_key.replace(":credit:", ":base:", 1))
        if base is None or base.invoice.status != Invoice.Status.FINALIZED:
            continue
        billed = base.amount_cents - base.coupons_amount_cents  # coupons came off before tax
        left = billed - sum(
            item.amount_cents
            for item in base.credit_note_items.all()  # voided notes too (Lago): a fee is credited once
        )
        unused = -line.amount_cents
        if base.coupons_amount_cents and base.amount_cents > 0:
            # The unused part of what was charged: the coupon's share is prorated with it (Lago), half-up.
            unused = (2 * unused * billed + base.amount_cents) // (2 * base.amount_cents)
        amount = min(unused, left)
        if amount <= 0:
            continue
        subscription = line.subscription
        items = [CreditNoteItemIn(fee_id=base.pk, amount_cents=amount)]
        upgrade = _is_upgrade(subscription)
        refund = 0
        if not upgrade and subscription.on_termination_credit_note in (Subscription.TerminationCredit.REFUND,
                                                                       Subscription.TerminationCredit.OFFSET):
            estimate = credit_note_estimate(invoice=base.invoice, items=items)
            refund = min(estimate.total_amount_cents, estimate.max_refundable_amount_cents)
        credit_note_create(
            invoice_id=base.invoice_id,
            items=items,
            reason=CreditNote.Reason.ORDER_CHANGE if upgrade else CreditNote.Reason.ORDER_CANCELLATION,
            description=line.name,
            refund_amount_cents=refund,
            issuing_date=line.billing_on,
            close_key=line.fee_key,
            subscription_id=subscription.pk,
        )
        issued += 1
    return issued


# Tries of `close_customer` to find its usage windows cut off: each further try follows a change of the customer's
# subscriptions between its cut-off and its lock, which a plan change racing the close can cause once, not thrice.
CLOSE_FENCE_TRIES = 3


def close_customer(
    *, customer_id: int, as_of: datetime, fetch: UsageFetcher = _usage_totals,
    fenced: dict[int, datetime] | None = None,
) -> tuple[int, int]:
    """Bill everything due for one customer at `as_of`; return (invoices touched, fees written).

    A batch of one through the same writer (`_bill`), waiting for the customer's lock instead of skipping it,
    and raising what fails instead of leaving it; running it twice bills nothing more.
    Every usage window it bills is cut off and fenced first, whatever planned it: `fenced` holds the cut-offs the
    run already committed and fenced; a window beyond them (a subscription changed since the run planned it, or
    a customer the run could not plan) rolls the try back, its cut-off is committed and fenced
    (`usage_cutoffs_advance`, `usage_ingest_fence`), and the customer is planned again. So an event committing
    while the close reads is on the invoice or flagged late (billed later), never neither.
    Inside a caller's transaction nothing can be committed first: the caller vouches for the windows.
    """
    if connection.in_atomic_block:
        return _bill_one(customer_id, as_of=as_of, fetch=fetch, fenced=None)
    from apps.usage.services import usage_ingest_fence

    fenced = dict(fenced or {})
    for _ in range(CLOSE_FENCE_TRIES):
        try:
            return _bill_one(customer_id, as_of=as_of, fetch=fetch, fenced=fenced)
        except WindowsNotFenced as missing:
            usage_cutoffs_advance(missing.cutoffs)  # committed (autocommit) before the fence
            usage_ingest_fence()
            fenced.update(missing.cutoffs)
    raise RuntimeError(f"customer {customer_id}: its subscriptions kept changing during the close; next run bills it")


def _bill_one(customer_id: int, *, as_of: datetime, fetch: UsageFetcher, fenced: dict[int, datetime] | None):
    result = _bill([customer_id], as_of=as_of, fetch=fetch, loaded=None, before_numbering=None, fenced=fenced, alone=True)
    return result.billed.get(customer_id, (0, 0))


@dataclass
class BatchResult:
    billed: dict[int, tuple[int, int]] = field(default_factory=dict)  # customer id -> (invoices, fees)
    left: list[int] = field(default_factory=list)  # locked elsewhere or failed to plan: close one by one


def _period_row(invoice: Invoice, subscription_id: int, lines: list[Line]) -> dict[str, Any]:
    """The billing period row (`InvoiceSubscription` attribute names) `_billing_period_merge` would create."""
    base = [line for line in lines if line.fee_type in (Fee.FeeType.SUBSCRIPTION, Fee.FeeType.CREDIT)]
    charges_from, charges_to = _charges_bounds(lines)
    return {
        "invoice_id": invoice,  # _copy_insert takes its pk
        "subscription_id": subscription_id,
        "from_datetime": min(line.period_from for line in (base or lines)),
        "to_datetime": max(line.period_to for line in (base or lines)),
        "charges_from_datetime": charges_from,
        "charges_to_datetime": charges_to,
        "invoicing_reason": "subscription_periodic",
    }


# msgspec encodes the close's JSON columns (fee details, applied taxes: str, int, list, dict) about 4x
# faster than the json module psycopg uses by default; the values are the same JSON.
_json_dumps = msgspec.json.Encoder().encode


def _ids_draw(model: type, rows: list) -> None:
    """Set primary keys on unsaved instances from the table's identity sequence (one read), as `bulk_create`
    would, so other rows can point at them before they are written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, len(rows)],
        )
        for row, (pk,) in zip(rows, cursor.fetchall()):
            row.pk = pk


def _copy_insert(model: type, rows: list, *, with_ids: bool = False) -> None:
    """Insert rows of `model` with one COPY: the rows `bulk_create` writes, without building SQL per value.

    Rows are unsaved instances or dicts keyed by attribute name (`invoice_id`; a model instance there
    stands for its pk, read at write time). Fees are most of the close's writes (bench/close.py).
    Primary keys are not read back; with `with_ids` (instances only) the rows' own keys, drawn by `_ids_draw`,
    are written and the instances marked saved, as `bulk_create` would.
    `auto_now`/`auto_now_add` fields get one timestamp for all rows; missing dict keys take the field default.
    Unique constraints hold as with INSERT.
    """
    if not rows:
        return
    if with_ids:
        if any(row.pk is None for row in rows):
            raise ValueError(f"{model.__name__}: draw the ids first (_ids_draw)")
        for row in rows:
            row._state.adding, row._state.db = False, connection.alias
    from django.db.models import JSONField, Model

    fields = [field for field in model._meta.concrete_fields if with_ids or not field.primary_key]
    now = timezone.now()
    stamped = {field.attname for field in fields if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)}
    jsons = {field.attname for field in fields if isinstance(field, JSONField)}
    relations = [field for field in fields if field.is_relation]
    attnames = [field.attname for field in fields]
    # Field defaults as Django applies them ("" for a blank CharField); callables (uuid4, list) per row.
    defaults = {
        field.attname: field.default if field.has_default() and callable(field.default) else field.get_default()
        for field in fields
    }
    relation_names = {field.attname for field in relations}
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    # Per column, decided once: most values go to COPY as they are, and only the columns that need it
    # (timestamps, callable defaults, relations given as instances, JSON) are converted per row.
    stamped_at = [index for index, name in enumerate(attnames) if name in stamped]
    # Random ids drawn in one read for the rows that need them (`uuid4_many`: one system call, not one per row).
    drawn = {
        name: iter(uuid4_many(sum(1 for row in rows if isinstance(row, dict) and name not in row)))
        for name, default in defaults.items() if default is uuid.uuid4
    }
    supplied_at = [
        (index, name, drawn[name].__next__ if name in drawn else defaults[name])
        for index, name in enumerate(attnames)
        if name not in stamped and callable(defaults[name])
    ]
    related_at = [index for index, name in enumerate(attnames) if name in relation_names]
    json_at = [index for index, name in enumerate(attnames) if name in jsons]
    absent = [(name, defaults[name]) for name in attnames]

    def fix(values: list, row: dict) -> list:
        for index in stamped_at:
            values[index] = now
        for index, name, supply in supplied_at:
            if name not in row:
                values[index] = supply()
        for index in related_at:
            value = values[index]
            if isinstance(value, Model):
                if value.pk is None:
                    raise ValueError(f"{model.__name__}.{attnames[index]}: related object not saved")
                values[index] = value.pk
        for index in json_at:
            if values[index] is not None:
                values[index] = _json_dumps(values[index]).decode()  # COPY's text format: jsonb parses it as written
        return values

    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                if isinstance(row, Model):
                    for name in stamped:
                        setattr(row, name, now)
                    values = {name: getattr(row, name) for name in attnames}
                    for relation in relations:  # assigned before the related row was saved, as bulk_create allows
                        if values[relation.attname] is None and relation.is_cached(row):
                            values[relation.attname] = relation.get_cached_value(row)
                    row = values
                get = row.get
                copy.write_row(fix([get(name, default) for name, default in absent], row))


def _due(invoice: Invoice, as_of: datetime) -> bool:
    """Whether the close finalizes `invoice` now (its grace period is over, or there is none)."""
    return invoice.grace_until is not None and invoice.grace_until <= as_of


def _write_batch(customers: dict[int, Customer], plans: dict[int, tuple[list[Line], dict]], *, as_of: datetime):
    """Write every planned line of a batch set-based; return (invoices per customer in write order, fees per customer).

    New invoices due at once are returned unwritten, ids drawn: `close_batch` numbers them, then inserts them.

    Same rows as `write_lines` per customer: one invoice per (customer, billing day, currency), appended to
    that day's oldest draft or opened with the next `close_key`; fees, billing periods, tax summary, totals.
    Unique fee_key / close_key make any double write fail the whole batch (rolled back, then one by one).
    """
    ids = list(plans)
    drafts: dict[tuple[int, date, str], Invoice] = {}
    for invoice in (
        Invoice.objects.select_for_update()
        .filter(customer_id__any=ids, invoice_type=Invoice.InvoiceType.SUBSCRIPTION, status=Invoice.Status.DRAFT)
        .order_by("pk")
    ):
        drafts.setdefault((invoice.customer_id, invoice.issuing_date, invoice.currency), invoice)
    days = {line.billing_on for lines, _ in plans.values() for line in lines}
    taken: dict[str, int] = defaultdict(int)
    for key in Invoice.objects.filter(customer_id__any=ids, issuing_date__in=days, close_key__startswith="close:").values_list(
        "close_key", flat=True
    ):
        taken[key.rsplit(":", 1)[0]] += 1

    new_invoices: list[Invoice] = []
    lago_ids = iter(uuid4_many(sum(len({(line.billing_on, line.currency) for line in lines}) for lines, _ in plans.values())))
    touched: dict[int, list[Invoice]] = {}
    fees: list[dict[str, Any]] = []  # Fee rows (`fee_values`), written with COPY
    fees_of: dict[int, list[tuple[int, list[TaxRate]]]] = defaultdict(list)  # id(invoice) -> (cents, rates)
    periods: dict[tuple[int, int], list[Line]] = defaultdict(list)  # (id(invoice), subscription) -> lines
    invoice_of: dict[int, Invoice] = {}
    fee_counts: dict[int, int] = {}
    taxed: dict[tuple, tuple] = {}  # fee_values' memo for this batch
    for customer_id, (lines, rates) in plans.items():
        customer = customers[customer_id]
        groups: dict[tuple[date, str], list[Line]] = defaultdict(list)
        for line in lines:
            groups[(line.billing_on, line.currency)].append(line)
        mine: list[Invoice] = []
        for (billing_on, currency), group in sorted(groups.items(), key=lambda item: item[0]):
            invoice = drafts.get((customer_id, billing_on, currency))
            if invoice is not None:
                invoice.customer = customer  # the locked row (timezone at finalization)
            else:
                prefix = f"close:{customer_id}:{billing_on}:{currency}"
                invoice = Invoice(
                    lago_id=next(lago_ids),
                    customer=customer,
                    invoice_type=Invoice.InvoiceType.SUBSCRIPTION,
                    currency=currency,
                    close_key=f"{prefix}:{taken[prefix] + 1}",
                    issuing_date=billing_on,
                    net_payment_term=customer.net_payment_term,
                    payment_due_date=billing_on + timedelta(days=customer.net_payment_term),
                    grace_until=as_of + timedelta(days=_grace_days(customer)),
                )
                new_invoices.append(invoice)
            invoice_of[id(invoice)] = invoice
            for line in group:
                fee = fee_values(line, rates=rates[billing_on], taxed=taxed)
                fee["invoice_id"] = invoice  # saved below; _copy_insert takes its pk
                fees.append(fee)
                fees_of[id(invoice)].append((fee["amount_cents"], rates[billing_on]))
                if line.subscription is not None and line.period_from is not None:
                    periods[(id(invoice), line.subscription.pk)].append(line)
            mine.append(invoice)
        touched[customer_id] = mine
        fee_counts[customer_id] = len(lines)

    # Totals: a new invoice holds only its new fees; a draft also its earlier ones (one read for all drafts).
    old_drafts = [invoice for invoice in invoice_of.values() if invoice.pk is not None]
    earlier: dict[int, list[tuple[int, list[TaxRate]]]] = defaultdict(list)
    if old_drafts:
        for fee in Fee.objects.filter(invoice__in=old_drafts).only("invoice_id", "amount_cents", "applied_taxes"):
            earlier[fee.invoice_id].append((fee.amount_cents, _rates_of(fee)))
    applied: list[dict[str, Any]] = []
    now = timezone.now()
    for key, invoice in invoice_of.items():
        applied.extend(_set_totals(invoice, earlier.get(invoice.pk, []) + fees_of[key]))
        invoice.updated_at = now

    # Invoices due at once are written by their finalization, numbered (`close_batch`): one insert per row,
    # not an insert of a draft and an update. Every new invoice has its id now, for the rows pointing at it
    # (foreign keys are checked at commit).
    if new_invoices:
        _ids_draw(Invoice, new_invoices)
    _copy_insert(Invoice, [invoice for invoice in new_invoices if not _due(invoice, as_of)], with_ids=True)
    if old_drafts:
        Invoice.objects.bulk_update(old_drafts, TOTAL_FIELDS)
        InvoiceAppliedTax.objects.filter(invoice__in=old_drafts).delete()
    _copy_insert(Fee, fees)  # dicts: no Fee instances for the batch's largest table
    _copy_insert(InvoiceAppliedTax, applied)

    existing: dict[tuple[int, int], InvoiceSubscription] = {}
    if old_drafts:
        existing = {
            (row.invoice_id, row.subscription_id): row
            for row in InvoiceSubscription.objects.filter(invoice__in=old_drafts)
        }
    create, update = [], []
    for (key, subscription_id), lines in periods.items():
        row = _period_row(invoice_of[key], subscription_id, lines)
        found = existing.get((invoice_of[key].pk, subscription_id))
        if found is None:
            create.append(row)
            continue
        found.from_datetime = min(found.from_datetime, row["from_datetime"])
        found.to_datetime = max(found.to_datetime, row["to_datetime"])
        found.charges_from_datetime, found.charges_to_datetime = _charges_union(
            (found.charges_from_datetime, found.charges_to_datetime),
            (row["charges_from_datetime"], row["charges_to_datetime"]),
        )
        update.append(found)
    _copy_insert(InvoiceSubscription, create)
    if update:
        InvoiceSubscription.objects.bulk_update(
            update, ["from_datetime", "to_datetime", "charges_from_datetime", "charges_to_datetime"]
        )
    return touched, fee_counts


def close_batch(
    *,
    customer_ids: list[int],
    as_of: datetime,
    fetch: UsageFetcher = _usage_totals,
    loaded: Loaded | None = None,
    before_numbering: Callable[[], None] | None = None,
    fenced: dict[int, datetime] | None = None,
) -> BatchResult:
    """Bill many customers in one transaction; return who was billed and who is left for one-by-one.

    Locks the customers with `FOR UPDATE SKIP LOCKED` in id order (a customer another worker holds is
    left, not waited for), re-plans under the locks from set-based reads, writes set-based, finalizes
    due drafts with one `services.invoices_finalize` call (one numbering lock per series). Any write error rolls
    the whole batch back (raised).
    """
    return _bill(
        customer_ids, as_of=as_of, fetch=fetch, loaded=loaded, before_numbering=before_numbering, fenced=fenced,
        alone=False,
    )


def _bill(
    customer_ids: list[int], *, as_of: datetime, fetch: UsageFetcher, loaded: Loaded | None,
    before_numbering: Callable[[], None] | None, fenced: dict[int, datetime] | None, alone: bool,
) -> BatchResult:
    """The close's one writer: lock, apply due transitions, plan (`plan_locked`), issue in-advance credits, write
    (`_write_batch`), mark late usage billed, finalize what is due, record drafts. `alone`: one customer, whose
    lock is waited for and whose failures are raised (`close_customer`); else a batch (`close_batch`)."""
    result = BatchResult()
    with transaction.atomic():
        if alone:
            customers = [Customer.objects.select_for_update().get(pk=customer_ids[0])]
        else:
            customers = list(
                Customer.objects.select_for_update(skip_locked=True).filter(pk__any=customer_ids).order_by("pk")
            )
        locked = {customer.pk: customer for customer in customers}
        result.left = [customer_id for customer_id in customer_ids if customer_id not in locked]
        if locked:
            # Plan changes and ending dates due by `as_of` take effect before planning, under the customers'
            # locks: a period is always planned from the subscription in force at its start.
            subscription_transitions_apply(now=as_of, customer_ids=list(locked), announce=False)
        plans, failed = plan_locked(customers, as_of=as_of, fetch=fetch, loaded=loaded, fenced=fenced, strict=alone)
        result.left.extend(failed)
        credits: list[Line] = []
        for customer_id in list(plans):
            lines, rates = plans[customer_id]
            lines, mine = split_credits(lines)
            credits.extend(mine)
            if lines:
                plans[customer_id] = (lines, rates)
            else:
                del plans[customer_id]
        termination_credits_issue(credits, as_of=as_of)  # before finalizing: the invoices below may consume them
        if not plans:
            return result
        touched, fee_counts = _write_batch(locked, plans, as_of=as_of)
        _late_usage_mark_billed([line for lines, _ in plans.values() for line in lines], as_of=as_of)
        due = [invoice for customer_id in sorted(touched) for invoice in touched[customer_id] if _due(invoice, as_of)]
        # Numbers follow the customers' order: customers by id, each customer's invoices in write order.
        if before_numbering is not None:
            _check_written_references()  # while earlier chunks commit, not after: see its docstring
            before_numbering()  # parallel close: wait for the earlier chunks to commit (_Turns)
        invoices_finalize(held=due, now=as_of, write_unsaved=_invoices_insert)
        finalized = {invoice.pk for invoice in due}
        invoices_drafted_record([invoice for mine in touched.values() for invoice in mine if invoice.pk not in finalized])
        result.billed = {customer_id: (len(touched[customer_id]), fee_counts[customer_id]) for customer_id in touched}
    return result


def _invoices_insert(invoices: list[Invoice]) -> None:
    """Write numbered new invoices (`invoices_finalize`'s `write_unsaved`): one COPY, ids drawn beforehand."""
    _copy_insert(Invoice, invoices, with_ids=True)


_EARLY_CHECKED_SQL = """
SELECT string_agg(quote_ident(conname), ', ' ORDER BY conname) FROM pg_constraint
 WHERE contype = 'f' AND condeferrable AND confrelid <> %s::regclass AND conrelid = ANY(%s::regclass[])
"""


_early_checked: dict[str, str] = {}  # database alias -> constraint names (the schema's, fixed per process)


def _check_written_references() -> None:
    """Run now the deferred foreign-key checks of the batch's fees and billing periods that do not point at
    invoices (service, subscription, charge): ~4,500 row checks per batch. A threaded close commits its
    batches one at a time in numbering order (`_Turns`); checked at commit, they ran while the next batch
    waited for its turn. The checks on invoice references stay deferred: due invoices are written later,
    once numbered."""
    names = _early_checked.get(connection.alias)
    if names is None:
        with connection.cursor() as cursor:
            cursor.execute(
                _EARLY_CHECKED_SQL,
                [Invoice._meta.db_table, [Fee._meta.db_table, InvoiceSubscription._meta.db_table]],
            )
            names = _early_checked[connection.alias] = cursor.fetchone()[0] or ""
    if names:
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {names} IMMEDIATE")

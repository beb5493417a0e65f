"""Writes for invoices: finalize, void, refresh, one-off invoices and credit notes.

The period close itself lives in the close package (apps/invoicing/close/: `periods_close`, `close_customer`).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from apps.catalog.taxes import credit_applied_taxes, credited_item_taxes
from apps.core.exceptions import Forbidden, NotAllowed, NotFound, ValidationFailed
from apps.core.money import SUPPORTED_CURRENCIES, from_minor_units, to_minor_units
from apps.core.representations import ts
from apps.customers.models import AccountLink, Customer, Service
from apps.ledger.services import (
    ledger_credit_applications_create,
    ledger_credit_note_void_create,
    ledger_posting_create,
    ledger_postings_create,
    ledger_wallet_transactions_create,
)
from apps.subscriptions.periods import local_date

from .coupons import coupons_apply
from .credits import credits_apply, credits_return
from .fees import Line, customer_tax_rates, fee_values, invoice_recompute_totals
from .lifecycle import credit_note_created_announce, invoice_finalized_announce, invoice_voided_announce
from .models import (
    CouponCredit,
    CreditApplication,
    CreditNote,
    CreditNoteItem,
    Fee,
    Invoice,
    InvoiceAppliedTax,
    WalletTransaction,
)
from .numbering import invoice_numbers_take, invoice_series_for
from .selectors import invoice_service_ids
from .prepaid import wallet_consumptions_save, wallet_top_up_fail, wallets_apply, wallets_return
from .recurring import wallets_balance_check_on_commit
from .representations import credit_note_out, invoice_out, invoices_for_rendering

__all__ = [
    "invoice_finalize",
    "invoices_finalize",
    "invoice_void",
    "invoice_create_one_off",
    "invoice_create_one_off_for_add_ons",
    "credit_note_create",
    "credit_note_estimate",
    "credit_note_void",
    "invoice_webhook_record",
    "invoices_webhook_record",
    "invoices_drafted_record",
    "credit_note_webhook_record",
]


# --------------------------------------------------------------------------- outbound webhooks


def _listening_service_ids(service_ids: list[int] | None, event_type: str) -> list[int]:
    """Return the services among `service_ids` (None: all) with an active endpoint that wants `event_type`.

    An event row without a delivery reaches nobody (endpoints added later never receive past events), so
    rendering the invoice is skipped for services that do not listen: the close writes thousands of invoices.
    """
    from apps.webhooks.models import WebhookEndpoint  # no selector for this there; read-only

    if service_ids is not None and not service_ids:
        return []
    wanted = Q(event_types__isnull=True) | Q(event_types__contains=[event_type])
    endpoints = WebhookEndpoint.objects.all() if service_ids is None else WebhookEndpoint.objects.filter(service_id__in=service_ids)
    return sorted(
        set(
            endpoints.filter(active=True, deleted_at__isnull=True)
            .filter(wanted)
            .values_list("service_id", flat=True)
        )
    )


def invoice_webhook_record(*, invoice: Invoice, event_type: str) -> None:
    """Record an invoice event for each listening service the invoice bills, each rendered with that service's
    customer view (`invoices_webhook_record` for one invoice).

    Call inside the transaction that changed the invoice (rows commit with it; sending starts after commit).
    """
    invoices_webhook_record(invoices=[invoice], event_type=event_type)


def invoices_drafted_record(invoices: list[Invoice]) -> None:
    """Record `invoice.drafted` once per invoice left in draft by the close (a grace period is running).

    The close appends to the day's open draft, so an invoice already announced is not announced again;
    an invoice finalized at once (no grace period) gets only `invoice.created`, as in Lago.
    Call inside the close's transaction.
    """
    from apps.webhooks.models import WebhookEvent

    drafts = list(Invoice.objects.filter(pk__any=[invoice.pk for invoice in invoices], status=Invoice.Status.DRAFT)
                  .order_by("pk"))
    if not drafts:
        return
    announced = set(WebhookEvent.objects.filter(
        event_type="invoice.drafted", object_id__in=[str(invoice.lago_id) for invoice in drafts],
    ).values_list("object_id", flat=True))
    invoices_webhook_record(invoices=[invoice for invoice in drafts if str(invoice.lago_id) not in announced],
                            event_type="invoice.drafted")


def credit_note_webhook_record(*, credit_note: CreditNote) -> None:
    """Record `credit_note.created` for each service whose lines the credited invoice bills. Call inside the
    credit note's transaction."""
    from apps.webhooks.services import webhook_event_record

    service_ids = _listening_service_ids(invoice_service_ids(credit_note.invoice), "credit_note.created")
    for service in Service.objects.filter(pk__in=service_ids):
        webhook_event_record(
            event_type="credit_note.created",
            object_type="credit_note",
            payload_object=credit_note_out(credit_note, service=service),
            service_ids=[service.pk],
        )


def invoices_webhook_record(*, invoices: list[Invoice], event_type: str) -> None:
    """Record an invoice event per listening service each invoice bills, in that service's view of the customer:
    listeners looked up once, the invoices read and rendered with a handful of queries whatever their number,
    and the events and deliveries written with one INSERT each.

    Call inside the transaction that changed the invoices.
    """
    from apps.webhooks.services import webhook_events_record

    if not invoices:
        return
    # Listeners first (a few endpoint rows): with none, the invoices' fees are not read at all.
    wanted = _listening_service_ids(None, event_type)
    if not wanted:
        return
    billed: dict[int, set[int]] = defaultdict(set)
    for invoice_id, service_id in (
        Fee.objects.filter(invoice_id__any=[invoice.pk for invoice in invoices], service_id__in=wanted)
        .values_list("invoice_id", "service_id").distinct()
    ):
        billed[invoice_id].add(service_id)
    if not billed:
        return
    rendered = invoices_for_rendering(list(billed))
    services = Service.objects.in_bulk({service_id for ids in billed.values() for service_id in ids})
    links: dict[tuple[int, int], AccountLink] = {}
    for link in AccountLink.objects.filter(
        customer_id__in={invoice.customer_id for invoice in rendered}, service_id__in=list(services),
        deleted_at__isnull=True,
    ).select_related("customer").order_by("id"):
        links.setdefault((link.customer_id, link.service_id), link)  # the oldest, as _link_for picks
    items = [
        (invoice_out(invoice, service=services[service_id], link=links.get((invoice.customer_id, service_id))),
         [service_id])
        for invoice in rendered
        for service_id in sorted(billed[invoice.pk])
    ]
    webhook_events_record(event_type=event_type, object_type="invoice", items=items)


def invoices_finalize(
    *,
    invoice_ids: list[int] | None = None,
    now: datetime | None = None,
    held: list[Invoice] | None = None,
    write_unsaved: Callable[[list[Invoice]], None] | None = None,
) -> list[Invoice]:
    """Number and freeze draft invoices; return them in the order of `invoice_ids`. Idempotent per invoice.

    Locks the invoices (and their customers) in id order; invoices already finalized are returned
    unchanged; any other status refuses the whole call. The drafts get consecutive numbers of the
    series of the finalization year (customer's timezone), in the order of `invoice_ids`, under one
    `NumberSequence` row lock per series held by this transaction: a rollback returns them, so numbers
    stay gapless. Sets `usage_billed_until` and writes the follow-up rows in this transaction:
    webhook `invoice.created`, ledger postings (apps.ledger), payment collection (apps.payments).
    The period close finalizes a whole batch of customers' invoices with one call, passing them as `held`:
    drafts its transaction created or locked, with their locked customer, so they are not read again.
    `held` may include invoices not written yet (ids drawn, `_state.adding`): once numbered they are handed
    to `write_unsaved`, which inserts them finalized (one write per row instead of an insert and an update).
    """
    if held is not None:
        if invoice_ids is not None:
            raise TypeError("pass invoice_ids or held, not both")
        drafts = list({invoice.pk: invoice for invoice in held}.values())
        if any(invoice.status != Invoice.Status.DRAFT for invoice in drafts):
            raise NotAllowed("held invoices must be drafts", code="invoice_not_draft")
        if drafts:
            with transaction.atomic():
                _drafts_finalize(drafts, now=now or timezone.now(), write_unsaved=write_unsaved)
        return drafts
    ids = list(dict.fromkeys(invoice_ids or []))
    if not ids:
        return []
    with transaction.atomic():
        locked = {
            invoice.pk: invoice
            for invoice in Invoice.objects.select_for_update().select_related("customer").filter(pk__any=ids).order_by("pk")
        }
        missing = [pk for pk in ids if pk not in locked]
        if missing:
            raise Invoice.DoesNotExist(f"invoices {missing} do not exist")
        refused = [locked[pk] for pk in ids if locked[pk].status not in (Invoice.Status.DRAFT, Invoice.Status.FINALIZED)]
        if refused:
            raise NotAllowed(f"invoice is {refused[0].status}", code="invoice_not_draft")
        drafts = [locked[pk] for pk in ids if locked[pk].status == Invoice.Status.DRAFT]
        if drafts:
            _drafts_finalize(drafts, now=now or timezone.now())
        return [locked[pk] for pk in ids]


def _invoices_number(invoices: list[Invoice], *, now: datetime) -> None:
    """Give drafts (saved or not yet written) their numbers and finalized fields, in memory, in list order.

    Takes one `NumberSequence` row lock per series (sorted: one lock order for every caller), held by the
    caller's transaction, which must then write exactly these invoices as finalized (`_drafts_finalize`, or
    the close's COPY of new invoices) and run `_invoices_finalized_follow_up`: a rollback returns the numbers.
    """
    by_series: dict[str, list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        year = local_date(now, invoice.customer.applicable_timezone).year
        by_series[invoice_series_for(year=year)].append(invoice)
    for series in sorted(by_series):
        batch = by_series[series]
        for invoice, (sequential_id, number) in zip(batch, invoice_numbers_take(series=series, count=len(batch))):
            invoice.series, invoice.sequential_id, invoice.number = series, sequential_id, number
            invoice.status, invoice.finalized_at = Invoice.Status.FINALIZED, now
            invoice.payment_due_date = invoice.issuing_date + timedelta(days=invoice.net_payment_term)


def _drafts_finalize(
    drafts: list[Invoice], *, now: datetime, write_unsaved: Callable[[list[Invoice]], None] | None = None
) -> None:
    """Number, freeze and follow up locked drafts, set-based (one UPDATE per table, one INSERT of postings);
    drafts not written yet are numbered in the same order and inserted finalized by `write_unsaved`.

    The customers' available credit is consumed first (`credits.credits_apply`), in memory, so the rows are
    written once with their final amounts, whichever of the two writes they take."""
    if write_unsaved is None and any(invoice._state.adding for invoice in drafts):
        raise ValueError("unsaved drafts need write_unsaved")
    from apps.migration.hooks import shadow_invoices_record

    # Marked before credit is applied: a shadow invoice (a service in a dual run) consumes no credit either.
    shadow = shadow_invoices_record(drafts)
    billed = [invoice for invoice in drafts if invoice.pk not in shadow] if shadow else drafts
    # Lago's order: coupons before tax, then credit notes and prepaid credit on the total including tax, then
    # wallets (prepaid credits) on what is still due.
    coupon_credits = coupons_apply(billed)
    applications = credits_apply(billed)
    consumptions = wallets_apply(billed, now=now)
    _invoices_number(drafts, now=now)
    unsaved = [invoice for invoice in drafts if invoice._state.adding]
    saved = [invoice for invoice in drafts if not invoice._state.adding]
    if unsaved:
        write_unsaved(unsaved)
    if saved:
        _saved_drafts_mark_finalized(saved)
    if coupon_credits:
        CouponCredit.objects.bulk_create(coupon_credits)
    if applications:
        CreditApplication.objects.bulk_create(applications)
    consumed = wallet_consumptions_save(consumptions)
    _invoices_finalized_follow_up(drafts, applications=applications, consumptions=consumed, shadow=shadow)


def _saved_drafts_mark_finalized(drafts: list[Invoice]) -> None:
    """Write numbered drafts' finalized fields (`_invoices_number`) to their rows."""
    now = drafts[0].finalized_at
    stamp = timezone.now()
    ids = [invoice.pk for invoice in drafts]
    with connection.cursor() as cursor:
        # `status = 'draft'` is already guaranteed by the row locks; the count check keeps it loud.
        cursor.execute(
            """
            UPDATE invoicing_invoice i
               SET series = v.series, sequential_id = v.seq, number = v.number, status = %(finalized)s,
                   finalized_at = %(now)s, payment_due_date = v.due, updated_at = %(stamp)s,
                   credit_notes_amount_cents = v.credited, prepaid_credit_amount_cents = v.prepaid,
                   total_amount_cents = v.total, payment_status = v.payment_status,
                   coupons_amount_cents = v.coupons, sub_total_excluding_taxes_amount_cents = v.excluding,
                   taxes_amount_cents = v.taxes, sub_total_including_taxes_amount_cents = v.including
              FROM unnest(%(ids)s::bigint[], %(series)s::text[], %(seqs)s::int[], %(numbers)s::text[],
                          %(dues)s::date[], %(credited)s::bigint[], %(prepaid)s::bigint[], %(totals)s::bigint[],
                          %(payment_statuses)s::text[], %(coupons)s::bigint[], %(excluding)s::bigint[],
                          %(taxes)s::bigint[], %(including)s::bigint[])
                   AS v(id, series, seq, number, due, credited, prepaid, total, payment_status, coupons, excluding,
                        taxes, including)
             WHERE i.id = v.id AND i.status = %(draft)s
            """,
            {
                "finalized": Invoice.Status.FINALIZED, "draft": Invoice.Status.DRAFT, "now": now, "stamp": stamp,
                "ids": ids, "series": [invoice.series for invoice in drafts],
                "seqs": [invoice.sequential_id for invoice in drafts], "numbers": [invoice.number for invoice in drafts],
                "dues": [invoice.payment_due_date for invoice in drafts],
                # Set by credits_apply (credit consumed at finalization); the drafts' own values otherwise.
                "credited": [invoice.credit_notes_amount_cents for invoice in drafts],
                "prepaid": [invoice.prepaid_credit_amount_cents for invoice in drafts],
                "totals": [invoice.total_amount_cents for invoice in drafts],
                "payment_statuses": [invoice.payment_status for invoice in drafts],
                # Set by coupons_apply (coupons taken off before tax); the drafts' own values otherwise.
                "coupons": [invoice.coupons_amount_cents for invoice in drafts],
                "excluding": [invoice.sub_total_excluding_taxes_amount_cents for invoice in drafts],
                "taxes": [invoice.taxes_amount_cents for invoice in drafts],
                "including": [invoice.sub_total_including_taxes_amount_cents for invoice in drafts],
            },
        )
        if cursor.rowcount != len(drafts):
            raise RuntimeError(f"finalized {cursor.rowcount} of {len(drafts)} drafts; rolled back")
    for invoice in drafts:
        invoice.updated_at = stamp


def _invoices_finalized_follow_up(
    invoices: list[Invoice], *, applications: list[CreditApplication], consumptions: list[WalletTransaction] = (),
    shadow: set[int] = frozenset()
) -> None:
    """What finalization writes beside the invoices themselves, in the finalizing transaction: the subscriptions'
    usage cut-off, webhook `invoice.created` (Lago sends it at finalization), ledger postings (apps.ledger:
    the invoices, then the credit they consumed), payment collection of what is left due (apps.payments).
    The invoices, their billing periods and credit applications must be written first."""
    with connection.cursor() as cursor:
        # Usage before the billed windows is now invoiced: later arrivals are late usage (adjustments). Not so after
        # a progressive billing invoice: the period's own invoice bills the whole period again, net of it.
        cursor.execute(
            """
            UPDATE subscriptions_subscription s SET usage_billed_until = v.until
              FROM (SELECT subscription_id, max(charges_to_datetime) AS until FROM invoicing_invoicesubscription
                     WHERE invoice_id = ANY(%s) AND invoicing_reason <> 'progressive_billing'
                     GROUP BY subscription_id) v
             WHERE s.id = v.subscription_id AND (s.usage_billed_until IS NULL OR s.usage_billed_until < v.until)
            """,
            [[invoice.pk for invoice in invoices]],
        )
    invoices_webhook_record(invoices=invoices, event_type="invoice.created")
    # A dual run's shadow invoices (apps.migration): kept, never posted or charged, since Lago bills them.
    authoritative = [invoice for invoice in invoices if invoice.pk not in shadow] if shadow else invoices
    ledger_postings_create(invoices=authoritative)
    if applications:
        ledger_credit_applications_create(applications=applications)
    posted_consumptions = [row for row in consumptions if row.invoice_id not in shadow]
    if posted_consumptions:
        ledger_wallet_transactions_create(transactions=posted_consumptions)
    if consumptions:  # the balances fell: depletion and threshold top-ups are checked once this commits
        wallets_balance_check_on_commit({row.wallet_id for row in consumptions})
    for invoice in authoritative:
        invoice_finalized_announce(invoice=invoice)  # apps.payments collects the amount due on commit


def invoice_finalize(*, invoice_id: int, now: datetime | None = None) -> Invoice:
    """Number and freeze one draft invoice (`invoices_finalize`). Calling it again is a no-op."""
    return invoices_finalize(invoice_ids=[invoice_id], now=now)[0]


@transaction.atomic
def invoice_void(*, invoice_id: int, generate_credit_note: bool = False, credit_amount_cents: int = 0,
                 refund_amount_cents: int = 0) -> Invoice:
    """Void a finalized, unpaid invoice (Lago: finalized and payment not succeeded; the hub also refuses a partly
    paid one, whose payments only credit notes can place). Idempotent.

    With `generate_credit_note` (Lago's body), any finalized invoice, paid or not, is voided by credit notes
    instead (`_invoice_void_with_credit_notes`); amounts are minor units of the invoice's currency.
    """
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if generate_credit_note:
        return _invoice_void_with_credit_notes(invoice, credit_amount_cents=credit_amount_cents,
                                               refund_amount_cents=refund_amount_cents)
    if invoice.status == Invoice.Status.VOIDED:
        return invoice
    if invoice.status != Invoice.Status.FINALIZED or invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED:
        raise NotAllowed(f"invoice is {invoice.status}/{invoice.payment_status}", code="not_voidable")
    if invoice.total_paid_amount_cents:
        # Voided plainly, what the customer already paid would be owed to nobody: the hub would forget it while
        # Odoo's reversal leaves it as the customer's credit. Lago lets it happen; the hub asks for the credit
        # notes that say where that money goes (credited, refunded or voided on purpose).
        raise NotAllowed(
            f"invoice {invoice.number} is partly paid ({invoice.total_paid_amount_cents} cents): void it with "
            "generate_credit_note and the credit_amount and refund_amount of what was paid",
            code="not_voidable",
        )
    invoice.status, invoice.voided_at = Invoice.Status.VOIDED, timezone.now()
    invoice.save(update_fields=["status", "voided_at", "updated_at"])
    # The credit it consumed goes back to its sources (Lago), before the reversal is posted: the ledger undoes
    # those applications first, so the reversal then clears the whole invoice.
    returned = credits_return(invoice)
    given_back = wallets_return(invoice)  # what it took from wallets goes back too
    wallet_top_up_fail(invoice=invoice)  # a voided top-up invoice credits nothing
    invoice_voided_announce(invoice=invoice)  # apps.payments expires its open Checkout links once this commits
    # follow-up rows in this transaction: webhook "invoice.voided" (apps.webhooks) and the ledger's reversal, after
    # the ledger has undone the credit applications (their postings are written first, so they are sent first).
    invoice_webhook_record(invoice=invoice, event_type="invoice.voided")
    if returned:
        ledger_credit_applications_create(applications=returned)
        for row in returned:  # credit given back to a note voided since is lost too: re-billed as the void was
            if row.credit_note_id is not None and row.credit_note.credit_status == CreditNote.CreditStatus.VOIDED:
                ledger_credit_note_void_create(credit_note=row.credit_note, amount_cents=-row.amount_cents,
                                               application=row)
    if given_back:  # written before the void's posting too: the ledger gives the wallet credit back first
        ledger_wallet_transactions_create(transactions=given_back)
        wallets_balance_check_on_commit({row.wallet_id for row in given_back})
    ledger_posting_create(void=invoice)
    return invoice


def _items_totalling(invoice: Invoice, target_cents: int) -> list[CreditNoteItemIn]:
    """Return credit-note items of the invoice's fees, at most what is left on each, whose total with tax is
    exactly `target_cents` (minor units), spread pro rata over what is left (Lago's void). Taxes are computed as
    `credit_note_estimate` does (cumulative per fee), so the note written from them totals `target_cents`.

    Per-line tax rounding skips some totals (one fee at 13%: 116 and 118 are totals, 117 is not); when no split
    reaches the target, ValidationFailed (`credit_refund_amount: value_is_out_of_range`), nothing written.
    """
    fees = {fee.pk: fee for fee in invoice.fees.order_by("id")}
    credited = _credited_per_fee(invoice, fees)
    caps: dict[int, int] = {}
    for fee in fees.values():
        left = fee.amount_cents - fee.coupons_amount_cents - credited[fee.pk].amount_cents
        if left > 0:
            caps[fee.pk] = left

    def total_of(fee_id: int, amount: int) -> int:
        if amount <= 0:
            return 0
        fee, so_far = fees[fee_id], credited[fee_id]
        taxes = credit_applied_taxes(amount_cents=amount, fee_amount_cents=fee.amount_cents - fee.coupons_amount_cents,
                                     fee_applied_taxes=fee.applied_taxes, credited_amount_cents=so_far.amount_cents,
                                     credited_taxes=so_far.taxes)
        return amount + sum(tax["amount_cents"] for tax in taxes)

    full = sum(total_of(fee_id, cap) for fee_id, cap in caps.items())
    if target_cents <= 0 or target_cents > full:
        raise ValidationFailed("amount", details={"credit_refund_amount": ["total_amount_exceeds_invoice_amount"]})
    # Pro rata, a few cents short per fee (tax rounding can lift a share above its pro rata total), then cent by
    # cent where a cent adds least: the gap left is a few cents per fee.
    amounts = {fee_id: max(0, cap * target_cents // full - 2) for fee_id, cap in caps.items()}
    total = sum(total_of(fee_id, amount) for fee_id, amount in amounts.items())
    while total > target_cents:  # never expected; kept so the walk below always starts below the target
        fee_id = max(amounts, key=amounts.get)
        total -= total_of(fee_id, amounts[fee_id]) - total_of(fee_id, amounts[fee_id] - 1)
        amounts[fee_id] -= 1
    while total < target_cents:
        step, fee_id = min((total_of(fee_id, amounts[fee_id] + 1) - total_of(fee_id, amounts[fee_id]), fee_id)
                           for fee_id in caps if amounts[fee_id] < caps[fee_id])
        if total + step > target_cents:
            break
        amounts[fee_id] += 1
        total += step
    if total != target_cents:  # one cent off one fee for one more on another can still land on it
        for down in (fee_id for fee_id in caps if amounts[fee_id] > 0):
            less = total_of(down, amounts[down]) - total_of(down, amounts[down] - 1)
            up = next((fee_id for fee_id in caps if fee_id != down and amounts[fee_id] < caps[fee_id]
                       and total - less + total_of(fee_id, amounts[fee_id] + 1) - total_of(fee_id, amounts[fee_id])
                       == target_cents), None)
            if up is not None:
                amounts[down], amounts[up], total = amounts[down] - 1, amounts[up] + 1, target_cents
                break
    if total != target_cents:
        raise ValidationFailed("amount", details={"credit_refund_amount": ["value_is_out_of_range"]})
    return [CreditNoteItemIn(fee_id=fee_id, amount_cents=amount) for fee_id, amount in amounts.items() if amount]


def _invoice_void_with_credit_notes(invoice: Invoice, *, credit_amount_cents: int,
                                    refund_amount_cents: int) -> Invoice:
    """Void a finalized invoice, paid or not, by credit notes (Lago's `generate_credit_note`). Call with the invoice
    locked (the lock every credit note, payment and void of the invoice takes first: they take turns).

    Refused before anything is written: amounts not whole non-negative cents, their sum above what is left to
    credit of what was paid, or the refund above what was paid and not refunded (422 `credit_refund_amount:
    total_amount_exceeds_invoice_amount`, Lago's answer); an invoice not finalized, voided twice included (405
    `not_voidable`); an invoice that took credit or prepaid credit, or a top-up (403 `feature_unavailable`: not
    built, docs/lago-deviations.yaml).

    Written, in this order (docs/ledger.md, "Void with credit notes"): what is still due, on a note that only
    settles it (its whole total offsets the invoice; none when fully paid: the hub never hands out credit for money
    it did not receive); the requested note (credit_amount_cents as the customer's credit, refund_amount_cents
    refunded through Stripe on commit); the rest on a note voided at once (Lago), so what the customer paid and
    gets neither back nor as credit stays billed. The invoice's fees are then wholly credited, so the void's own
    ledger reversal has nothing left and is skipped: no revenue or tax is reversed twice.
    """
    credit, refund = credit_amount_cents, refund_amount_cents
    if not (isinstance(credit, int) and isinstance(refund, int)) or credit < 0 or refund < 0:
        raise ValidationFailed("amounts", details={"credit_refund_amount": ["value_is_out_of_range"]})
    exceeds = ValidationFailed("amounts", details={"credit_refund_amount": ["total_amount_exceeds_invoice_amount"]})
    if invoice.status != Invoice.Status.FINALIZED:
        if credit + refund > 0:  # nothing is creditable on an invoice that is not finalized (Lago checks this first)
            raise exceeds
        raise NotAllowed(f"invoice is {invoice.status}", code="not_voidable")
    if (invoice.invoice_type == Invoice.InvoiceType.CREDIT or invoice.credit_notes_amount_cents
            or invoice.prepaid_credit_amount_cents):
        raise Forbidden("generate_credit_note is not supported on an invoice that used credit or bought credit",
                        code="feature_unavailable")
    fees = {fee.pk: fee for fee in invoice.fees.all()}
    credited = _credited_per_fee(invoice, fees)
    creditable = 0  # what is left to credit, tax included
    for fee in fees.values():
        left = fee.amount_cents - fee.coupons_amount_cents - credited[fee.pk].amount_cents
        if left > 0:
            so_far = credited[fee.pk]
            taxes = credit_applied_taxes(amount_cents=left, fee_amount_cents=fee.amount_cents - fee.coupons_amount_cents,
                                         fee_applied_taxes=fee.applied_taxes,
                                         credited_amount_cents=so_far.amount_cents, credited_taxes=so_far.taxes)
            creditable += left + sum(tax["amount_cents"] for tax in taxes)
    due = invoice.total_due_amount_cents
    refunded = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("refund_amount_cents"))["total"] or 0
    if credit + refund > creditable - due or refund > invoice.total_paid_amount_cents - refunded:
        raise exceeds
    description = f"Credit note created due to voided invoice {invoice.lago_id}"
    if due:
        credit_note_create(invoice_id=invoice.pk, items=_items_totalling(invoice, due), description=description)
    if credit + refund:
        credit_note_create(invoice_id=invoice.pk, items=_items_totalling(invoice, credit + refund),
                           description=description, credit_amount_cents=credit, refund_amount_cents=refund)
    rest = creditable - due - credit - refund
    if rest:
        rest_note = credit_note_create(invoice_id=invoice.pk, items=_items_totalling(invoice, rest),
                                       description=description, credit_amount_cents=rest)
        credit_note_void(credit_note_id=rest_note.pk)
    invoice.refresh_from_db()
    invoice.status, invoice.voided_at, invoice.voided_with_credit_notes = (
        Invoice.Status.VOIDED, timezone.now(), True)
    invoice.payment_overdue = False
    invoice.save(update_fields=["status", "voided_at", "voided_with_credit_notes", "payment_overdue", "updated_at"])
    invoice_voided_announce(invoice=invoice)  # apps.payments expires its open Checkout links once this commits
    invoice_webhook_record(invoice=invoice, event_type="invoice.voided")
    ledger_posting_create(void=invoice)  # reverses what the notes left: nothing (skipped), written for the record
    return invoice


@transaction.atomic
def invoice_dispute_lose(*, invoice_id: int) -> Invoice:
    """Mark the invoice's payment dispute lost (Lago's `lose_dispute`): a finalized or voided invoice only (405
    `not_disputable` else); no longer overdue; `invoice.payment_dispute_lost` once. Calling it again changes
    nothing. As Lago, the money is not touched: the payment stays recorded."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status not in (Invoice.Status.FINALIZED, Invoice.Status.VOIDED):
        raise NotAllowed(f"invoice is {invoice.status}", code="not_disputable")
    if invoice.payment_dispute_lost_at is None:
        invoice.payment_dispute_lost_at, invoice.payment_overdue = timezone.now(), False
        invoice.save(update_fields=["payment_dispute_lost_at", "payment_overdue", "updated_at"])
        invoice_webhook_record(invoice=invoice, event_type="invoice.payment_dispute_lost")
    return invoice


@transaction.atomic
def invoice_delete(*, invoice_id: int) -> Invoice:
    """Delete a draft as Lago does (`invoices/delete_service.rb`): drafts only (405 `not_deletable`), `invoice.deleted`
    sent. The row and its fees stay, status `deleted`: nothing was numbered, collected or posted, the period stays
    billed for the close (it is not billed again), and the API no longer shows it."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        raise NotAllowed(f"invoice is {invoice.status}", code="not_deletable")
    invoice.status, invoice.grace_until = Invoice.Status.DELETED, None
    invoice.save(update_fields=["status", "grace_until", "updated_at"])
    invoice_webhook_record(invoice=invoice, event_type="invoice.deleted")
    return invoice


def invoice_generation_retry(*, invoice_id: int) -> Invoice:
    """Lago's retry of an invoice whose generation failed (`invoices/retry_service.rb`, a tax provider's error).
    The hub writes an invoice only once it is generated (a failed close writes nothing and the close run retries
    the customer), so no invoice is ever in that state: 405 `invalid_status`, Lago's answer for any other."""
    invoice = Invoice.objects.get(pk=invoice_id)
    raise NotAllowed(f"invoice is {invoice.status}, not failed", code="invalid_status")


MAX_INVOICE_METADATA = 5  # Lago's limit of metadata entries per invoice


@transaction.atomic
def invoice_metadata_update(*, invoice_id: int, entries: list[dict]) -> Invoice:
    """Replace the invoice's metadata as Lago does: an entry naming an existing `id` updates it (keeping its id and
    creation time), one without adds one, and existing entries the list leaves out are removed. Sending the same
    list twice leaves the same metadata."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    existing = {item["lago_id"]: item for item in invoice.metadata or []}
    errors: dict[str, list[str]] = {}
    out = []
    for index, entry in enumerate(entries):
        known = existing.get(str(entry["id"])) if entry.get("id") else None
        if entry.get("id") and known is None:
            errors[f"metadata.{index}.id"] = ["metadata_not_found"]
            continue
        out.append({"lago_id": known["lago_id"] if known else str(uuid.uuid4()), "key": entry["key"],
                    "value": entry["value"], "created_at": known["created_at"] if known else ts(timezone.now())})
    keys = [item["key"] for item in out]
    if len(keys) != len(set(keys)):
        errors["metadata"] = ["value_already_exist"]
    if len(out) > MAX_INVOICE_METADATA:
        errors["metadata"] = ["value_is_out_of_range"]
    if errors:
        raise ValidationFailed("invalid metadata", details=errors)
    if out != invoice.metadata:
        invoice.metadata = out
        invoice.save(update_fields=["metadata", "updated_at"])
    return invoice


MAX_CREDIT_NOTE_METADATA = 50  # keys


@transaction.atomic
def credit_note_void(*, credit_note_id: int) -> CreditNote:
    """Void the unused credit of a credit note (Lago's CreditNotes::VoidService): the customer loses its balance,
    the note's credit status becomes `voided`; what it refunds or already settled is untouched.

    Only a note with a balance left can be voided: otherwise (nothing left, or voided already) Lago's 405
    `no_voidable_amount`, and nothing is written. The note's row lock is the one finalization takes before it
    consumes the note (credits.credits_apply), so a void and an invoice consuming the same credit take turns: the
    second sees the first's balance, and the same cent is never both consumed and voided. The ledger posting that
    re-bills the voided part (pro rata per tax) is written in this transaction. Lago sends no webhook for it.
    """
    note = CreditNote.objects.select_for_update().get(pk=credit_note_id)
    if note.credit_status == CreditNote.CreditStatus.VOIDED or note.balance_amount_cents <= 0:
        raise NotAllowed(f"credit note {note.number} has no credit left to void", code="no_voidable_amount")
    voided = note.balance_amount_cents
    note.voided_amount_cents += voided
    note.balance_amount_cents, note.credit_status, note.voided_at = 0, CreditNote.CreditStatus.VOIDED, timezone.now()
    note.save(update_fields=["voided_amount_cents", "balance_amount_cents", "credit_status", "voided_at",
                             "updated_at"])
    ledger_credit_note_void_create(credit_note=note, amount_cents=voided)
    return note


@transaction.atomic
def credit_note_metadata_update(*, credit_note_id: int, metadata: dict | None, merge: bool = False) -> CreditNote:
    """Set the credit note's metadata (Lago's key-value object): replaced whole, or `merge`d into what it has (Lago's
    PATCH); None or {} removes it all. At most 50 keys (422 `metadata: value_is_out_of_range`). Idempotent."""
    note = CreditNote.objects.select_for_update().get(pk=credit_note_id)
    value = {**(note.metadata or {}), **(metadata or {})} if merge else dict(metadata or {})
    if len(value) > MAX_CREDIT_NOTE_METADATA:
        raise ValidationFailed("too many metadata keys", details={"metadata": ["value_is_out_of_range"]})
    if note.metadata != value:
        note.metadata = value
        note.save(update_fields=["metadata", "updated_at"])
    return note


@transaction.atomic
def credit_note_metadata_key_delete(*, credit_note_id: int, key: str) -> CreditNote:
    """Remove one key of the credit note's metadata; 404 `metadata_not_found` when it has none (Lago)."""
    note = CreditNote.objects.select_for_update().get(pk=credit_note_id)
    if not note.metadata:
        raise NotFound("metadata")
    if key in note.metadata:
        note.metadata = {name: value for name, value in note.metadata.items() if name != key}
        note.save(update_fields=["metadata", "updated_at"])
    return note


@dataclass(frozen=True)
class AddOnFee:
    add_on_code: str
    units: Decimal  # quantity
    unit_amount_cents: int  # minor units per unit
    name: str = ""
    description: str = ""


# Largest one-off total (minor units): a quarter of PostgreSQL's bigint, so the total with its taxes (at most
# 15% in Canada), credits and sums across invoices stays far inside every amount column.
MAX_INVOICE_CENTS = (2**63 - 1) // 4


def _unit_amount(fee: AddOnFee, currency: str) -> Decimal:
    """The fee's unit price in major units of `currency`."""
    return from_minor_units(fee.unit_amount_cents, currency)


@transaction.atomic
def invoice_create_one_off(*, service: Service, customer: Customer, currency: str, fees: list[AddOnFee]) -> Invoice:
    """Create and finalize a one-off invoice of add-on fees (token packs, throttle removal).

    Each fee must bill a positive amount: units and unit amount above zero, and their product at least one minor
    unit once rounded. A finalized invoice cannot be corrected but by a credit note, and a negative or empty one
    is nothing a customer can pay or Odoo can post; refunds are credit notes. Refused with Lago's 422 before
    anything is written.
    """
    if not fees:
        raise ValidationFailed("no fees", details={"fees": ["value_is_mandatory"]})
    if currency not in SUPPORTED_CURRENCIES:
        raise ValidationFailed("currency", details={"currency": ["value_is_invalid"]})
    errors: dict[str, list[str]] = {}
    total = 0
    for index, fee in enumerate(fees):
        if fee.units <= 0:
            errors[f"fees.{index}.units"] = ["value_is_out_of_range"]
        if fee.unit_amount_cents <= 0:
            errors[f"fees.{index}.unit_amount_cents"] = ["value_is_out_of_range"]
        elif fee.units > 0:
            amount = to_minor_units(fee.units * _unit_amount(fee, currency), currency)
            total += amount
            # Zero: so few units that the fee rounds to nothing. Past MAX_INVOICE_CENTS: amounts and taxes would
            # overflow their bigint columns.
            if amount <= 0 or amount > MAX_INVOICE_CENTS:
                errors[f"fees.{index}.units"] = ["value_is_out_of_range"]
    if not errors and total > MAX_INVOICE_CENTS:
        errors["fees"] = ["value_is_out_of_range"]
    if errors:
        raise ValidationFailed("one-off fees must bill a positive amount", details=errors)
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    now = timezone.now()
    today = local_date(now, customer.applicable_timezone)
    invoice = Invoice.objects.create(
        customer=customer,
        invoice_type=Invoice.InvoiceType.ONE_OFF,
        currency=currency,
        issuing_date=today,
        net_payment_term=customer.net_payment_term,
    )
    rates = customer_tax_rates(customer, on=today)

    rows = []
    for index, fee in enumerate(fees):
        unit = _unit_amount(fee, currency)
        precise = fee.units * unit
        line = Line(
            billing_on=today,
            currency=currency,
            fee_key=f"one_off:{invoice.lago_id}:{index}",
            fee_type=Fee.FeeType.ADD_ON,
            subscription=None,
            name=fee.name or fee.add_on_code,
            description=fee.description,
            units=fee.units,
            precise_unit_amount=unit,
            precise_amount=precise,
            amount_cents=to_minor_units(precise, currency),
        )
        row = Fee(invoice=invoice, **fee_values(line, rates=rates))
        row.service, row.add_on_code = service, fee.add_on_code
        rows.append(row)
    Fee.objects.bulk_create(rows)
    invoice_recompute_totals(invoice)
    return invoice_finalize(invoice_id=invoice.pk, now=now)


@dataclass(frozen=True)
class AddOnFeeRequest:
    """A one-off fee as an app asks for it: an add-on by code, the rest defaulting from the add-on (Lago)."""

    add_on_code: str
    units: Decimal | None = None  # quantity; 1 when absent
    unit_amount_cents: int | None = None  # minor units per unit; the add-on's amount_cents when absent
    invoice_display_name: str = ""
    description: str | None = None  # None: the add-on's description


def invoice_create_one_off_for_add_ons(
    *, service: Service, customer: Customer, currency: str, fees: list[AddOnFeeRequest]
) -> Invoice:
    """Bill catalog add-ons once (Lago's `POST /invoices`): each fee names one of the service's add-ons by code.

    An unknown (or deleted, or another service's) add-on answers Lago's 404 `add_on_not_found` before anything
    is written. The fee copies the price, name and description it bills, so later add-on changes leave issued
    invoices as they were.
    """
    from apps.catalog.selectors import add_on_list

    codes = {fee.add_on_code for fee in fees}
    add_ons = {add_on.code: add_on for add_on in add_on_list(service=service).filter(code__in=codes)}
    resolved = []
    for fee in fees:
        add_on = add_ons.get(fee.add_on_code)
        if add_on is None:
            raise NotFound("add_on")
        resolved.append(AddOnFee(
            add_on_code=add_on.code,
            units=fee.units if fee.units is not None else Decimal(1),
            unit_amount_cents=fee.unit_amount_cents if fee.unit_amount_cents is not None else add_on.amount_cents,
            name=fee.invoice_display_name or add_on.invoice_name,
            description=fee.description if fee.description is not None else add_on.description,
        ))
    return invoice_create_one_off(service=service, customer=customer, currency=currency, fees=resolved)


# --------------------------------------------------------------------------- credit notes


@dataclass(frozen=True)
class CreditNoteItemIn:
    fee_id: int
    amount_cents: int  # minor units, tax excluded


@dataclass(frozen=True)
class CreditNoteEstimate:
    # (fee, amount_cents, taxes_amount_cents, applied_taxes JSON per rate), in the order asked
    items: list[tuple[Fee, int, int, list[dict]]]
    sub_total_excluding_taxes_amount_cents: int
    taxes_amount_cents: int
    total_amount_cents: int
    max_creditable_amount_cents: int
    max_refundable_amount_cents: int
    # What the note takes off the invoice's amount due first (min(due, total)): Lago's `max_offsettable_amount_cents`,
    # and what Odoo reconciles the out_refund with its invoice for as it posts it (C-MOVE `_post` ->
    # `_reconcile_reversed_moves`, whatever the path: wizard or create + action_post).
    offset_amount_cents: int = 0


@dataclass
class _Credited:
    amount_cents: int = 0  # tax excluded
    taxes: dict[str, int] = field(default_factory=dict)  # tax code -> cents


def _credited_per_fee(invoice: Invoice, fees: dict[int, Fee]) -> dict[int, _Credited]:
    """Return, per fee, what credit notes already credited: amount and tax per rate."""
    credited: dict[int, _Credited] = defaultdict(_Credited)
    rows = (
        # A voided note still credited its items (its refund and consumed credit stand; Lago's
        # Fee#creditable_amount_cents counts every item): a fee is never credited twice.
        CreditNoteItem.objects.filter(credit_note__invoice=invoice)
        .values_list("fee_id", "amount_cents", "applied_taxes")
        .order_by("id")
    )
    for fee_id, amount, applied in rows:
        entry = credited[fee_id]
        entry.amount_cents += amount
        for code, cents in credited_item_taxes(amount, applied, fees[fee_id].applied_taxes).items():
            entry.taxes[code] = entry.taxes.get(code, 0) + cents
    return credited


def credit_note_estimate(*, invoice: Invoice, items: list[CreditNoteItemIn]) -> CreditNoteEstimate:
    """Validate items against what is left to credit on each fee and compute their taxes per rate.

    Taxes are rounded cumulatively over each fee's credits (`taxes.credit_applied_taxes`), items of one call
    in the order given, so the estimate is exactly what `credit_note_create` writes for the same items.
    """
    if invoice.status != Invoice.Status.FINALIZED:
        raise NotAllowed("invoice not finalized", code="invalid_type_or_status")
    if not items:
        raise ValidationFailed("no items", details={"items": ["value_is_mandatory"]})
    fees = {fee.pk: fee for fee in invoice.fees.all()}
    credited = _credited_per_fee(invoice, fees)
    errors: dict[str, list[str]] = {}
    out: list[tuple[Fee, int, int, list[dict]]] = []
    for index, item in enumerate(items):
        fee = fees.get(item.fee_id)
        if fee is None:
            errors.setdefault(f"items[{index}].fee_id", []).append("fee_not_found")
            continue
        if item.amount_cents <= 0:
            errors.setdefault(f"items[{index}].amount_cents", []).append("value_is_out_of_range")
            continue
        so_far = credited[fee.pk]
        billed = fee.amount_cents - fee.coupons_amount_cents  # coupons came off before tax: never credited
        if so_far.amount_cents + item.amount_cents > billed:
            errors.setdefault(f"items[{index}].amount_cents", []).append("higher_than_remaining_fee_amount")
            continue
        applied = credit_applied_taxes(
            amount_cents=item.amount_cents, fee_amount_cents=billed, fee_applied_taxes=fee.applied_taxes,
            credited_amount_cents=so_far.amount_cents, credited_taxes=so_far.taxes,
        )
        so_far.amount_cents += item.amount_cents
        for tax in applied:
            so_far.taxes[tax["code"]] = so_far.taxes.get(tax["code"], 0) + tax["amount_cents"]
        out.append((fee, item.amount_cents, sum(tax["amount_cents"] for tax in applied), applied))
    if errors:
        raise ValidationFailed("invalid credit note", details=errors)
    sub_total = sum(amount for _, amount, _, _ in out)
    taxes = sum(tax for _, _, tax, _ in out)
    total = sub_total + taxes
    refunded = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("refund_amount_cents"))["total"] or 0
    offset = min(invoice.total_due_amount_cents, total)
    return CreditNoteEstimate(
        items=out,
        sub_total_excluding_taxes_amount_cents=sub_total,
        taxes_amount_cents=taxes,
        total_amount_cents=total,
        max_creditable_amount_cents=total,
        # Only what the note does not offset can be paid back, and never more than was paid and not yet refunded.
        max_refundable_amount_cents=max(0, min(total - offset, invoice.total_paid_amount_cents - refunded)),
        offset_amount_cents=offset,
    )


@transaction.atomic
def credit_note_create(
    *,
    invoice_id: int,
    items: list[CreditNoteItemIn],
    reason: str = CreditNote.Reason.OTHER,
    description: str = "",
    credit_amount_cents: int | None = None,
    refund_amount_cents: int | None = None,
    offset_amount_cents: int | None = None,
    issuing_date: date | None = None,
    close_key: str | None = None,
    subscription_id: int | None = None,
) -> CreditNote:
    """Credit part of a finalized invoice's fees, never more than what is left on each fee, and refund at most
    what was paid on the invoice less what its credit notes already refund.

    The note first settles what the invoice still owes (`offset_amount_cents` = min(amount due, total)); only the
    rest is refunded (`refund_amount_cents`) or kept as the customer's credit for the next invoices. So a note on an
    unpaid invoice lowers what is collected on that invoice instead of handing the customer credit for money never
    received, and the hub records what Odoo does when it posts the note's out_refund: `_post` reconciles it with the
    invoice it reverses for as much as both have open (C-MOVE `_reconcile_reversed_moves`). Lago's own split of a
    note is the caller's choice; the hub takes `credit_amount_cents`, `refund_amount_cents` and `offset_amount_cents`
    as Lago does (their sum must be the note's total), then applies the offset first (README, deviations).

    The invoice row lock serializes the credit notes of one invoice: what is credited and refunded is read
    after it is taken (READ COMMITTED: each statement sees every commit before it), so two notes issued at once
    never together exceed a fee or the amount paid (tests/integration/invoicing/test_credit_note_concurrency.py).
    Anything else that writes credit notes must take the same lock first.

    `close_key`/`subscription_id`: a credit the period close issues (an in-advance fee's unused part), once per key.
    """
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if reason not in CreditNote.Reason.values:
        raise ValidationFailed("bad reason", details={"reason": ["value_is_invalid"]})
    estimate = credit_note_estimate(invoice=invoice, items=items)
    total, offset = estimate.total_amount_cents, estimate.offset_amount_cents
    refund = refund_amount_cents or 0
    asked_offset = offset_amount_cents or 0
    asked_credit = total - refund - asked_offset if credit_amount_cents is None else credit_amount_cents
    if asked_credit < 0 or refund < 0 or asked_offset < 0 or asked_credit + refund + asked_offset != total:
        raise ValidationFailed("amounts", details={"base": ["does_not_match_item_amounts"]})
    if asked_offset > offset:
        raise ValidationFailed("offset", details={"offset_amount_cents": ["higher_than_remaining_invoice_amount"]})
    if refund > estimate.max_refundable_amount_cents:
        raise ValidationFailed("refund", details={"refund_amount_cents": ["higher_than_remaining_invoice_amount"]})
    credit = total - offset - refund
    sequential_id = invoice.credit_notes.count() + 1
    note = CreditNote.objects.create(
        invoice=invoice,
        customer_id=invoice.customer_id,
        number=f"{invoice.number}-CN{sequential_id}",
        sequential_id=sequential_id,
        issuing_date=issuing_date or timezone.localdate(),
        reason=reason,
        description=description,
        currency=invoice.currency,
        sub_total_excluding_taxes_amount_cents=estimate.sub_total_excluding_taxes_amount_cents,
        taxes_amount_cents=estimate.taxes_amount_cents,
        total_amount_cents=estimate.total_amount_cents,
        credit_amount_cents=credit,
        refund_amount_cents=refund,
        offset_amount_cents=offset,
        balance_amount_cents=credit,
        credit_status=CreditNote.CreditStatus.AVAILABLE if credit else "",
        refund_status=CreditNote.RefundStatus.PENDING if refund else "",
        created_by_close=close_key is not None,
        close_key=close_key,
        subscription_id=subscription_id,
    )
    CreditNoteItem.objects.bulk_create(
        CreditNoteItem(credit_note=note, fee=fee, amount_cents=amount, taxes_amount_cents=tax, applied_taxes=applied)
        for fee, amount, tax, applied in estimate.items
    )
    if offset:
        invoice.offset_amount_cents += offset
        fields = ["offset_amount_cents", "updated_at"]
        if invoice.total_due_amount_cents == 0:  # settled: nothing left to collect (Lago marks it paid too)
            invoice.payment_status, invoice.payment_overdue = Invoice.PaymentStatus.SUCCEEDED, False
            fields += ["payment_status", "payment_overdue"]
        invoice.save(update_fields=fields)
    # follow-up rows: webhook "credit_note.created" (apps.webhooks), ledger credit note (apps.ledger),
    # Stripe refund when refund_amount_cents > 0 and new links for what an offset left due (apps.payments), in this
    # transaction.
    credit_note_webhook_record(credit_note=note)
    ledger_posting_create(credit_note=note)
    credit_note_created_announce(credit_note=note)  # apps.payments refunds through Stripe on commit
    return note


__all__ += ["AddOnFee", "CreditNoteItemIn", "InvoiceAppliedTax"]

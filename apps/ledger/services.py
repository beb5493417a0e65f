"""Ledger services: write postings (outbox) and send them to Odoo exactly once (STYLE.md §4-5)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from apps.catalog.taxes import credit_applied_taxes, credited_item_taxes  # pure: the hub's tax rules
from apps.core.keys import WALLET_FEE_PREFIX
from apps.core.queue import task_send_on_commit
from apps.ledger import mapping
from apps.ledger.models import (
    LedgerPosting,
    OdooAccountMapping,
    OdooAnalyticMapping,
    OdooJournalMapping,
    OdooProductMapping,
    OdooTaxMapping,
)
from apps.ledger.odoo_client import (
    MoveDraft,
    MoveResult,
    OdooClient,
    OdooError,
    OdooUnavailable,
    PartnerDraft,
    get_odoo_client,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentRecord:
    """A collected payment as the ledger needs it; any object with these attributes is accepted."""

    invoice: Any  # apps.invoicing.models.Invoice it settles
    stripe_id: str  # Stripe PaymentIntent/Charge id, unique per payment
    amount_cents: int  # minor units of `currency`
    currency: str  # ISO 4217
    paid_at: dt.datetime


@dataclass(frozen=True)
class RefundRecord:
    """Money paid back through Stripe on a credit note; any object with these attributes is accepted."""

    credit_note: Any  # apps.invoicing.models.CreditNote refunded (its out_refund carries the outbound payment)
    stripe_id: str  # Stripe Refund id (re_...), unique per refund
    amount_cents: int  # minor units of `currency`
    currency: str  # ISO 4217
    paid_at: dt.datetime  # when Stripe paid it back


def invoice_ref(number: str) -> str:
    return f"NEXA/{number}"


def payment_ref(stripe_id: str) -> str:
    return f"NEXA/PAY/{stripe_id}"


def refund_ref(stripe_id: str) -> str:
    return f"NEXA/REF/{stripe_id}"


def void_ref(number: str) -> str:
    return f"NEXA/VOID/{number}"


def customer_credit_ref(stripe_id: str) -> str:
    return f"NEXA/PAY/{stripe_id}/CREDIT"


def credit_application_ref(*, invoice_number: str, source_number: str, returned: bool) -> str:
    """An invoice takes credit from a source at most once, and gives it back at most once (its void)."""
    return f"NEXA/{'UNCREDIT' if returned else 'CREDIT'}/{invoice_number}/{source_number}"


def wallet_transaction_ref(*, invoice_number: str, wallet_id: str, returned: bool) -> str:
    """An invoice consumes a wallet at most once, and gives it back at most once (its void)."""
    return f"NEXA/{'UNWALLET' if returned else 'WALLET'}/{invoice_number}/{wallet_id}"


def _send_on_commit(posting_ids: Sequence[int]) -> None:
    """Send each posting to Odoo once the caller's transaction commits (the sweep re-sends a lost message)."""
    for posting_id in posting_ids:
        # By name: ledger.tasks calls this module, which therefore does not import it back.
        task_send_on_commit("apps.ledger.tasks.ledger_posting_send_task", posting_id)


def ledger_posting_create(*, invoice: Any = None, credit_note: Any = None, payment: Any = None,
                          refund: Any = None, void: Any = None, customer_credit: Any = None) -> LedgerPosting:
    """Write the posting of one finalized invoice, issued credit note, recorded payment, paid refund or voided
    invoice.

    A refund is posted as Odoo does a cash refund of a credit note (odoo.md §3.4-3.5): an outbound
    payment registered on the credit note's posted `out_refund`, on the Stripe receipts journal.
    A void (`void=` the voided invoice) is an `out_refund` reversing the invoice's move for what its credit
    notes have not already credited, so the ledger stops counting a voided invoice as revenue and receivable.

    Call inside the transaction that finalized/issued/recorded the document. Idempotent: a second
    call for the same document returns the existing row. When LEDGER_ENABLED, the send task is
    enqueued on commit; rows are written regardless, so enabling the ledger later posts the backlog.
    """
    if sum(doc is not None for doc in (invoice, credit_note, payment, refund, void, customer_credit)) != 1:
        raise ValueError("pass exactly one of invoice, credit_note, payment, refund, void, customer_credit")
    if invoice is not None:
        ledger_postings_create(invoices=[invoice])
        return LedgerPosting.objects.get(kind=LedgerPosting.Kind.INVOICE, invoice=invoice)
    if void is not None:
        if not void.number:
            raise ValueError(f"invoice {void.pk} has no number; only a finalized invoice is voided in the ledger")
        lookup = {"kind": LedgerPosting.Kind.VOID, "invoice": void}
        defaults = {"ref": void_ref(void.number)}
    elif customer_credit is not None:
        # Money no invoice took (apps.invoicing CustomerCredit): posted as an unmatched customer payment.
        stripe_id = customer_credit.payment.stripe_id  # one per payment (a payment request's PaymentIntent pays several)
        lookup = {"kind": LedgerPosting.Kind.CUSTOMER_CREDIT, "customer_credit": customer_credit}
        defaults = {"ref": customer_credit_ref(stripe_id), "invoice_id": customer_credit.invoice_id,
                    "stripe_payment_id": stripe_id, "payment_amount_cents": int(customer_credit.amount_cents),
                    "payment_currency": customer_credit.currency, "paid_at": customer_credit.payment.paid_at}
    elif credit_note is not None:
        lookup = {"kind": LedgerPosting.Kind.CREDIT_NOTE, "credit_note": credit_note}
        defaults = {"ref": invoice_ref(credit_note.number), "invoice_id": credit_note.invoice_id}
    elif refund is not None:
        stripe_id = str(getattr(refund, "stripe_id", "") or "")
        if not stripe_id or refund.credit_note is None:
            raise ValueError("a refund needs its stripe_id and the credit note it pays back")
        lookup = {"kind": LedgerPosting.Kind.REFUND, "stripe_payment_id": stripe_id}
        defaults = {"ref": refund_ref(stripe_id), "credit_note": refund.credit_note,
                    "invoice_id": refund.credit_note.invoice_id, "payment_amount_cents": int(refund.amount_cents),
                    "payment_currency": refund.currency, "paid_at": refund.paid_at}
    else:
        stripe_id = str(getattr(payment, "stripe_id", "") or "")
        if not stripe_id or payment.invoice is None:
            raise ValueError("a payment needs its stripe_id and the invoice it settles")
        lookup = {"kind": LedgerPosting.Kind.PAYMENT, "stripe_payment_id": stripe_id}
        defaults = {"ref": payment_ref(stripe_id), "invoice": payment.invoice,
                    "payment_amount_cents": int(payment.amount_cents), "payment_currency": payment.currency,
                    "paid_at": payment.paid_at}
    # get_or_create retries the get after an IntegrityError in a savepoint, so concurrent callers share one row.
    posting, created = LedgerPosting.objects.get_or_create(**lookup, defaults=defaults)
    if created and settings.LEDGER_ENABLED:
        _send_on_commit([posting.pk])
    return posting


def ledger_postings_create(*, invoices: Sequence[Any]) -> list[int]:
    """Write the postings of finalized invoices with one INSERT; return the ids of the rows it created.

    The invoice case of `ledger_posting_create`, set-based (the period close finalizes hundreds of invoices
    per transaction). Call inside the finalizing transaction. Idempotent per invoice: `ON CONFLICT` on the
    one-posting-per-invoice constraint keeps an existing row (a concurrent writer's too, once it commits);
    a `ref` already held by another document still raises. When LEDGER_ENABLED, the send task of each
    created row is enqueued on commit.
    """
    missing = [invoice.pk for invoice in invoices if not invoice.number]
    if missing:
        raise ValueError(f"invoices {missing} have no number; post only finalized invoices")
    if not invoices:
        return []
    now = timezone.now()
    with connection.cursor() as cursor:
        # Every NOT NULL column without a database default is listed; the rest stay NULL as the model's defaults.
        cursor.execute(
            """
            INSERT INTO ledger_ledgerposting (lago_id, created_at, updated_at, kind, ref, invoice_id, status,
                                              stripe_payment_id, payment_currency, odoo_name, attempts, last_error)
            SELECT gen_random_uuid(), %(now)s, %(now)s, %(kind)s, v.ref, v.invoice_id, %(status)s, '', '', '', 0, ''
              FROM unnest(%(ids)s::bigint[], %(refs)s::text[]) WITH ORDINALITY AS v(invoice_id, ref, n)
             ORDER BY v.n
                ON CONFLICT (invoice_id) WHERE kind = 'invoice' DO NOTHING
            RETURNING id
            """,
            {
                "now": now, "kind": LedgerPosting.Kind.INVOICE, "status": LedgerPosting.Status.PENDING,
                "ids": [invoice.pk for invoice in invoices], "refs": [invoice_ref(invoice.number) for invoice in invoices],
            },
        )
        created = sorted(row[0] for row in cursor.fetchall())
    if created and settings.LEDGER_ENABLED:
        _send_on_commit(created)
    return created


def ledger_credit_applications_create(*, applications: Sequence[Any]) -> list[int]:
    """Write one posting per saved credit application (`apps.invoicing.models.CreditApplication`); return the ids
    of the rows created.

    Customer credit moves nothing on the customer's receivable as a whole (the credit note's out_refund already
    lowered it): in Odoo an application is a reconciliation of the credit note's receivable line with the
    invoice's, and a return (the invoice voided, negative amount) removes it, so each document's residual is what
    the hub says is due on it. Call inside the transaction that wrote the applications. Idempotent per application.
    """
    created_ids = []
    for application in applications:
        if application.pk is None:
            raise ValueError("save the credit applications first")
        # The source's own document: the credit note's number, or the PaymentIntent of a customer credit.
        source_number = (application.credit_note.number if application.credit_note_id is not None
                         else application.customer_credit.payment.stripe_id)
        posting, created = LedgerPosting.objects.get_or_create(
            kind=LedgerPosting.Kind.CREDIT_APPLICATION, credit_application_id=application.pk,
            defaults={"ref": credit_application_ref(invoice_number=application.invoice.number,
                                                    source_number=source_number,
                                                    returned=application.amount_cents < 0),
                      "invoice_id": application.invoice_id,
                      "credit_note_id": application.credit_note_id,
                      "customer_credit_id": application.customer_credit_id,
                      "payment_amount_cents": int(application.amount_cents), "payment_currency": application.currency},
        )
        if created:
            created_ids.append(posting.pk)
    if created_ids and settings.LEDGER_ENABLED:
        _send_on_commit(created_ids)
    return created_ids


def ledger_wallet_transactions_create(*, transactions: Sequence[Any]) -> list[int]:
    """Write one posting per saved wallet consumption or give-back (`apps.invoicing.models.WalletTransaction` of
    reason consumption/return); return the ids of the rows created. Top-ups need none: a paid one is its credit
    invoice's posting (on the prepayment account), a granted one moves no money until consumed.

    A consumption is an out_refund reversing its invoice for the consumed amount, untaxed (the invoice was taxed
    in full): the paid part on the prepayment liability, the granted part on the prepaid-discount account. Odoo
    reconciles it with the invoice as it posts it, so the invoice's residual is the hub's amount due. A give-back
    (the invoice voided) is an out_invoice reversing that out_refund. Call inside the transaction that wrote the
    rows. Idempotent per transaction.
    """
    created_ids = []
    for row in transactions:
        if row.pk is None or row.invoice_id is None:
            raise ValueError("save the wallet transactions first; each needs the invoice it consumed")
        if row.reason not in ("consumption", "return"):
            raise ValueError(f"wallet transaction {row.pk} is a {row.reason}: only consumptions and returns post")
        posting, created = LedgerPosting.objects.get_or_create(
            kind=LedgerPosting.Kind.WALLET_TRANSACTION, wallet_transaction_id=row.pk,
            defaults={"ref": wallet_transaction_ref(invoice_number=row.invoice.number,
                                                    wallet_id=str(row.wallet.lago_id),
                                                    returned=row.reason == "return"),
                      "invoice_id": row.invoice_id, "payment_amount_cents": int(row.amount_cents),
                      "payment_currency": row.wallet.currency},
        )
        if created:
            created_ids.append(posting.pk)
    if created_ids and settings.LEDGER_ENABLED:
        _send_on_commit(created_ids)
    return created_ids


def credit_note_void_ref(*, number: str, invoice_number: str = "") -> str:
    """A note's credit is voided once; credit a voided invoice gives back to it later is voided once per invoice."""
    return f"NEXA/CNVOID/{number}" + (f"/{invoice_number}" if invoice_number else "")


def ledger_credit_note_void_create(*, credit_note: Any, amount_cents: int, application: Any = None) -> int:
    """Write the posting of credit a voided credit note took from the customer (`amount_cents`, minor units of the
    note's currency, tax included): the note's void, or with `application` (a saved `returned` CreditApplication)
    credit an invoice voided later gave back to the voided note. Return the posting's id.

    Posted as an out_invoice re-billing that part of the note pro rata over its items and taxes, reconciled with
    the note's out_refund, so the receivable and each sales tax come back by what the customer can no longer use.
    Call inside the transaction that voided the credit. Idempotent per void (and per given-back application).
    """
    if amount_cents <= 0:
        raise ValueError("only a positive amount of credit is voided")
    lookup: dict[str, Any] = {"kind": LedgerPosting.Kind.CREDIT_NOTE_VOID, "credit_note": credit_note,
                              "credit_application": application}
    posting, created = LedgerPosting.objects.get_or_create(
        **lookup,
        defaults={"ref": credit_note_void_ref(number=credit_note.number,
                                              invoice_number=application.invoice.number if application else ""),
                  "invoice_id": credit_note.invoice_id, "payment_amount_cents": int(amount_cents),
                  "payment_currency": credit_note.currency},
    )
    if created and settings.LEDGER_ENABLED:
        _send_on_commit([posting.pk])
    return posting.pk


def wallet_forfeit_ref(*, wallet_id: str, transaction_id: str) -> str:
    """A wallet forfeits its unused credit once per forfeit transaction (its expiry or termination)."""
    return f"NEXA/FORFEIT/{wallet_id}/{transaction_id}"


def ledger_wallet_forfeit_create(*, transaction: Any) -> int | None:
    """Write the posting of a wallet's forfeited credit (`apps.invoicing.models.WalletTransaction` of reason
    forfeit): its paid part leaves the prepayment liability for the breakage income account; granted credit was
    never money and posts nothing. Return the posting's id (None: no paid credit). Call inside the transaction that
    wrote the row. Idempotent."""
    if transaction.pk is None or transaction.reason != "forfeit":
        raise ValueError("only a saved forfeit transaction posts as a forfeit")
    if not transaction.paid_amount_cents:
        return None
    wallet = transaction.wallet
    posting, created = LedgerPosting.objects.get_or_create(
        kind=LedgerPosting.Kind.WALLET_FORFEIT, wallet_transaction_id=transaction.pk,
        defaults={"ref": wallet_forfeit_ref(wallet_id=str(wallet.lago_id), transaction_id=str(transaction.lago_id)),
                  "payment_amount_cents": int(transaction.paid_amount_cents), "payment_currency": wallet.currency},
    )
    if created and settings.LEDGER_ENABLED:
        _send_on_commit([posting.pk])
    return posting.pk


# -- sending ----------------------------------------------------------------------------------------
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 6 * 3600
_KIND_ORDER = Case(When(kind=LedgerPosting.Kind.INVOICE, then=Value(0)),
                   When(kind=LedgerPosting.Kind.CREDIT_NOTE, then=Value(1)),
                   When(kind=LedgerPosting.Kind.CUSTOMER_CREDIT, then=Value(2)),
                   When(kind=LedgerPosting.Kind.CREDIT_APPLICATION, then=Value(3)),
                   When(kind=LedgerPosting.Kind.WALLET_TRANSACTION, then=Value(4)),
                   When(kind=LedgerPosting.Kind.WALLET_FORFEIT, then=Value(4)),
                   When(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID, then=Value(4)),
                   When(kind=LedgerPosting.Kind.PAYMENT, then=Value(5)),
                   When(kind=LedgerPosting.Kind.VOID, then=Value(6)), default=Value(7))
_DONE = (LedgerPosting.Status.POSTED, LedgerPosting.Status.MISMATCH)


@dataclass
class BatchResult:
    claimed: int = 0
    posted: int = 0
    mismatch: int = 0
    failed: int = 0
    skipped: int = 0
    retry: int = 0  # transient error or waiting for another document; back to pending with a delay


def backoff_seconds(attempts: int) -> int:
    """Return the delay before attempt `attempts + 1`: 30 s doubling, capped at 6 h."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)


def _due(now: dt.datetime) -> Q:
    return (Q(status=LedgerPosting.Status.PENDING)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)))


def _claim(*, limit: int, ids: Sequence[int] | None = None) -> tuple[list[int], dt.datetime]:
    """Lease up to `limit` due rows (invoices first); return their ids and the lease token.

    The row locks live only inside this short transaction (SKIP LOCKED, then a conditional UPDATE);
    the lease (`claimed_until`) is what keeps other senders away during the network calls, and it
    expires, so a killed worker's rows come back by themselves.
    """
    now = timezone.now()
    lease = now + dt.timedelta(seconds=int(getattr(settings, "LEDGER_CLAIM_SECONDS", 600)))
    with transaction.atomic():
        candidates = LedgerPosting.objects.filter(_due(now))
        if ids is not None:
            candidates = candidates.filter(pk__in=list(ids))
        picked = list(candidates.order_by(_KIND_ORDER, "id").select_for_update(skip_locked=True)
                      .values_list("pk", flat=True)[:limit])
        if picked:
            LedgerPosting.objects.filter(_due(now), pk__in=picked).update(
                claimed_until=lease, attempts=F("attempts") + 1, updated_at=now)
    return picked, lease


class _Batch:
    """One claimed set of rows being sent with one client. Writes only rows still under its lease."""

    def __init__(self, client: OdooClient, lease: dt.datetime, result: BatchResult):
        self.client, self.lease, self.result = client, lease, result
        self.open: set[int] = set()
        self.refs = _mapping_refs()
        self.resolved: dict[str, dict[str, int]] = {}
        self.rounding_problems: dict[int, str] = {}  # journal id -> "" or why its company's rounding differs

    # -- row writes (conditional on the lease: a row re-claimed after expiry is not ours) ---------
    def _write(self, posting: LedgerPosting, **fields: Any) -> None:
        LedgerPosting.objects.filter(pk=posting.pk, claimed_until=self.lease).update(
            **fields, updated_at=timezone.now())

    def _close(self, posting: LedgerPosting, counter: str, **fields: Any) -> None:
        self._write(posting, claimed_until=None, **fields)
        self.open.discard(posting.pk)
        setattr(self.result, counter, getattr(self.result, counter) + 1)

    def fail(self, posting: LedgerPosting, message: str) -> None:
        logger.warning("ledger posting %s failed: %s", posting.ref, message)
        self._close(posting, "failed", status=LedgerPosting.Status.FAILED, last_error=message[:4000])

    def retry_later(self, posting: LedgerPosting, message: str, *, seconds: int | None = None) -> None:
        delay = backoff_seconds(posting.attempts) if seconds is None else seconds
        self._close(posting, "retry", last_error=message[:4000],
                    next_attempt_at=timezone.now() + dt.timedelta(seconds=delay))

    def note_move(self, posting: LedgerPosting, move_id: int) -> None:
        posting.odoo_move_id = move_id
        self._write(posting, odoo_move_id=move_id)

    def verify(self, posting: LedgerPosting, move: MoveResult, hub: tuple[int, int, int]) -> None:
        odoo = (move.amount_untaxed_cents, move.amount_tax_cents, move.amount_total_cents)
        matches = odoo == hub and move.currency == _currency(posting)
        error = "" if matches else (f"Odoo {move.name} has untaxed/tax/total {odoo} {move.currency}, "
                                    f"the hub billed {hub} {_currency(posting)}")
        if matches and posting.kind == LedgerPosting.Kind.CREDIT_NOTE:
            # Posting reconciled the note with its invoice for as much as both had open; that must be the hub's
            # offset (nothing else touches the note before it is posted: applications and refunds wait for it).
            note = posting.credit_note
            offset = move.amount_total_cents - move.amount_residual_cents
            if offset != note.offset_amount_cents:
                matches = False
                error = (f"Odoo reconciled {offset} {move.currency} of {move.name} with invoice "
                         f"{note.invoice.number}, the hub offset {note.offset_amount_cents}")
        if matches and posting.kind in (LedgerPosting.Kind.WALLET_TRANSACTION, LedgerPosting.Kind.CREDIT_NOTE_VOID):
            # The whole of it must have been reconciled with the document it reverses (the invoice's receivable,
            # or the consumption's for a give-back), else Odoo's residuals are not the hub's amounts due.
            offset = move.amount_total_cents - move.amount_residual_cents
            if offset != hub[2]:
                matches = False
                error = (f"Odoo reconciled {offset} {move.currency} of {move.name} with what it reverses, the hub "
                         f"moved {hub[2]} of wallet credit on invoice {posting.invoice.number}")
        self._close(posting, "posted" if matches else "mismatch",
                    status=LedgerPosting.Status.POSTED if matches else LedgerPosting.Status.MISMATCH,
                    odoo_move_id=move.id, odoo_name=move.name, odoo_amount_untaxed_cents=odoo[0],
                    odoo_amount_tax_cents=odoo[1], odoo_amount_total_cents=odoo[2], hub_amount_untaxed_cents=hub[0],
                    hub_amount_tax_cents=hub[1], hub_amount_total_cents=hub[2], last_error=error,
                    next_attempt_at=None, posted_at=timezone.now())

    # -- Odoo references -------------------------------------------------------------------------
    def resolve(self, needed: dict[str, set[str]]) -> None:
        for model, refs in needed.items():
            todo = sorted(refs - set(self.resolved.get(model, {})))
            if not todo:
                continue
            found = self.client.refs_resolve(model=model, refs=[mapping.odoo_ref(r) for r in todo])
            table = self.resolved.setdefault(model, {})
            for ref in todo:
                if mapping.odoo_ref(ref) in found:
                    table[ref] = found[mapping.odoo_ref(ref)]

    # -- moves -------------------------------------------------------------------------------------
    def send_moves(self, postings: list[LedgerPosting]) -> None:
        """Find, create, post and verify the moves of invoice and credit-note postings."""
        documents: dict[int, mapping.DocumentIn] = {}
        hub_totals: dict[int, tuple[int, int, int]] = {}
        for posting in postings:
            loaded = _document(posting)
            if loaded is None:
                continue
            document, totals = loaded
            if not any(line.amount_cents for line in document.lines):
                self._close(posting, "skipped", status=LedgerPosting.Status.SKIPPED, last_error="", next_attempt_at=None)
                continue
            if document.move_type == "out_refund":
                reversed_invoice = posting.invoice if posting.kind == LedgerPosting.Kind.VOID else posting.credit_note.invoice
                invoice_posting = (LedgerPosting.objects.filter(kind=LedgerPosting.Kind.INVOICE,
                                                                invoice_id=reversed_invoice.pk)
                                   .only("status", "odoo_move_id", "ref").first())
                if invoice_posting is None or invoice_posting.status not in _DONE:
                    self.retry_later(posting, f"waiting for invoice {reversed_invoice.number} to be "
                                              "posted to Odoo", seconds=BACKOFF_BASE_SECONDS)
                    continue
                # Odoo reconciles an out_refund with the invoice it reverses as it posts it, for as much as both
                # have open (C-MOVE `_post` -> `_reconcile_reversed_moves`): the hub's offset (credit note) or the
                # void's reversal is exactly that amount only if Odoo's invoice residual is the hub's amount due
                # when the note was issued. So keep the hub's order: the payments, credit applications (and their
                # returns) and earlier credit notes of the invoice go first. One note per invoice and call also
                # keeps clear of `_post` pairing `reversed_entry_id` (a de-duplicated recordset) with the notes
                # by position.
                earlier = [LedgerPosting.Kind.PAYMENT, LedgerPosting.Kind.CREDIT_NOTE,
                           LedgerPosting.Kind.CREDIT_APPLICATION, LedgerPosting.Kind.WALLET_TRANSACTION]
                if LedgerPosting.objects.filter(kind__in=earlier, invoice_id=reversed_invoice.pk,
                                                pk__lt=posting.pk, status=LedgerPosting.Status.PENDING).exists():
                    self.retry_later(posting, f"waiting for the payments or credit notes of invoice "
                                              f"{reversed_invoice.number} to be posted to Odoo",
                                     seconds=BACKOFF_BASE_SECONDS)
                    continue
                document = dataclasses.replace(document, reversed_entry_id=invoice_posting.odoo_move_id)
            documents[posting.pk], hub_totals[posting.pk] = document, totals
        by_pk = {p.pk: p for p in postings if p.pk in documents}
        if not by_pk:
            return
        self.resolve(mapping.refs_needed(self.refs, documents.values()))
        journal_id = self.resolved.get(mapping.JOURNAL, {}).get(self.refs.sales_journal)
        if journal_id is not None:  # an unresolved journal fails each posting as a mapping problem below
            if journal_id not in self.rounding_problems:
                self.rounding_problems[journal_id] = _rounding_problem(self.client, journal_id)
            if self.rounding_problems[journal_id]:  # Odoo's totals would not be the hub's: write nothing
                for posting in by_pk.values():
                    self.fail(posting, self.rounding_problems[journal_id])
                return
        customers = {p.pk: _customer(p) for p in by_pk.values()}
        partner_ids = self.client.partners_find_or_create(partners=list(
            {c.external_id: _partner_draft(c) for c in customers.values()}.values()))
        drafts: dict[int, MoveDraft] = {}
        for pk, document in documents.items():
            try:
                drafts[pk] = mapping.move_draft(document, partner_id=partner_ids[customers[pk].external_id],
                                                refs=self.refs, resolved=self.resolved)
            except mapping.MappingMissing as exc:
                self.fail(by_pk[pk], f"mapping: {exc}")
        if not drafts:
            return
        found = self.client.moves_find(refs=[d.ref for d in drafts.values()])
        to_create = [pk for pk, d in drafts.items() if d.ref not in found]
        to_post: list[int] = []
        for pk, draft in drafts.items():
            move = found.get(draft.ref)
            if move is None:
                continue
            self.note_move(by_pk[pk], move.id)
            if move.state == "draft":
                to_post.append(pk)
            elif move.state == "cancel":
                self.fail(by_pk[pk], f"Odoo move {move.id} with ref {draft.ref} is cancelled; reset it to draft "
                                     "or delete it in Odoo, then retry")
            else:
                self.verify(by_pk[pk], move, hub_totals[pk])
        to_post += self._create(to_create, by_pk, drafts)
        posted = self._post(to_post, by_pk)
        pk_of_move = {by_pk[pk].odoo_move_id: pk for pk in posted}
        for move in self.client.moves_read(ids=list(pk_of_move)) if posted else ():
            self.verify(by_pk[pk_of_move[move.id]], move, hub_totals[pk_of_move[move.id]])

    def _isolating(self, pks: list[int], by_pk: dict[int, LedgerPosting], size: int,
                   call: Callable[[list[int]], list[int] | None]) -> list[int]:
        """Run `call` on chunks; when Odoo refuses a chunk (one transaction), retry its rows one by one
        so one bad document fails alone. Transient errors propagate: the whole batch retries later."""
        done: list[int] = []
        for start in range(0, len(pks), size):
            chunk = pks[start:start + size]
            try:
                call(chunk)
                done += chunk
            except OdooUnavailable:
                raise
            except OdooError as exc:
                if len(chunk) == 1:
                    self.fail(by_pk[chunk[0]], _odoo_message(exc))
                    continue
                for pk in chunk:
                    try:
                        call([pk])
                        done.append(pk)
                    except OdooUnavailable:
                        raise
                    except OdooError as single:
                        self.fail(by_pk[pk], _odoo_message(single))
        return done

    def _create(self, pks: list[int], by_pk: dict[int, LedgerPosting], drafts: dict[int, MoveDraft]) -> list[int]:
        def create(chunk: list[int]) -> None:
            ids = self.client.moves_create(moves=[drafts[pk] for pk in chunk])
            for pk, move_id in zip(chunk, ids):
                self.note_move(by_pk[pk], move_id)

        return self._isolating(pks, by_pk, self.client.config.create_batch_size, create)

    def _post(self, pks: list[int], by_pk: dict[int, LedgerPosting]) -> list[int]:
        def post(chunk: list[int]) -> None:
            self.client.moves_post(ids=[by_pk[pk].odoo_move_id for pk in chunk])

        return self._isolating(pks, by_pk, self.client.config.post_batch_size, post)

    # -- credit applications -----------------------------------------------------------------------
    def send_applications(self, postings: list[LedgerPosting]) -> None:
        """Reconcile each applied credit note with the invoice that consumed it (or undo that for a return).

        Odoo reconciles as much as both receivable lines have open, so the amount matched equals the hub's when
        Odoo's residuals mirror the hub's (they do, as every other document posts what the hub recorded); it is
        read back and compared, a difference is a MISMATCH for staff. Looked up before acting: safe to rerun.
        """
        if not postings:
            return
        moves = dict(LedgerPosting.objects.filter(
            Q(kind=LedgerPosting.Kind.INVOICE, invoice_id__in=[p.invoice_id for p in postings])
            | Q(kind=LedgerPosting.Kind.CREDIT_NOTE, credit_note_id__in=[p.credit_note_id for p in postings]),
            status__in=_DONE,
        ).values_list("ref", "odoo_move_id"))
        credit_moves = dict(LedgerPosting.objects.filter(
            kind=LedgerPosting.Kind.CUSTOMER_CREDIT, customer_credit_id__in=[p.customer_credit_id for p in postings],
            status__in=_DONE).values_list("customer_credit_id", "odoo_move_id"))
        for posting in postings:
            invoice_move = moves.get(invoice_ref(posting.invoice.number))
            # The source's receivable: the credit note's out_refund, or the unmatched payment of a customer credit.
            note_move = (moves.get(invoice_ref(posting.credit_note.number)) if posting.credit_note_id
                         else credit_moves.get(posting.customer_credit_id))
            source = posting.credit_note.number if posting.credit_note_id else f"customer credit {posting.customer_credit_id}"
            if invoice_move is None or note_move is None:
                self.retry_later(posting, f"waiting for invoice {posting.invoice.number} and its credit source to "
                                          "be posted to Odoo", seconds=BACKOFF_BASE_SECONDS)
                continue
            self.note_move(posting, invoice_move)
            try:
                lines = self.client.receivable_lines(move_ids=[invoice_move, note_move])
                if invoice_move not in lines or note_move not in lines:
                    self.fail(posting, f"Odoo moves {invoice_move}/{note_move} have no receivable line to reconcile")
                    continue
                pair = {"debit_line_id": lines[invoice_move], "credit_line_id": lines[note_move],
                        "currency": posting.payment_currency}
                matched, partial_ids = self.client.partials_between(**pair)
                hub = int(posting.payment_amount_cents or 0)
                if hub > 0 and not partial_ids:
                    self.client.lines_reconcile(line_ids=[pair["debit_line_id"], pair["credit_line_id"]])
                    matched, partial_ids = self.client.partials_between(**pair)
                elif hub < 0 and partial_ids:
                    self.client.partials_remove(ids=partial_ids)
                    matched, partial_ids = self.client.partials_between(**pair)
            except OdooUnavailable:
                raise
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            expected = max(hub, 0)
            matches = matched == expected
            error = "" if matches else (
                f"Odoo reconciled {matched} {posting.payment_currency} between invoice {posting.invoice.number} and "
                f"{source}, the hub applied {expected}")
            self._close(posting, "posted" if matches else "mismatch",
                        status=LedgerPosting.Status.POSTED if matches else LedgerPosting.Status.MISMATCH,
                        odoo_amount_total_cents=matched, hub_amount_total_cents=expected, last_error=error,
                        next_attempt_at=None, posted_at=timezone.now())

    # -- wallet credit -----------------------------------------------------------------------------
    def send_wallet_transactions(self, postings: list[LedgerPosting]) -> None:
        """Post each wallet consumption as an out_refund on the prepayment / prepaid-discount accounts reconciled
        with its invoice, and each give-back as an out_invoice reconciled with that consumption (its invoice's
        reconciliation undone first, so the void's reversal then clears the whole invoice).

        Every step is looked up before it is done (move by ref, partials between the two receivable lines), so a
        rerun after any failure or lost answer finishes the job without doing anything twice.
        """
        for posting in postings:
            row = posting.wallet_transaction
            returned = row.reason == "return"
            invoice_move = LedgerPosting.objects.filter(
                kind=LedgerPosting.Kind.INVOICE, invoice_id=posting.invoice_id, status__in=_DONE,
            ).values_list("odoo_move_id", flat=True).first()
            consumed_move = None
            if returned:
                consumed_move = LedgerPosting.objects.filter(
                    kind=LedgerPosting.Kind.WALLET_TRANSACTION, invoice_id=posting.invoice_id, status__in=_DONE,
                    wallet_transaction__wallet_id=row.wallet_id, wallet_transaction__reason="consumption",
                ).values_list("odoo_move_id", flat=True).first()
            earlier = LedgerPosting.objects.filter(
                kind__in=(LedgerPosting.Kind.CREDIT_APPLICATION, LedgerPosting.Kind.CREDIT_NOTE), pk__lt=posting.pk,
                invoice_id=posting.invoice_id, status=LedgerPosting.Status.PENDING).exists()
            if invoice_move is None or (returned and consumed_move is None) or earlier:
                what = "its consumption" if returned else "its credit applications and notes"
                self.retry_later(posting, f"waiting for invoice {posting.invoice.number} and {what} to be posted "
                                          "to Odoo", seconds=BACKOFF_BASE_SECONDS)
                continue
            document = _wallet_document(posting)
            try:
                move = self._wallet_move(posting, document)
                if move is None:
                    continue
                lines = self.client.receivable_lines(move_ids=[invoice_move, move.id]
                                                     + ([consumed_move] if consumed_move else []))
                if returned:
                    # Odoo posts the give-back (debit) against the consumption (credit) it undoes, after taking the
                    # consumption off the invoice: then the void's reversal reconciles the invoice in full.
                    undo = {"debit_line_id": lines[invoice_move], "credit_line_id": lines[consumed_move],
                            "currency": posting.payment_currency}
                    _, partial_ids = self.client.partials_between(**undo)
                    if partial_ids:
                        self.client.partials_remove(ids=partial_ids)
                    pair = {"debit_line_id": lines[move.id], "credit_line_id": lines[consumed_move]}
                else:
                    pair = {"debit_line_id": lines[invoice_move], "credit_line_id": lines[move.id]}
                pair["currency"] = posting.payment_currency
                _, partial_ids = self.client.partials_between(**pair)
                if not partial_ids:
                    self.client.lines_reconcile(line_ids=[pair["debit_line_id"], pair["credit_line_id"]])
                move = self.client.moves_read(ids=[move.id])[0]
            except OdooUnavailable:
                raise
            except KeyError:
                self.fail(posting, "Odoo moves of the invoice or the wallet credit have no receivable line")
                continue
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            amount = int(posting.payment_amount_cents or 0)
            self.verify(posting, move, (amount, 0, amount))

    def send_wallet_forfeits(self, postings: list[LedgerPosting]) -> None:
        """Post each forfeit as a zero-total out_invoice: the unused paid credit credited to the breakage income
        account and debited to the prepayment account. Looked up by ref before it is created (reruns post once)."""
        for posting in postings:
            try:
                move = self._wallet_move(posting, _forfeit_document(posting))
            except OdooUnavailable:
                raise
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            if move is None:
                continue
            # Nothing is receivable: both lines are the amount, one each way; the prepayment account moves by it.
            self.verify(posting, move, (0, 0, 0))

    def _wallet_move(self, posting: LedgerPosting, document: mapping.DocumentIn) -> MoveResult | None:
        """Find or create, then post, the move of one wallet posting; None when the posting was closed instead."""
        found = self.client.moves_find(refs=[document.ref]).get(document.ref)
        if found is None:
            self.resolve(mapping.refs_needed(self.refs, [document]))
            customer = (posting.invoice.customer if posting.invoice_id
                        else posting.wallet_transaction.wallet.customer)
            partner_id = self.client.partners_find_or_create(
                partners=[_partner_draft(customer)])[customer.external_id]
            try:
                draft = mapping.move_draft(document, partner_id=partner_id, refs=self.refs, resolved=self.resolved)
            except mapping.MappingMissing as exc:
                self.fail(posting, f"mapping: {exc}")
                return None
            move_id = self.client.moves_create(moves=[draft])[0]
            self.note_move(posting, move_id)
            self.client.moves_post(ids=[move_id])
        else:
            self.note_move(posting, found.id)
            if found.state == "cancel":
                self.fail(posting, f"Odoo move {found.id} with ref {document.ref} is cancelled; reset it to draft "
                                   "or delete it in Odoo, then retry")
                return None
            if found.state == "draft":
                self.client.moves_post(ids=[found.id])
        return self.client.moves_read(ids=[posting.odoo_move_id])[0]

    # -- voided credit-note credit ----------------------------------------------------------------
    def send_credit_note_voids(self, postings: list[LedgerPosting]) -> None:
        """Post each voided credit as an out_invoice (the note's lines and taxes, pro rata) and reconcile it with
        the note's out_refund, whose residual is the credit the hub had left on it. Waits for the note and for the
        note's earlier applications and refunds (they lower that residual first). Looked up before acting."""
        for posting in postings:
            note = posting.credit_note
            note_move = LedgerPosting.objects.filter(
                kind=LedgerPosting.Kind.CREDIT_NOTE, credit_note_id=note.pk, status__in=_DONE,
            ).values_list("odoo_move_id", flat=True).first()
            earlier = LedgerPosting.objects.filter(
                kind__in=(LedgerPosting.Kind.CREDIT_APPLICATION, LedgerPosting.Kind.REFUND,
                          LedgerPosting.Kind.CREDIT_NOTE_VOID),
                credit_note_id=note.pk, pk__lt=posting.pk, status=LedgerPosting.Status.PENDING).exists()
            if note_move is None or earlier:
                self.retry_later(posting, f"waiting for credit note {note.number}, its applications and refunds to "
                                          "be posted to Odoo", seconds=BACKOFF_BASE_SECONDS)
                continue
            document, hub = _credit_note_void_document(posting)
            try:
                move = self._wallet_move(posting, document)
                if move is None:
                    continue
                lines = self.client.receivable_lines(move_ids=[note_move, move.id])
                pair = {"debit_line_id": lines[move.id], "credit_line_id": lines[note_move],
                        "currency": posting.payment_currency}
                _, partial_ids = self.client.partials_between(**pair)
                if not partial_ids:
                    self.client.lines_reconcile(line_ids=[pair["debit_line_id"], pair["credit_line_id"]])
                move = self.client.moves_read(ids=[move.id])[0]
            except OdooUnavailable:
                raise
            except KeyError:
                self.fail(posting, "Odoo moves of the credit note or its void have no receivable line")
                continue
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            self.verify(posting, move, hub)

    # -- customer credit ---------------------------------------------------------------------------
    def send_customer_credits(self, postings: list[LedgerPosting]) -> None:
        """Post each customer credit as an inbound payment matched to no invoice, on the Stripe receipts journal:
        the money is in Odoo as the partner's outstanding credit until credit applications reconcile it."""
        if not postings:
            return
        journal = self.refs.receipts_journal
        if journal:
            self.resolve({mapping.JOURNAL: {journal}})
        journal_id = self.resolved.get(mapping.JOURNAL, {}).get(journal) if journal else None
        partners = self.client.partners_find_or_create(partners=list(
            {p.invoice.customer.external_id: _partner_draft(p.invoice.customer) for p in postings}.values()))
        for posting in postings:
            if journal_id is None:
                self.fail(posting, f"mapping: journal stripe_receipts -> {journal or '(none)'}: not found in Odoo")
                continue
            try:
                payment_id = self.client.payment_find(ref=posting.ref)
                if payment_id is None or self.client.payment_read(payment_id=payment_id).state == "draft":
                    paid_on = timezone.localtime(posting.paid_at).date() if posting.paid_at else timezone.localdate()
                    payment_id = self.client.payment_create_unapplied(
                        partner_id=partners[posting.invoice.customer.external_id],
                        amount_cents=int(posting.payment_amount_cents or 0), currency=posting.payment_currency,
                        journal_id=journal_id, date=paid_on, ref=posting.ref)
                payment = self.client.payment_read(payment_id=payment_id)
                move_id = self.client.payment_move_id(payment_id=payment_id)
            except OdooUnavailable:
                raise
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            hub = int(posting.payment_amount_cents or 0)
            matches = payment.amount_cents == hub and payment.currency == posting.payment_currency and move_id
            self._close(posting, "posted" if matches else "mismatch",
                        status=LedgerPosting.Status.POSTED if matches else LedgerPosting.Status.MISMATCH,
                        odoo_payment_id=payment.id, odoo_move_id=move_id, odoo_name=payment.name,
                        odoo_amount_total_cents=payment.amount_cents, hub_amount_total_cents=hub, next_attempt_at=None,
                        posted_at=timezone.now(),
                        last_error="" if matches else f"Odoo {payment.name} is {payment.amount_cents} "
                                                      f"{payment.currency} ({payment.state}), the hub kept {hub} "
                                                      f"{posting.payment_currency} as credit")

    # -- payments ----------------------------------------------------------------------------------
    def send_payments(self, postings: list[LedgerPosting]) -> None:
        """Register each payment on its invoice's posted move with the Stripe receipts journal."""
        if not postings:
            return
        invoice_moves = dict(LedgerPosting.objects.filter(
            kind=LedgerPosting.Kind.INVOICE, invoice_id__in=[p.invoice_id for p in postings], status__in=_DONE,
        ).values_list("invoice_id", "odoo_move_id"))
        self._register(postings, {p.pk: invoice_moves.get(p.invoice_id) for p in postings},
                       lambda p: f"invoice {p.invoice.number}")

    def send_refunds(self, postings: list[LedgerPosting]) -> None:
        """Register each refund as an outbound payment on its credit note's posted out_refund (Stripe journal)."""
        if not postings:
            return
        note_moves = dict(LedgerPosting.objects.filter(
            kind=LedgerPosting.Kind.CREDIT_NOTE, credit_note_id__in=[p.credit_note_id for p in postings],
            status__in=_DONE).values_list("credit_note_id", "odoo_move_id"))
        self._register(postings, {p.pk: note_moves.get(p.credit_note_id) for p in postings},
                       lambda p: f"credit note {p.credit_note.number}")

    def _register(self, postings: list[LedgerPosting], moves: dict[int, int | None],
                  waiting_for: Callable[[LedgerPosting], str]) -> None:
        journal = self.refs.receipts_journal
        if journal:
            self.resolve({mapping.JOURNAL: {journal}})
        for posting in postings:
            if not journal:
                self.fail(posting, "mapping: journal stripe_receipts: no Odoo journal mapped")
                continue
            journal_id = self.resolved.get(mapping.JOURNAL, {}).get(journal)
            if journal_id is None:
                self.fail(posting, f"mapping: journal stripe_receipts -> {journal}: not found in Odoo "
                                   f"({mapping.JOURNAL})")
                continue
            move_id = moves.get(posting.pk)
            if move_id is None:
                self.retry_later(posting, f"waiting for {waiting_for(posting)} to be posted to Odoo",
                                 seconds=BACKOFF_BASE_SECONDS)
                continue
            self.note_move(posting, move_id)
            try:
                payment_id = self.client.payment_find(ref=posting.ref)
                if payment_id is None:
                    paid_on = timezone.localtime(posting.paid_at).date() if posting.paid_at else timezone.localdate()
                    payment_id = self.client.payment_register(
                        move_id=move_id, amount_cents=int(posting.payment_amount_cents or 0),
                        currency=posting.payment_currency, journal_id=journal_id, date=paid_on, ref=posting.ref)
                payment = self.client.payment_read(payment_id=payment_id)
            except OdooUnavailable:
                raise
            except OdooError as exc:
                self.fail(posting, _odoo_message(exc))
                continue
            hub = int(posting.payment_amount_cents or 0)
            matches = payment.amount_cents == hub and payment.currency == posting.payment_currency
            self._close(posting, "posted" if matches else "mismatch",
                        status=LedgerPosting.Status.POSTED if matches else LedgerPosting.Status.MISMATCH,
                        odoo_payment_id=payment.id, odoo_name=payment.name, odoo_amount_total_cents=payment.amount_cents,
                        hub_amount_total_cents=hub, next_attempt_at=None, posted_at=timezone.now(),
                        last_error="" if matches else f"Odoo {payment.name} is {payment.amount_cents} "
                                                      f"{payment.currency}, the hub {_moved(posting)} {hub} "
                                                      f"{posting.payment_currency}")


ROUNDING_LABELS = {"round_per_line": "Round per Line", "round_globally": "Round Globally"}  # Odoo's setting labels


def _rounding_problem(client: OdooClient, journal_id: int) -> str:
    """Return "" when the company owning the sales journal rounds taxes as the hub does, else what differs.

    The hub rounds each line's tax once (settings.ODOO_TAX_ROUNDING_METHOD); Odoo rounds with its company's
    tax_calculation_rounding_method, and round_globally can differ by a cent per tax (research/odoo.md §5.5).
    """
    company = client.journal_company(journal_id=journal_id)
    expected = settings.ODOO_TAX_ROUNDING_METHOD
    if company.tax_calculation_rounding_method == expected:
        return ""
    return (f"tax rounding: Odoo company {company.name!r} computes taxes with tax_calculation_rounding_method="
            f"{company.tax_calculation_rounding_method}, the hub with {expected} (ODOO_TAX_ROUNDING_METHOD), so "
            f"totals could differ by cents; nothing was sent. Set the company's Rounding Method (Accounting "
            f"settings, Taxes) to {ROUNDING_LABELS.get(expected, expected)!r} in Odoo, then retry")


def _moved(posting: LedgerPosting) -> str:
    return "refunded" if posting.kind == LedgerPosting.Kind.REFUND else "collected"


def _odoo_message(exc: OdooError) -> str:
    return f"{exc.name}: {exc.message}" if exc.name else exc.message


def _currency(posting: LedgerPosting) -> str:
    if posting.kind in (LedgerPosting.Kind.CREDIT_NOTE, LedgerPosting.Kind.CREDIT_NOTE_VOID):
        return posting.credit_note.currency
    if posting.kind in (LedgerPosting.Kind.PAYMENT, LedgerPosting.Kind.REFUND, LedgerPosting.Kind.CREDIT_APPLICATION,
                        LedgerPosting.Kind.CUSTOMER_CREDIT, LedgerPosting.Kind.WALLET_FORFEIT):
        return posting.payment_currency
    return posting.invoice.currency


def _customer(posting: LedgerPosting) -> Any:
    if posting.kind in (LedgerPosting.Kind.CREDIT_NOTE, LedgerPosting.Kind.REFUND):
        return posting.credit_note.customer
    return posting.invoice.customer


def _partner_draft(customer: Any) -> PartnerDraft:
    return PartnerDraft(ref=customer.external_id,
                        name=customer.legal_name or customer.name or customer.external_id, email=customer.email,
                        country_code=customer.country, state_code=customer.state if customer.country else "",
                        vat=customer.tax_identification_number)


def _line(fee: Any, amount_cents: int, taxes: dict[str, int] | None = None, *, name: str = "") -> mapping.LineIn:
    """One Odoo line for `amount_cents` of `fee`; `taxes` (code -> cents) when the hub's tax of this line is
    not necessarily the rate rounded on it (credit notes, voids, coupon lines), so Odoo is told any that differ."""
    metric_id = fee.charge.billable_metric_id if fee.charge_id else None
    plan_id = fee.subscription.plan_id if fee.subscription_id and metric_id is None else None
    codes = tuple(str(t["code"]) for t in (fee.applied_taxes or []) if t.get("code"))
    manual: tuple[tuple[str, int], ...] = ()
    if taxes is not None and taxes != credited_item_taxes(amount_cents, (), fee.applied_taxes):
        manual = tuple((code, taxes.get(code, 0)) for code in codes)
    # Wallet credit bought (a top-up's credit invoice, its credit notes and void): the customer's prepayment, a
    # liability until invoices consume it, never revenue.
    purpose = OdooAccountMapping.Purpose.PREPAYMENT if fee.fee_key.startswith(WALLET_FEE_PREFIX) else ""
    return mapping.LineIn(name=name or fee.name or fee.fee_type, amount_cents=amount_cents, service_id=fee.service_id,
                          service_code=fee.service.code if fee.service_id else "", metric_id=metric_id,
                          plan_id=plan_id, tax_codes=codes, manual_tax_cents=manual, account_purpose=purpose)


def _invoice_lines(invoice: Any, fees: Sequence[Any]) -> tuple[mapping.LineIn, ...]:
    """An invoice's Odoo lines: each fee at its full amount, then each coupon's share of it as its own negative
    line with the fee's taxes (coupons come off before tax, Lago's order).

    The hub taxed the fee once, net of its coupons, rounded per rate; Odoo rounds each line. The fee's line is
    taxed as Odoo rounds it, and the coupon lines carry the difference (told to Odoo as the line's tax amounts
    when it is not their own rounding), so per rate the lines' tax adds up to the hub's to the cent.
    """
    credits = [(credit, credit.applied_coupon.coupon) for credit in
               invoice.coupon_credits.select_related("applied_coupon__coupon").order_by("id")]
    lines: list[mapping.LineIn] = []
    for fee in fees:
        lines.append(_line(fee, fee.amount_cents))
        if not fee.coupons_amount_cents:
            continue
        shares = [(coupon, int(credit.fee_shares.get(str(fee.pk), 0))) for credit, coupon in credits]
        shares = [(coupon, cents) for coupon, cents in shares if cents]
        if sum(cents for _, cents in shares) != fee.coupons_amount_cents:
            shares = [(None, fee.coupons_amount_cents)]  # rows older than the shares: the fee's coupons as one
        hub = {str(t["code"]): int(t["amount_cents"]) for t in fee.applied_taxes or () if t.get("code")}
        left = {code: hub[code] - cents
                for code, cents in credited_item_taxes(fee.amount_cents, (), fee.applied_taxes).items() if code in hub}
        for index, (coupon, cents) in enumerate(shares):
            if index == len(shares) - 1:
                taxes = left
            else:
                taxes = {code: value for code, value in credited_item_taxes(-cents, (), fee.applied_taxes).items()
                         if code in left}
                left = {code: left[code] - taxes.get(code, 0) for code in left}
            label = f"Coupon {coupon.name or coupon.code}" if coupon is not None else "Coupons"
            lines.append(_line(fee, -cents, taxes, name=f"{label}: {fee.name or fee.fee_type}"))
    return tuple(lines)


def _credited_by_fee(fees: Sequence[Any]) -> dict[int, tuple[int, dict[str, int]]]:
    """Return fee id -> (cents credited, tax code -> tax cents credited) over the credit notes of `fees`
    (an invoice's fees with `credit_note_items` prefetched: the ledger reads invoicing rows through its postings)."""
    credited: dict[int, tuple[int, dict[str, int]]] = {}
    for fee in fees:
        for item in fee.credit_note_items.all():
            amount, taxes = credited.get(fee.pk, (0, {}))
            for code, cents in credited_item_taxes(item.amount_cents, item.applied_taxes, fee.applied_taxes).items():
                taxes[code] = taxes.get(code, 0) + cents
            credited[fee.pk] = (amount + item.amount_cents, taxes)
    return credited


def _void_document(posting: LedgerPosting) -> tuple[mapping.DocumentIn, tuple[int, int, int]]:
    """The reversal of a voided invoice: each fee less what credit notes credited, taxed per line and rate as
    the hub and Odoo both do (round per line), so Odoo's totals can be checked against these."""
    invoice = posting.invoice
    fees = list(invoice.fees.select_related("charge", "subscription", "service").prefetch_related("credit_note_items")
                .order_by("id"))
    credited = _credited_by_fee(fees)
    lines, untaxed, tax = [], 0, 0
    for fee in fees:
        credited_cents, credited_taxes = credited.get(fee.pk, (0, {}))
        billed = fee.amount_cents - fee.coupons_amount_cents  # what the invoice charged for it, coupons off
        left = billed - credited_cents
        if left <= 0:
            continue
        # The reversal takes exactly the tax the credit notes left on the fee, per rate.
        taxes = {item["code"]: item["amount_cents"] for item in credit_applied_taxes(
            amount_cents=left, fee_amount_cents=billed, fee_applied_taxes=fee.applied_taxes,
            credited_amount_cents=credited_cents, credited_taxes=credited_taxes)}
        lines.append(_line(fee, left, taxes))
        untaxed += left
        tax += sum(taxes.values())
    document = mapping.DocumentIn(
        ref=posting.ref, move_type="out_refund", number=f"VOID {invoice.number}",
        issuing_date=(invoice.voided_at.astimezone(ZoneInfo(invoice.customer.applicable_timezone)).date()
                      if invoice.voided_at else invoice.issuing_date),
        currency=invoice.currency, lines=tuple(lines))
    return document, (untaxed, tax, untaxed + tax)


def _document(posting: LedgerPosting) -> tuple[mapping.DocumentIn, tuple[int, int, int]] | None:
    """Return the document of an invoice/credit-note/void posting and the hub's untaxed/tax/total cents."""
    if posting.kind == LedgerPosting.Kind.VOID:
        return _void_document(posting)
    if posting.kind == LedgerPosting.Kind.INVOICE:
        invoice = posting.invoice
        fees = invoice.fees.select_related("charge", "subscription", "service").order_by("id")
        document = mapping.DocumentIn(
            ref=posting.ref, move_type="out_invoice", number=invoice.number, issuing_date=invoice.issuing_date,
            currency=invoice.currency, due_date=invoice.payment_due_date, lines=_invoice_lines(invoice, fees))
        # The document total before credits/prepaid amounts are applied: what Odoo's move carries.
        return document, (invoice.sub_total_excluding_taxes_amount_cents, invoice.taxes_amount_cents,
                          invoice.sub_total_including_taxes_amount_cents)
    note = posting.credit_note
    items = note.items.select_related("fee__charge", "fee__subscription", "fee__service").order_by("id")
    document = mapping.DocumentIn(
        ref=posting.ref, move_type="out_refund", number=note.number, issuing_date=note.issuing_date,
        currency=note.currency,
        lines=tuple(_line(item.fee, item.amount_cents,
                          credited_item_taxes(item.amount_cents, item.applied_taxes, item.fee.applied_taxes))
                    for item in items))
    return document, (note.sub_total_excluding_taxes_amount_cents, note.taxes_amount_cents, note.total_amount_cents)


def _share(cents: int, parts: Sequence[int]) -> list[int]:
    """Split `cents` over `parts` in proportion, largest remainder (ties to the first): the shares add up to
    `cents` exactly, and each is at most its part when `cents` is at most their sum."""
    total = sum(parts)
    if total <= 0:
        return [0] * len(parts)
    floors = [cents * part // total for part in parts]
    order = sorted(range(len(parts)), key=lambda i: (-(cents * parts[i] % total), i))
    for i in order[:cents - sum(floors)]:
        floors[i] += 1
    return floors


def _credit_note_split(items: Sequence[Any], cents: int) -> list[tuple[int, dict[str, int]]]:
    """Return, per item of a credit note, the part of `cents` (tax included, at most the note's total) it carries:
    (untaxed cents, tax code -> cents), in proportion to what the item credited, untaxed and per tax."""
    components: list[tuple[int, str | None, int]] = []  # (item index, tax code or None for untaxed, cents)
    for index, item in enumerate(items):
        components.append((index, None, item.amount_cents))
        taxes = credited_item_taxes(item.amount_cents, item.applied_taxes, item.fee.applied_taxes)
        components += [(index, code, value) for code, value in taxes.items()]
    shares = _share(cents, [value for _, _, value in components])
    out: list[tuple[int, dict[str, int]]] = [(0, {}) for _ in items]
    for (index, code, _), share in zip(components, shares):
        untaxed, taxes = out[index]
        if code is None:
            out[index] = (share, taxes)
        else:
            taxes[code] = share
    return out


def _credit_note_void_document(posting: LedgerPosting) -> tuple[mapping.DocumentIn, tuple[int, int, int]]:
    """The out_invoice of a voided credit: the note's lines and taxes for its share of the note's total.

    Voids of one note (its void, then credit given back to it) are cumulative shares: this posting's lines are the
    split of everything voided up to it less the split of what earlier ones voided, so together they never re-bill
    more than the note credited per item and tax. The taxes are the hub's split, told to Odoo where its own
    rounding of the line would differ (as coupon lines are), so Odoo's tax accounts move by the hub's cents.
    """
    note = posting.credit_note
    items = list(note.items.select_related("fee__charge", "fee__subscription", "fee__service").order_by("id"))
    before = sum(LedgerPosting.objects.filter(kind=LedgerPosting.Kind.CREDIT_NOTE_VOID, credit_note_id=note.pk,
                                              pk__lt=posting.pk).values_list("payment_amount_cents", flat=True))
    amount = int(posting.payment_amount_cents or 0)
    upto, earlier = _credit_note_split(items, before + amount), _credit_note_split(items, before)
    lines, untaxed, tax = [], 0, 0
    for item, (cents, taxes), (cents_before, taxes_before) in zip(items, upto, earlier):
        line_taxes = {code: value - taxes_before.get(code, 0) for code, value in taxes.items()}
        if not cents - cents_before and not any(line_taxes.values()):
            continue
        lines.append(_line(item.fee, cents - cents_before, line_taxes,
                           name=f"Voided credit: {item.fee.name or item.fee.fee_type}"))
        untaxed += cents - cents_before
        tax += sum(line_taxes.values())
    customer_tz = ZoneInfo(note.customer.applicable_timezone)
    document = mapping.DocumentIn(
        ref=posting.ref, move_type="out_invoice", number=f"VOID {note.number}",
        issuing_date=timezone.localtime(posting.created_at, customer_tz).date(), currency=note.currency,
        lines=tuple(lines))
    return document, (untaxed, tax, amount)


def _wallet_document(posting: LedgerPosting) -> mapping.DocumentIn:
    """The move of a wallet consumption (out_refund) or give-back (out_invoice): untaxed lines, the paid credit on
    the prepayment account, the granted credit on the prepaid-discount account (WalletTransaction.paid_amount_cents
    tells them apart)."""
    row = posting.wallet_transaction
    invoice = posting.invoice
    returned = row.reason == "return"
    label = "Wallet credit given back" if returned else "Wallet credit used"
    name = f"{label}: {row.wallet.name or row.wallet.lago_id}"
    service_id = row.wallet.service_id
    service_code = row.wallet.service.code
    lines = (
        mapping.LineIn(name=f"{name} (paid)", amount_cents=int(row.paid_amount_cents), service_id=service_id,
                       service_code=service_code, account_purpose=OdooAccountMapping.Purpose.PREPAYMENT),
        mapping.LineIn(name=f"{name} (granted)", amount_cents=int(row.amount_cents - row.paid_amount_cents),
                       service_id=service_id, service_code=service_code,
                       account_purpose=OdooAccountMapping.Purpose.PREPAID_DISCOUNT),
    )
    return mapping.DocumentIn(
        ref=posting.ref, move_type="out_invoice" if returned else "out_refund", number=invoice.number,
        issuing_date=(timezone.localtime(row.created_at, ZoneInfo(invoice.customer.applicable_timezone)).date()
                      if returned else invoice.issuing_date),
        currency=row.wallet.currency, lines=lines)


def _forfeit_document(posting: LedgerPosting) -> mapping.DocumentIn:
    """The move of a wallet's forfeited paid credit: the breakage income line and the prepayment line, opposite."""
    row = posting.wallet_transaction
    wallet = row.wallet
    amount = int(posting.payment_amount_cents or 0)
    name = f"Unused prepaid credit: {wallet.name or wallet.lago_id}"
    service_id, service_code = wallet.service_id, wallet.service.code
    lines = (
        mapping.LineIn(name=name, amount_cents=amount, service_id=service_id, service_code=service_code,
                       account_purpose=OdooAccountMapping.Purpose.PREPAID_BREAKAGE),
        mapping.LineIn(name=f"{name} (prepayment released)", amount_cents=-amount, service_id=service_id,
                       service_code=service_code, account_purpose=OdooAccountMapping.Purpose.PREPAYMENT),
    )
    return mapping.DocumentIn(
        ref=posting.ref, move_type="out_invoice", number=posting.ref,
        issuing_date=timezone.localtime(row.created_at, ZoneInfo(wallet.customer.applicable_timezone)).date(),
        currency=wallet.currency, lines=lines)


def _mapping_refs() -> mapping.MappingRefs:
    products: dict[tuple[int, str, int | None], mapping.ProductRef] = {}
    for row in OdooProductMapping.objects.all():
        key = ((row.service_id, "metric", row.billable_metric_id) if row.billable_metric_id
               else (row.service_id, "plan", row.plan_id) if row.plan_id else (row.service_id, "default", None))
        products[key] = mapping.ProductRef(product=row.odoo_product, account=row.odoo_income_account)
    journals = dict(OdooJournalMapping.objects.values_list("purpose", "odoo_journal"))
    accounts = {str(purpose): ref for purpose, ref in OdooAccountMapping.DEFAULTS.items()}
    accounts.update(OdooAccountMapping.objects.values_list("purpose", "odoo_account"))
    return mapping.MappingRefs(
        accounts=accounts,
        products=products, taxes=dict(OdooTaxMapping.objects.values_list("tax_code", "odoo_tax")),
        analytics=dict(OdooAnalyticMapping.objects.values_list("service_id", "odoo_analytic_account")),
        sales_journal=journals.get(OdooJournalMapping.Purpose.SALES, ""),
        receipts_journal=journals.get(OdooJournalMapping.Purpose.STRIPE_RECEIPTS, ""))


def _send_claimed(ids: list[int], lease: dt.datetime, client: OdooClient | None) -> BatchResult:
    result = BatchResult(claimed=len(ids))
    if not ids:
        return result
    postings = list(LedgerPosting.objects.filter(pk__in=ids).select_related(
        "invoice__customer", "credit_note__customer", "credit_note__invoice", "wallet_transaction__wallet__service",
        "wallet_transaction__wallet__customer",
    ).order_by(_KIND_ORDER, "id"))
    batch = _Batch(client or get_odoo_client(), lease, result)
    batch.open = {p.pk for p in postings}
    try:
        batch.send_moves([p for p in postings if p.kind == LedgerPosting.Kind.INVOICE])
        batch.send_moves([p for p in postings if p.kind == LedgerPosting.Kind.CREDIT_NOTE])
        batch.send_customer_credits([p for p in postings if p.kind == LedgerPosting.Kind.CUSTOMER_CREDIT])
        batch.send_applications([p for p in postings if p.kind == LedgerPosting.Kind.CREDIT_APPLICATION])
        batch.send_wallet_transactions([p for p in postings if p.kind == LedgerPosting.Kind.WALLET_TRANSACTION])
        batch.send_wallet_forfeits([p for p in postings if p.kind == LedgerPosting.Kind.WALLET_FORFEIT])
        batch.send_payments([p for p in postings if p.kind == LedgerPosting.Kind.PAYMENT])
        batch.send_moves([p for p in postings if p.kind == LedgerPosting.Kind.VOID])
        batch.send_refunds([p for p in postings if p.kind == LedgerPosting.Kind.REFUND])
        batch.send_credit_note_voids([p for p in postings if p.kind == LedgerPosting.Kind.CREDIT_NOTE_VOID])
    except OdooUnavailable as exc:
        # Nothing is lost: the next attempt looks every ref up again before creating anything.
        for posting in postings:
            if posting.pk in batch.open:
                batch.retry_later(posting, f"Odoo unavailable: {_odoo_message(exc)}")
    except OdooError as exc:  # a call shared by the whole batch (partners, refs) was refused
        for posting in postings:
            if posting.pk in batch.open:
                batch.fail(posting, _odoo_message(exc))
    return result


def ledger_posting_send(*, posting_id: int, client: OdooClient | None = None) -> BatchResult:
    """Send one posting to Odoo. Safe to run twice, late or concurrently: a row not due or leased
    elsewhere is left alone, and the move is looked up by ref before anything is created."""
    ids, lease = _claim(limit=1, ids=[posting_id])
    return _send_claimed(ids, lease, client)


def ledger_post_pending_batch(*, limit: int = 500, client: OdooClient | None = None) -> BatchResult:
    """Send up to `limit` due postings with batched Odoo calls (invoices, credit notes, payments, refunds)."""
    ids, lease = _claim(limit=limit)
    return _send_claimed(ids, lease, client)


def ledger_posting_retry(*, posting_id: int) -> bool:
    """Put a failed or mismatched posting back in the queue now (admin action); return whether it was."""
    updated = LedgerPosting.objects.filter(
        pk=posting_id, status__in=(LedgerPosting.Status.FAILED, LedgerPosting.Status.MISMATCH)
    ).update(status=LedgerPosting.Status.PENDING, next_attempt_at=None, claimed_until=None, attempts=0,
             updated_at=timezone.now())
    if updated and settings.LEDGER_ENABLED:
        _send_on_commit([posting_id])
    return bool(updated)


# -- mapping check ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MappingCheck:
    server: str  # "19.0 (uid 2)"
    problems: list[str]  # one line per missing mapping or Odoo record, by name
    mismatches: list[str] = dataclasses.field(default_factory=list)  # Odoo settings the hub does not match


def ledger_mapping_check(*, client: OdooClient | None = None) -> MappingCheck:
    """Check the Odoo connection and that every mapped reference exists in Odoo.

    Lists hub tax codes with no Odoo tax, services with no product, unmapped journals, and every
    mapped product, account, tax, journal and analytic account Odoo does not have; and, as a mismatch,
    a sales journal whose company rounds taxes unlike the hub. Raises OdooError when the connection or
    credentials fail.
    """
    from apps.catalog.models import Tax
    from apps.customers.models import Service

    client = client or get_odoo_client()
    info = client.check_connection()
    refs = _mapping_refs()
    problems: list[str] = []
    checks: list[tuple[str, str, str]] = []  # (model, ref, what)
    for purpose, ref in (("sales", refs.sales_journal), ("stripe_receipts", refs.receipts_journal)):
        if ref:
            checks.append((mapping.JOURNAL, ref, f"journal {purpose}"))
        else:
            problems.append(f"journal {purpose}: no Odoo journal mapped")
    billed = Tax.objects.filter(service__isnull=True).exclude(country="").exclude(component="")
    for code in sorted(set(billed.values_list("code", flat=True)) | set(refs.taxes)):
        if code in refs.taxes:
            checks.append((mapping.TAX, refs.taxes[code], f"tax {code}"))
        else:
            problems.append(f"tax {code}: no Odoo tax mapped")
    codes = dict(Service.objects.values_list("pk", "code"))
    mapped_services = {key[0] for key in refs.products}
    for pk, code in sorted(codes.items(), key=lambda item: item[1]):
        if pk not in mapped_services and Service.objects.filter(pk=pk, active=True).exists():
            problems.append(f"product for service {code}: no Odoo product mapped")
    for (service_id, scope, scope_id), product in sorted(refs.products.items(), key=lambda item: str(item[0])):
        where = f"service {codes.get(service_id, service_id)}" + (f" {scope} {scope_id}" if scope_id else "")
        checks.append((mapping.PRODUCT, product.product, f"product for {where}"))
        if product.account:
            checks.append((mapping.ACCOUNT, product.account, f"income account for {where}"))
    for purpose, ref in sorted(refs.accounts.items()):
        if ref:
            checks.append((mapping.ACCOUNT, ref, f"account {purpose}"))
        else:
            problems.append(f"account {purpose}: no Odoo account mapped")
    for service_id, ref in refs.analytics.items():
        checks.append((mapping.ANALYTIC, ref, f"analytic account for service {codes.get(service_id, service_id)}"))
    by_model: dict[str, set[str]] = {}
    for model, ref, _ in checks:
        by_model.setdefault(model, set()).add(ref)
    missing: dict[str, list[int | str]] = {
        model: client.refs_exist(model=model, refs=sorted({mapping.odoo_ref(r) for r in model_refs}, key=str))
        for model, model_refs in by_model.items()}
    for model, ref, what in checks:
        if mapping.odoo_ref(ref) in missing[model]:
            problems.append(f"{what} -> {ref}: not found in Odoo ({model})")
    mismatches: list[str] = []
    if refs.sales_journal and mapping.odoo_ref(refs.sales_journal) not in missing[mapping.JOURNAL]:
        journal_ref = mapping.odoo_ref(refs.sales_journal)
        journal_id = client.refs_resolve(model=mapping.JOURNAL, refs=[journal_ref]).get(journal_ref)
        problem = _rounding_problem(client, journal_id) if journal_id is not None else ""
        if problem:
            mismatches.append(problem)
    return MappingCheck(server=f"{info.version} (uid {info.uid})", problems=problems, mismatches=mismatches)

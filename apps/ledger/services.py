"""Ledger services: write postings (outbox) and send them to Odoo exactly once (STYLE.md §4-5)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.ledger.models import LedgerPosting


@dataclass(frozen=True)
class PaymentRecord:
    """A collected payment as the ledger needs it; any object with these attributes is accepted."""

    invoice: Any  # apps.invoicing.models.Invoice it settles
    stripe_id: str  # Stripe PaymentIntent/Charge id, unique per payment
    amount_cents: int  # minor units of `currency`
    currency: str  # ISO 4217
    paid_at: dt.datetime


def invoice_ref(number: str) -> str:
    return f"NEXA/{number}"


def payment_ref(stripe_id: str) -> str:
    return f"NEXA/PAY/{stripe_id}"


def ledger_posting_create(*, invoice: Any = None, credit_note: Any = None, payment: Any = None) -> LedgerPosting:
    """Write the posting of one finalized invoice, issued credit note or recorded payment.

    Call inside the transaction that finalized/issued/recorded the document. Idempotent: a second
    call for the same document returns the existing row. When LEDGER_ENABLED, the send task is
    enqueued on commit; rows are written regardless, so enabling the ledger later posts the backlog.
    """
    if sum(doc is not None for doc in (invoice, credit_note, payment)) != 1:
        raise ValueError("pass exactly one of invoice, credit_note, payment")
    if invoice is not None:
        if not invoice.number:
            raise ValueError(f"invoice {invoice.pk} has no number; post only finalized invoices")
        lookup = {"kind": LedgerPosting.Kind.INVOICE, "invoice": invoice}
        defaults = {"ref": invoice_ref(invoice.number)}
    elif credit_note is not None:
        lookup = {"kind": LedgerPosting.Kind.CREDIT_NOTE, "credit_note": credit_note}
        defaults = {"ref": invoice_ref(credit_note.number), "invoice_id": credit_note.invoice_id}
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
        from apps.ledger.tasks import ledger_posting_send_task

        posting_id = posting.pk
        transaction.on_commit(lambda: ledger_posting_send_task.delay(posting_id))
    return posting

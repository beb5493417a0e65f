"""Collecting invoices through Stripe: attempts, webhooks, dunning, refunds.

State rules (webhooks arrive late, twice and out of order):
- an invoice whose payment_status is `succeeded` never goes back to pending/failed;
- an attempt in a final state (succeeded, failed, canceled) never changes again, except
  failed/canceled -> succeeded (money received later wins: it is recorded on the invoice while the invoice
  owes it, and as customer credit, an alert for staff, beyond that; nothing Stripe collected is dropped);
- a canceled Checkout attempt's session is expired at Stripe (`payment_checkout_close`; the sweep retries);
- a Stripe event older than the newest one applied to its attempt is ignored, and an event id
  is applied at most once (ProcessedStripeEvent);
- only the invoice's latest attempt may move the invoice to `failed`.
No row lock is held across a Stripe call: an attempt is claimed (conditional UPDATE), Stripe is
called, then the outcome is written under the invoice lock.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from apps.core.exceptions import BillingError, NotAllowed, ValidationFailed
from apps.core.queue import task_send_on_commit  # by name: apps.payments.tasks imports this module
from apps.customers.models import Customer
from apps.invoicing.credits import customer_credit_record
from apps.invoicing.models import CreditNote, CustomerCredit, Invoice
from apps.invoicing.wallets import wallet_top_up_settle

from . import events
from . import stripe_gateway as gateway
from .models import (
    Payment,
    PaymentAttempt,
    PaymentReceipt,
    PaymentRequest,
    PaymentRequestInvoice,
    ProcessedStripeEvent,
    Refund,
    StripeCustomer,
)

log = logging.getLogger(__name__)

# An attempt claimed but without a PaymentIntent for this long is assumed crashed and re-sent
# with the same idempotency key by the sweep.
STALE_CLAIM = dt.timedelta(minutes=10)


class RefundNotAllowed(BillingError):
    code, http_status = "refund_not_allowed", 422


class PaymentProviderError(BillingError):
    """Stripe refused or could not be reached; shown to the API caller."""

    code, http_status = "payment_provider_error", 422


class PaymentProviderNotConfigured(BillingError):
    """No Stripe secret key is set (the settings placeholder): refused at once, before any write or request."""

    code, http_status = "payment_provider_not_configured", 422
    keeps_code = True  # Lago's code for it, with the detail, not the generic validation_errors

    def __init__(self) -> None:
        super().__init__(
            "Stripe is not configured: set STRIPE_TEST_SECRET_KEY or STRIPE_LIVE_SECRET_KEY",
            details={"payment_provider": ["payment_provider_not_configured"]},
        )


def _stripe_required() -> None:
    if not gateway.is_configured():
        raise PaymentProviderNotConfigured()


# --- seams to other apps -----------------------------------------------------------------


def _record_for_ledger(*, payment: Payment | None = None, refund: Refund | None = None,
                       applied_cents: int | None = None, credit: CustomerCredit | None = None) -> None:
    """The ledger seam: queue a collected payment or a paid refund for the Odoo outbox (same transaction).

    The credit note itself is posted by invoicing (out_refund); a refund is the money going back, posted
    as an outbound payment on that credit note. A payment is registered on its invoice for what the invoice took
    (`applied_cents`, default all of it); what it did not take (`credit`) is posted as an unmatched payment.
    """
    from apps.ledger.services import PaymentRecord, RefundRecord, ledger_posting_create

    if payment is not None:
        applied = payment.amount_cents if applied_cents is None else applied_cents
        if applied > 0:
            ledger_posting_create(payment=PaymentRecord(
                invoice=payment.invoice, stripe_id=payment.stripe_id, amount_cents=applied,
                currency=payment.currency, paid_at=payment.paid_at))
    if credit is not None:
        ledger_posting_create(customer_credit=credit)
    if refund is not None:
        ledger_posting_create(refund=RefundRecord(
            credit_note=refund.credit_note, stripe_id=refund.stripe_refund_id, amount_cents=refund.amount_cents,
            currency=refund.currency, paid_at=refund.refunded_at or timezone.now(),
        ))


# --- Stripe customers and checkout links -------------------------------------------------


def stripe_customer_ensure(*, customer: Customer) -> StripeCustomer:
    """Return the customer's Stripe customer, creating it on first need (idempotent)."""
    existing = StripeCustomer.objects.filter(customer=customer).first()
    if existing is not None:
        return existing
    stripe_id = gateway.customer_create(
        name=customer.legal_name or customer.name or customer.external_id,
        email=customer.email,
        hub_customer_id=customer.pk,
        external_id=customer.external_id,
        idempotency_key=f"customer-{customer.pk}",
    )
    try:
        with transaction.atomic():
            account = StripeCustomer.objects.create(customer=customer, stripe_customer_id=stripe_id)
            events.customer_payment_provider_created(customer)
    except IntegrityError:  # a concurrent call created it; Stripe deduped by the idempotency key
        account = StripeCustomer.objects.get(customer=customer)
    return account


def _return_url(kind: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}/?checkout={kind}"


def checkout_url_generate(*, customer: Customer) -> str:
    """Return a Stripe Checkout link (setup mode) that saves a card as the customer's default."""
    _stripe_required()
    try:
        return _checkout_url_generate(customer=customer)
    except gateway.StripeGatewayError as exc:
        raise PaymentProviderError(str(exc)) from exc


def _checkout_url_generate(*, customer: Customer) -> str:
    account = stripe_customer_ensure(customer=customer)
    with transaction.atomic():
        StripeCustomer.objects.filter(pk=account.pk).update(setup_sessions_created=F("setup_sessions_created") + 1)
        number = StripeCustomer.objects.values_list("setup_sessions_created", flat=True).get(pk=account.pk)
    session = gateway.checkout_setup_create(
        customer_id=account.stripe_customer_id,
        success_url=_return_url("success"),
        cancel_url=_return_url("cancel"),
        idempotency_key=f"cs-setup-{account.pk}-{number}",
    )
    with transaction.atomic():
        events.customer_checkout_url_generated(customer, checkout_url=session.url)
    return session.url


def payment_method_saved(*, stripe_customer_id: str, setup_intent_id: str) -> StripeCustomer | None:
    """A setup Checkout Session completed: make its card the customer's default for off-session charges."""
    account = StripeCustomer.objects.filter(stripe_customer_id=stripe_customer_id).first()
    if account is None or not setup_intent_id:
        return None
    payment_method_id = gateway.setup_intent_payment_method(setup_intent_id=setup_intent_id)
    if not payment_method_id:
        return account
    gateway.customer_default_payment_method_set(
        customer_id=stripe_customer_id, payment_method_id=payment_method_id
    )
    StripeCustomer.objects.filter(pk=account.pk).update(
        default_payment_method_id=payment_method_id, payment_method_saved_at=timezone.now(), updated_at=timezone.now()
    )
    account.refresh_from_db()
    return account


# --- collection --------------------------------------------------------------------------


def payment_invoice_finalized(*, invoice: Invoice) -> None:
    """Call inside the finalize transaction: collect the amount due once it commits."""
    if invoice.total_due_amount_cents > 0 and gateway.is_configured():
        task_send_on_commit("apps.payments.tasks.payment_collect_for_invoice_task", invoice.pk)


def _next_attempt(invoice: Invoice, *, kind: str, account: StripeCustomer) -> PaymentAttempt:
    """Write the invoice's next attempt. Call with the invoice locked."""
    number = (invoice.payment_attempts.aggregate(n=Max("attempt_number"))["n"] or 0) + 1
    return PaymentAttempt.objects.create(
        invoice=invoice,
        attempt_number=number,
        kind=kind,
        amount_cents=invoice.total_due_amount_cents,
        currency=invoice.currency,
        stripe_customer_id=account.stripe_customer_id,
        stripe_payment_method_id=account.default_payment_method_id,
    )


def _collectable(invoice: Invoice) -> bool:
    return (
        invoice.status == Invoice.Status.FINALIZED
        and invoice.payment_status != Invoice.PaymentStatus.SUCCEEDED
        and invoice.total_due_amount_cents > 0
    )


def payment_collect_for_invoice(*, invoice_id: int, force_new: bool = False) -> PaymentAttempt | None:
    """Collect what an invoice owes: charge the saved card off-session, or create a Checkout link.

    Idempotent: while an attempt is open (created, processing, awaiting the customer) it is
    resumed or returned instead of creating another; `force_new` (manual retry) supersedes an
    attempt waiting for the customer. Returns the attempt, or None when nothing is due.
    """
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if not _collectable(invoice):
        return None
    account = stripe_customer_ensure(customer=invoice.customer)
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
        if not _collectable(invoice):
            return None
        latest = invoice.payment_attempts.order_by("-attempt_number").first()
        superseded = None
        if latest is not None and latest.status in (PaymentAttempt.Status.CREATED, PaymentAttempt.Status.PROCESSING):
            attempt = latest  # resume (a crashed call) or leave it to the worker that claimed it
        elif latest is not None and latest.status == PaymentAttempt.Status.REQUIRES_ACTION and not force_new:
            return latest
        elif latest is not None and latest.status == PaymentAttempt.Status.REQUIRES_ACTION:
            latest.status = PaymentAttempt.Status.CANCELED
            latest.save(update_fields=["status", "updated_at"])
            superseded = latest
        else:
            account.refresh_from_db()
            kind = PaymentAttempt.Kind.OFF_SESSION if account.default_payment_method_id else PaymentAttempt.Kind.CHECKOUT
            attempt = _next_attempt(invoice, kind=kind, account=account)
    if superseded is not None:
        # Its link must stop taking money before another one is sent; the customer may have paid it meanwhile,
        # and that payment then settles the invoice (checked again below) instead of being dropped.
        try:
            payment_checkout_close(attempt_ids=[superseded.pk])
        except gateway.StripeUnavailable:
            log.warning("payment retry: could not expire the link of attempt %s; the sweep will", superseded.pk)
        return payment_collect_for_invoice(invoice_id=invoice_id)
    claimed = PaymentAttempt.objects.filter(pk=attempt.pk, status=PaymentAttempt.Status.CREATED).update(
        status=PaymentAttempt.Status.PROCESSING, updated_at=timezone.now()
    )
    if not claimed:
        return attempt
    return _attempt_send(attempt_id=attempt.pk)


def _attempt_send(*, attempt_id: int) -> PaymentAttempt:
    """Call Stripe for a claimed attempt and apply the answer. No lock is held during the call."""
    attempt = PaymentAttempt.objects.select_related("invoice").get(pk=attempt_id)
    metadata = {"attempt_id": str(attempt.pk), "invoice_id": str(attempt.invoice.lago_id)}
    try:
        if attempt.kind == PaymentAttempt.Kind.CHECKOUT:
            session = gateway.checkout_payment_create(
                customer_id=attempt.stripe_customer_id,
                amount_cents=attempt.amount_cents,
                currency=attempt.currency,
                description=f"Invoice {attempt.invoice.number}",
                success_url=_return_url("success"),
                cancel_url=_return_url("cancel"),
                metadata=metadata,
                idempotency_key=f"cs-attempt-{attempt.pk}",
            )
        else:
            result = gateway.charge_off_session(
                customer_id=attempt.stripe_customer_id,
                payment_method_id=attempt.stripe_payment_method_id,
                amount_cents=attempt.amount_cents,
                currency=attempt.currency,
                metadata=metadata,
                idempotency_key=attempt.idempotency_key,
            )
    except gateway.StripeUnavailable:
        raise  # the attempt stays `processing`; the task retries, the sweep re-sends with the same key
    except gateway.StripeGatewayError as exc:
        return _attempt_apply(attempt_id=attempt.pk, status="failed", failure_code="stripe_error", failure_message=str(exc))
    if attempt.kind == PaymentAttempt.Kind.CHECKOUT:
        with transaction.atomic():
            invoice = Invoice.objects.select_for_update().get(pk=attempt.invoice_id)
            PaymentAttempt.objects.filter(pk=attempt.pk).update(
                status=PaymentAttempt.Status.REQUIRES_ACTION,
                stripe_checkout_session_id=session.id,
                checkout_url=session.url,
                updated_at=timezone.now(),
            )
            changed = invoice.payment_url != session.url
            invoice.payment_url = session.url
            invoice.save(update_fields=["payment_url", "updated_at"])
            if changed:
                # Tell the app the invoice now has a link to pay (issue 6: "in the outbound webhook"). Lago has no
                # invoice event for it; payment_status_updated carries the invoice with payment_url (status pending).
                events.invoice_payment_status_updated(invoice)
        return PaymentAttempt.objects.get(pk=attempt.pk)
    return _attempt_apply(
        attempt_id=attempt.pk,
        status=result.status,
        payment_intent_id=result.payment_intent_id,
        charge_id=result.charge_id,
        amount_cents=result.amount_cents,
        failure_code=result.failure_code,
        failure_message=result.failure_message,
    )


def _retry_delay(failed_count: int) -> dt.timedelta | None:
    """Delay before the next dunning retry after `failed_count` failures; None = that was the last."""
    days = settings.PAYMENT_RETRY_DAYS
    if failed_count > len(days):
        return None
    return dt.timedelta(days=days[failed_count - 1])


def _attempt_apply(
    *,
    attempt_id: int,
    status: str,
    payment_intent_id: str = "",
    charge_id: str = "",
    amount_cents: int = 0,
    failure_code: str = "",
    failure_message: str = "",
    event_created: int | None = None,
) -> PaymentAttempt:
    """Apply a Stripe outcome (succeeded, failed, requires_action, processing) to an attempt and its invoice."""
    with transaction.atomic():
        attempt = PaymentAttempt.objects.get(pk=attempt_id)
        invoice = Invoice.objects.select_for_update().get(pk=attempt.invoice_id)
        attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        if event_created is not None and attempt.last_event_created and event_created < attempt.last_event_created:
            if status != "succeeded":
                return attempt  # stale event: a newer one already decided this attempt
        # Money received wins over any earlier decision: a failed or canceled (superseded, invoice voided or paid
        # another way) attempt whose payment Stripe reports as succeeded is recorded (`_payment_record`).
        final = attempt.status == PaymentAttempt.Status.SUCCEEDED
        if final or (attempt.status in (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.CANCELED)
                     and status != "succeeded"):
            if payment_intent_id and not attempt.stripe_payment_intent_id:
                attempt.stripe_payment_intent_id = payment_intent_id
                attempt.save(update_fields=["stripe_payment_intent_id", "updated_at"])
            return attempt
        now = timezone.now()
        if payment_intent_id:
            attempt.stripe_payment_intent_id = payment_intent_id
        if event_created is not None:
            attempt.last_event_created = max(event_created, attempt.last_event_created or 0)
        if status == "succeeded":
            attempt.status, attempt.completed_at, attempt.next_retry_at = PaymentAttempt.Status.SUCCEEDED, now, None
            attempt.failure_code = attempt.failure_message = ""
            attempt.save()
            _payment_record(invoice=invoice, attempt=attempt, charge_id=charge_id, amount_cents=amount_cents or attempt.amount_cents)
        elif status == "failed":
            attempt.status, attempt.completed_at = PaymentAttempt.Status.FAILED, now
            attempt.failure_code, attempt.failure_message = failure_code[:64], failure_message
            latest_number = invoice.payment_attempts.aggregate(n=Max("attempt_number"))["n"]
            failed_count = invoice.payment_attempts.filter(
                status=PaymentAttempt.Status.FAILED, attempt_number__lte=attempt.attempt_number
            ).exclude(pk=attempt.pk).count() + 1
            delay = _retry_delay(failed_count)
            attempt.next_retry_at = now + delay if delay is not None else None
            attempt.save()
            is_latest = attempt.attempt_number == latest_number
            if delay is None and is_latest and invoice.payment_status == Invoice.PaymentStatus.PENDING:
                invoice.payment_status = Invoice.PaymentStatus.FAILED
                invoice.save(update_fields=["payment_status", "updated_at"])
                events.invoice_payment_failure(
                    invoice, stripe_customer_id=attempt.stripe_customer_id, error_code=attempt.failure_code,
                    message=attempt.failure_message,
                )
                events.invoice_payment_status_updated(invoice)
        elif status == "requires_action":
            attempt.status = PaymentAttempt.Status.REQUIRES_ACTION
            attempt.failure_code = failure_code[:64]
            attempt.save()
        else:  # processing: Stripe has not decided yet; the sweep re-reads it
            attempt.save()
        return attempt


def _payment_record(*, invoice: Invoice, attempt: PaymentAttempt, charge_id: str, amount_cents: int) -> Payment:
    """Write the collected payment: the invoice takes what it still owes, the rest is customer credit.

    Nothing Stripe collected is ever dropped: money on an invoice already paid or voided, or beyond its amount
    due, becomes a `CustomerCredit` (an alert for staff), consumed by the customer's next invoices, or refunded
    through Stripe when PAYMENTS_OVERPAYMENT_HANDLING is "refund". Call with the invoice locked. Idempotent per
    PaymentIntent."""
    payment, created = Payment.objects.get_or_create(
        stripe_payment_intent_id=attempt.stripe_payment_intent_id,
        defaults={
            "invoice": invoice,
            "attempt": attempt,
            "amount_cents": amount_cents,
            "currency": attempt.currency,
            "stripe_charge_id": charge_id,
            "paid_at": timezone.now(),
        },
    )
    if not created:
        return payment
    _payment_apply(invoice=invoice, payment=payment, keep=attempt)
    return payment


def _payment_apply(*, invoice: Invoice, payment: Payment, keep: PaymentAttempt | None) -> None:
    """Settle an invoice with a payment just written (Stripe's or manual: one money path). Call with the invoice
    locked: the invoice takes what it owes, the rest is customer credit; the receipt, the ledger posting, the wallet
    top-up and the webhook are written in the same transaction. `keep`: the attempt that collected it."""
    payment_receipt_create(payment=payment)
    owed = invoice.total_due_amount_cents  # what credit notes offset is not owed any more
    applied = max(0, min(payment.amount_cents, owed)) if invoice.status == Invoice.Status.FINALIZED else 0
    previous = invoice.payment_status
    if applied:
        invoice.total_paid_amount_cents += applied
        if invoice.total_due_amount_cents == 0:
            invoice.payment_status = Invoice.PaymentStatus.SUCCEEDED
            invoice.payment_overdue = False
        invoice.save(update_fields=["total_paid_amount_cents", "payment_status", "payment_overdue", "updated_at"])
    credit = None
    if payment.amount_cents > applied:
        reason = (CustomerCredit.Reason.INVOICE_VOIDED if invoice.status == Invoice.Status.VOIDED
                  else CustomerCredit.Reason.OVERPAID if applied else CustomerCredit.Reason.INVOICE_PAID)
        refund = settings.PAYMENTS_OVERPAYMENT_HANDLING == "refund"
        credit = customer_credit_record(payment=payment, invoice=invoice, amount_cents=payment.amount_cents - applied,
                                        reason=reason, refund=refund)
        if refund:
            task_send_on_commit("apps.payments.tasks.customer_credit_refund_task", credit.pk)
    if invoice.total_due_amount_cents == 0 or invoice.status != Invoice.Status.FINALIZED:
        # Other open attempts of this invoice are no longer needed; their links are expired at Stripe.
        _attempts_cancel(invoice, keep=keep)
    _record_for_ledger(payment=payment, applied_cents=applied, credit=credit)
    if invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED and previous != invoice.payment_status:
        wallet_top_up_settle(invoice=invoice)  # a paid top-up credits its wallet, once (apps/invoicing/wallets.py)
    if invoice.payment_status != previous:
        events.invoice_payment_status_updated(invoice)


RECEIPT_SERIES = "{prefix}-RCPT-{year}"


def payment_receipt_create(*, payment: Payment) -> PaymentReceipt:
    """Number the payment's receipt (Lago's payment receipt), in the transaction that records the payment: a
    gapless series per year (`NEXA-RCPT-2026-000001`), given back if the payment rolls back."""
    from apps.invoicing.numbering import invoice_numbers_take

    series = RECEIPT_SERIES.format(prefix=settings.INVOICE_NUMBER_PREFIX, year=payment.paid_at.year)
    [(sequential_id, number)] = invoice_numbers_take(series=series, count=1)
    return PaymentReceipt.objects.create(payment=payment, series=series, sequential_id=sequential_id, number=number)


class PaymentNotAllowed(BillingError):
    """Lago's 403 for a manual payment on an invoice that cannot take one (not finalized)."""

    code, http_status = "feature_unavailable", 403


@transaction.atomic
def payment_manual_create(*, invoice_id: int, amount_cents: int, reference: str,
                          paid_at: dt.datetime | None = None) -> Payment:
    """Record money received outside Stripe (a cheque, a wire) on a finalized invoice: Lago's manual payment.

    Through the same path as a Stripe payment (`_payment_apply`): the invoice's total paid and payment status,
    its receipt, the Odoo posting and the `invoice.payment_status_updated` webhook, in this transaction. Refused
    (422 `amount_cents: greater_than`, as Lago) when it exceeds what the invoice still owes, checked under the
    invoice's lock: the same payment posted twice, or two posted at once, can never together pay more than was
    owed. Not deduplicated by reference (Lago records every call; two cheques may share one).
    Open Stripe attempts stop (they ask for the old amount); what is left due is collected again on commit.
    """
    invoice = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
    if invoice.status != Invoice.Status.FINALIZED:
        raise PaymentNotAllowed(f"invoice {invoice.lago_id} is {invoice.status}: only a finalized invoice takes a payment")
    if amount_cents > invoice.total_due_amount_cents:
        raise ValidationFailed(f"{amount_cents} exceeds the {invoice.total_due_amount_cents} due",
                               details={"amount_cents": ["greater_than"]})
    payment = Payment.objects.create(
        invoice=invoice, payment_type=Payment.PaymentType.MANUAL, amount_cents=amount_cents, currency=invoice.currency,
        reference=reference, paid_at=paid_at or timezone.now(),
    )
    had_open = invoice.payment_attempts.filter(status__in=PaymentAttempt.OPEN_STATUSES).exists()
    _payment_apply(invoice=invoice, payment=payment, keep=None)
    if had_open and invoice.total_due_amount_cents > 0:
        _attempts_cancel(invoice)
        if gateway.is_configured():
            task_send_on_commit("apps.payments.tasks.payment_collect_for_invoice_task", invoice.pk)
    return payment


def _attempts_cancel(invoice: Invoice, *, keep: PaymentAttempt | None = None) -> list[int]:
    """Cancel an invoice's open attempts and stop its dunning; expire their Checkout links once this commits.
    Call with the invoice locked. Returns the attempts canceled."""
    others = invoice.payment_attempts.exclude(pk=keep.pk) if keep is not None else invoice.payment_attempts.all()
    ids = list(others.filter(status__in=PaymentAttempt.OPEN_STATUSES).values_list("pk", flat=True))
    now = timezone.now()
    if ids:
        PaymentAttempt.objects.filter(pk__in=ids).update(status=PaymentAttempt.Status.CANCELED, next_retry_at=None,
                                                         updated_at=now)
    others.exclude(next_retry_at=None).update(next_retry_at=None, updated_at=now)
    checkout = list(PaymentAttempt.objects.filter(pk__in=ids, kind=PaymentAttempt.Kind.CHECKOUT)
                    .exclude(stripe_checkout_session_id="").values_list("pk", flat=True))
    if checkout and gateway.is_configured():
        task_send_on_commit("apps.payments.tasks.payment_checkout_close_task", checkout)
    return ids


def payment_invoice_voided(*, invoice: Invoice) -> None:
    """Call inside the void transaction, invoice locked: stop collecting it and expire its open Checkout links
    at Stripe once the void commits. A payment that still lands on it is kept as customer credit."""
    _attempts_cancel(invoice)


def payment_checkout_close(*, attempt_ids: list[int]) -> None:
    """Expire at Stripe the Checkout Sessions of canceled attempts, so the customer can no longer pay a link the
    hub gave up on. A session found paid is recorded like any payment (`_attempt_apply`): on the invoice while it
    owes it, as customer credit otherwise. Safe to rerun; StripeUnavailable leaves the rest for the sweep."""
    attempts = PaymentAttempt.objects.filter(
        pk__in=attempt_ids, status=PaymentAttempt.Status.CANCELED, kind=PaymentAttempt.Kind.CHECKOUT,
        checkout_closed_at__isnull=True).exclude(stripe_checkout_session_id="").order_by("pk")
    for attempt in attempts:
        session = gateway.checkout_session_expire(session_id=attempt.stripe_checkout_session_id)
        if session.status == "complete" and session.payment_status == "paid":
            _attempt_apply(attempt_id=attempt.pk, status="succeeded", payment_intent_id=session.payment_intent_id,
                           amount_cents=session.amount_total)
        if session.status in ("expired", "complete"):
            PaymentAttempt.objects.filter(pk=attempt.pk).update(checkout_closed_at=timezone.now(),
                                                                updated_at=timezone.now())


# --- Stripe webhooks (called by stripe_handlers) --------------------------------------------


def _event_claim(event_id: str, event_type: str) -> bool:
    """Return True the first time an event id is seen. Call inside the webhook transaction."""
    _, created = ProcessedStripeEvent.objects.get_or_create(stripe_event_id=event_id, defaults={"event_type": event_type})
    return created


def payment_intent_event_apply(*, event_id: str, event_type: str, event_created: int, payment_intent: dict) -> PaymentAttempt | None:
    """Apply a verified payment_intent.* event to the attempt that created the PaymentIntent."""
    if not _event_claim(event_id, event_type):
        return None
    attempt = _attempt_for_intent(payment_intent)
    if attempt is None:
        return None  # not ours (or a Checkout PI; checkout.session.completed links it)
    result = gateway.charge_result_from_event_object(payment_intent)
    if event_type == "payment_intent.payment_failed" and result.status != "failed":
        result = gateway.ChargeResult("failed", result.payment_intent_id, failure_code="payment_failed")
    return _attempt_apply(
        attempt_id=attempt.pk,
        status=result.status,
        payment_intent_id=result.payment_intent_id,
        charge_id=result.charge_id,
        amount_cents=result.amount_cents,
        failure_code=result.failure_code,
        failure_message=result.failure_message,
        event_created=event_created,
    )


def _attempt_for_intent(payment_intent: dict) -> PaymentAttempt | None:
    attempt = PaymentAttempt.objects.filter(stripe_payment_intent_id=payment_intent["id"]).first()
    if attempt is not None:
        return attempt
    # The webhook may beat the response that carried the PI id: find the attempt by metadata.
    attempt_id = (payment_intent.get("metadata") or {}).get("attempt_id", "")
    if attempt_id.isdigit():
        return PaymentAttempt.objects.filter(pk=int(attempt_id), stripe_payment_intent_id="").first()
    return None


def checkout_session_event_apply(*, event_id: str, event_type: str, event_created: int, session: dict) -> None:
    """Apply a verified checkout.session.completed: save the card (setup) or record the payment."""
    if not _event_claim(event_id, event_type) or session.get("status") != "complete":
        return
    if session.get("mode") == "setup":
        payment_method_saved(stripe_customer_id=session.get("customer") or "", setup_intent_id=session.get("setup_intent") or "")
        return
    request_id = (session.get("metadata") or {}).get("payment_request_id", "")
    if request_id:
        if session.get("payment_status") == "paid":
            pi = session.get("payment_intent")
            payment_request_settle(payment_request_id=request_id, session_id=session["id"],
                                   payment_intent_id=pi.get("id") if isinstance(pi, dict) else (pi or ""),
                                   amount_cents=int(session.get("amount_total") or 0))
        return
    attempt = PaymentAttempt.objects.filter(stripe_checkout_session_id=session["id"]).first()
    if attempt is None or session.get("payment_status") != "paid":
        return
    pi = session.get("payment_intent")
    _attempt_apply(
        attempt_id=attempt.pk,
        status="succeeded",
        payment_intent_id=pi.get("id") if isinstance(pi, dict) else (pi or ""),
        amount_cents=int(session.get("amount_total") or attempt.amount_cents),
        event_created=event_created,
    )


# --- sweep, dunning, manual retry -----------------------------------------------------------


def payment_pending_sweep(*, now: dt.datetime | None = None) -> int:
    """Re-read open attempts from Stripe so that a missed webhook is never a lost payment. Returns the count checked."""
    now = now or timezone.now()
    checked = 0
    if not gateway.is_configured():
        return 0
    unclosed = list(PaymentAttempt.objects.filter(
        status=PaymentAttempt.Status.CANCELED, kind=PaymentAttempt.Kind.CHECKOUT, checkout_closed_at__isnull=True,
    ).exclude(stripe_checkout_session_id="").order_by("pk").values_list("pk", flat=True)[:500])
    for attempt_id in unclosed:  # links the hub gave up on whose expiry did not reach Stripe
        checked += 1
        try:
            payment_checkout_close(attempt_ids=[attempt_id])
        except gateway.StripeUnavailable:
            log.warning("payment sweep: Stripe unavailable for attempt %s", attempt_id)
    checked += _payment_requests_sweep()
    open_attempts = PaymentAttempt.objects.filter(status__in=PaymentAttempt.OPEN_STATUSES).order_by("pk")[:500]
    for attempt in open_attempts:
        checked += 1
        try:
            if attempt.stripe_payment_intent_id:
                result = gateway.payment_intent_get(payment_intent_id=attempt.stripe_payment_intent_id)
                _attempt_apply(
                    attempt_id=attempt.pk,
                    status=result.status,
                    charge_id=result.charge_id,
                    amount_cents=result.amount_cents,
                    failure_code=result.failure_code,
                    failure_message=result.failure_message,
                )
            elif attempt.stripe_checkout_session_id:
                session = gateway.checkout_session_get(session_id=attempt.stripe_checkout_session_id)
                if session.status == "complete" and session.payment_status == "paid":
                    _attempt_apply(attempt_id=attempt.pk, status="succeeded", payment_intent_id=session.payment_intent_id,
                                   amount_cents=session.amount_total)
            elif attempt.updated_at < now - STALE_CLAIM:
                # Claimed but no answer stored (crash): re-send with the same idempotency key.
                PaymentAttempt.objects.filter(pk=attempt.pk, stripe_payment_intent_id="").update(updated_at=now)
                _attempt_send(attempt_id=attempt.pk)
        except gateway.StripeUnavailable:
            log.warning("payment sweep: Stripe unavailable for attempt %s", attempt.pk)
    return checked


def payment_retry_due(*, now: dt.datetime | None = None) -> list[int]:
    """Dunning: retry failed attempts whose next_retry_at has passed. Returns the invoice ids retried."""
    now = now or timezone.now()
    retried: list[int] = []
    if not gateway.is_configured():
        return retried
    due = PaymentAttempt.objects.filter(status=PaymentAttempt.Status.FAILED, next_retry_at__lte=now).order_by("next_retry_at")
    for attempt in due[:200]:
        # Claim: only one worker clears the schedule and retries.
        if not PaymentAttempt.objects.filter(pk=attempt.pk, next_retry_at=attempt.next_retry_at).update(next_retry_at=None):
            continue
        payment_collect_for_invoice(invoice_id=attempt.invoice_id)
        retried.append(attempt.invoice_id)
    return retried


def payment_retry(*, invoice: Invoice) -> PaymentAttempt | None:
    """Retry an invoice's payment at once (API retry_payment, admin action)."""
    _stripe_required()
    if invoice.status != Invoice.Status.FINALIZED:
        raise NotAllowed("invoice is not finalized", code="invalid_status")
    if invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED:
        raise NotAllowed("invoice is already paid", code="invoice_payment_already_succeeded")
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        locked.payment_attempts.filter(next_retry_at__isnull=False).update(next_retry_at=None)
        if locked.payment_status == Invoice.PaymentStatus.FAILED:
            locked.payment_status = Invoice.PaymentStatus.PENDING  # dunning restarts; a new failure is final again only at the end
            locked.save(update_fields=["payment_status", "updated_at"])
            events.invoice_payment_status_updated(locked)
    try:
        return payment_collect_for_invoice(invoice_id=invoice.pk, force_new=True)
    except gateway.StripeUnavailable:
        # The attempt stays `processing`; the sweep re-sends it with the same idempotency key.
        log.warning("retry_payment: Stripe unavailable for invoice %s", invoice.pk)
        return None


def invoice_payment_url(*, invoice: Invoice) -> str:
    """Return a Checkout link paying the invoice's amount due, creating it if needed."""
    _stripe_required()
    try:
        return _invoice_payment_url(invoice=invoice)
    except gateway.StripeGatewayError as exc:
        raise PaymentProviderError(str(exc)) from exc


def _invoice_payment_url(*, invoice: Invoice) -> str:
    if invoice.status != Invoice.Status.FINALIZED or invoice.payment_status == Invoice.PaymentStatus.SUCCEEDED:
        raise NotAllowed("invoice cannot be paid", code="invoice_not_payable")
    open_checkout = invoice.payment_attempts.filter(
        kind=PaymentAttempt.Kind.CHECKOUT, status=PaymentAttempt.Status.REQUIRES_ACTION
    ).exclude(checkout_url="").order_by("-attempt_number").first()
    if open_checkout is not None:
        return open_checkout.checkout_url
    account = stripe_customer_ensure(customer=invoice.customer)
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if not _collectable(locked):
            raise NotAllowed("invoice cannot be paid", code="invoice_not_payable")
        attempt = _next_attempt(locked, kind=PaymentAttempt.Kind.CHECKOUT, account=account)
        attempt.status = PaymentAttempt.Status.PROCESSING
        attempt.save(update_fields=["status"])
    return _attempt_send(attempt_id=attempt.pk).checkout_url


# --- refunds -------------------------------------------------------------------------------


def credit_note_refund(*, credit_note_id: int) -> Refund | None:
    """Pay back a credit note's refund amount through Stripe. Idempotent per credit note.

    Refuses (RefundNotAllowed) when the invoice has no collected payment or the refunds would
    exceed it: Stripe test servers do not check over-refunds, so the check lives here.
    """
    with transaction.atomic():
        note = CreditNote.objects.select_for_update().get(pk=credit_note_id)
        if note.refund_amount_cents <= 0:
            return None
        existing = Refund.objects.filter(credit_note=note).first()
        if existing is not None and existing.status != Refund.Status.FAILED:
            if existing.status == Refund.Status.SUCCEEDED or existing.stripe_refund_id:
                return existing
        # Only Stripe's money is paid back through Stripe: a cheque or a wire (manual) is refunded outside the hub.
        payment = (Payment.objects.select_for_update()
                   .filter(invoice_id=note.invoice_id, payment_type=Payment.PaymentType.PROVIDER)
                   .order_by("-paid_at").first())
        if payment is None:
            raise RefundNotAllowed("the invoice has no collected payment to refund")
        already = (
            Refund.objects.filter(payment=payment)
            .exclude(status=Refund.Status.FAILED)
            .exclude(credit_note=note)
            .aggregate(s=Sum("amount_cents"))["s"]
            or 0
        )
        if already + note.refund_amount_cents > payment.amount_cents:
            raise RefundNotAllowed(
                f"refund of {note.refund_amount_cents} exceeds the {payment.amount_cents - already} left on the payment"
            )
        if existing is None:
            existing = Refund.objects.create(
                credit_note=note, payment=payment, amount_cents=note.refund_amount_cents, currency=payment.currency
            )
        else:
            if existing.status == Refund.Status.FAILED:
                existing.tries += 1  # a new Stripe request, so a new idempotency key
            existing.status, existing.failure_message = Refund.Status.PENDING, ""
            existing.save(update_fields=["status", "failure_message", "tries", "updated_at"])
        note.refund_status = CreditNote.RefundStatus.PENDING
        note.save(update_fields=["refund_status", "updated_at"])
    refund = existing
    try:
        result = gateway.refund_create(
            payment_intent_id=payment.stripe_payment_intent_id,
            amount_cents=refund.amount_cents,
            idempotency_key=f"refund-{refund.pk}-{refund.tries}",
            metadata={"credit_note_id": str(note.lago_id)},
        )
    except gateway.StripeUnavailable:
        raise
    except gateway.StripeGatewayError as exc:
        with transaction.atomic():
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, failure_message=str(exc))
            CreditNote.objects.filter(pk=note.pk).update(refund_status=CreditNote.RefundStatus.FAILED)
        refund.refresh_from_db()
        return refund
    status = {"succeeded": Refund.Status.SUCCEEDED, "pending": Refund.Status.PENDING}.get(result.status, Refund.Status.FAILED)
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk).update(
            stripe_refund_id=result.id,
            status=status,
            refunded_at=timezone.now() if status == Refund.Status.SUCCEEDED else None,
            updated_at=timezone.now(),
        )
        CreditNote.objects.filter(pk=note.pk).update(refund_status=status, updated_at=timezone.now())
        refund.refresh_from_db()
        if status == Refund.Status.SUCCEEDED:
            _record_for_ledger(refund=refund)
    return refund


def payment_credit_note_created(*, credit_note: CreditNote) -> None:
    """Call inside the credit-note transaction, its invoice locked: refund through Stripe once it commits; when the
    note lowered what the invoice owes (its offset), stop asking for the old amount.

    A settled invoice is collected no more (as when paid). One still partly due keeps an off-session charge already
    under way (whatever it collects beyond the amount due becomes customer credit, `_payment_record`), but its links
    waiting for the customer are canceled, expired at Stripe, and replaced by one for the new amount due."""
    if credit_note.refund_amount_cents > 0 and gateway.is_configured():
        task_send_on_commit("apps.payments.tasks.credit_note_refund_task", credit_note.pk)
    if credit_note.offset_amount_cents <= 0:
        return
    invoice = credit_note.invoice
    if invoice.total_due_amount_cents == 0:
        _attempts_cancel(invoice)
        events.invoice_payment_status_updated(invoice)
        return
    waiting = invoice.payment_attempts.filter(status=PaymentAttempt.Status.REQUIRES_ACTION)
    if not waiting.exists():
        return
    ids = list(waiting.values_list("pk", flat=True))
    PaymentAttempt.objects.filter(pk__in=ids).update(status=PaymentAttempt.Status.CANCELED, updated_at=timezone.now())
    checkout = list(PaymentAttempt.objects.filter(pk__in=ids, kind=PaymentAttempt.Kind.CHECKOUT)
                    .exclude(stripe_checkout_session_id="").values_list("pk", flat=True))
    if gateway.is_configured():
        if checkout:
            task_send_on_commit("apps.payments.tasks.payment_checkout_close_task", checkout)
        task_send_on_commit("apps.payments.tasks.payment_collect_for_invoice_task", invoice.pk)


# --- customer credit refunds (PAYMENTS_OVERPAYMENT_HANDLING = "refund") ----------------------------------------------


def customer_credit_refund(*, credit_id: int) -> Refund | None:
    """Pay a `refunding` customer credit back on the card it came from. Idempotent per credit.

    A refused refund keeps the money as available credit (consumed by the next invoices), with the failed Refund
    row beside it for staff; StripeUnavailable leaves it `refunding` for the task to retry with the same key.
    """
    with transaction.atomic():
        credit = CustomerCredit.objects.select_for_update().select_related("payment").get(pk=credit_id)
        existing = Refund.objects.filter(customer_credit=credit).first()
        if credit.status != CustomerCredit.Status.REFUNDING:
            return existing
        if existing is None:
            existing = Refund.objects.create(customer_credit=credit, payment=credit.payment,
                                             amount_cents=credit.balance_amount_cents, currency=credit.currency)
        elif existing.status == Refund.Status.SUCCEEDED or existing.stripe_refund_id:
            return existing
    refund = existing
    try:
        result = gateway.refund_create(
            payment_intent_id=credit.payment.stripe_payment_intent_id, amount_cents=refund.amount_cents,
            idempotency_key=f"refund-credit-{refund.pk}-{refund.tries}", metadata={"customer_credit_id": str(credit.lago_id)},
        )
    except gateway.StripeUnavailable:
        raise
    except gateway.StripeGatewayError as exc:
        with transaction.atomic():
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, failure_message=str(exc),
                                                       updated_at=timezone.now())
            CustomerCredit.objects.filter(pk=credit.pk, status=CustomerCredit.Status.REFUNDING).update(
                status=CustomerCredit.Status.AVAILABLE, updated_at=timezone.now())
        refund.refresh_from_db()
        return refund
    status = {"succeeded": Refund.Status.SUCCEEDED, "pending": Refund.Status.PENDING}.get(result.status, Refund.Status.FAILED)
    now = timezone.now()
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk).update(
            stripe_refund_id=result.id, status=status, refunded_at=now if status == Refund.Status.SUCCEEDED else None,
            updated_at=now)
        if status == Refund.Status.SUCCEEDED:
            CustomerCredit.objects.filter(pk=credit.pk).update(status=CustomerCredit.Status.REFUNDED,
                                                               balance_amount_cents=0, updated_at=now)
        elif status == Refund.Status.FAILED:
            CustomerCredit.objects.filter(pk=credit.pk).update(status=CustomerCredit.Status.AVAILABLE, updated_at=now)
    refund.refresh_from_db()
    return refund


# --- saved payment methods (Lago's /customers/{id}/payment_methods) ------------------------


def payment_method_remove(*, customer: Customer, payment_method_id: str) -> None:
    """Detach a saved card from the customer at Stripe (it is never charged again) and mirror it in dj-stripe; when
    it was the default, invoices fall back to Checkout links until another is set. Stripe first, then the row: no
    lock is held across the call, and a retry after a lost answer detaches nothing twice (Stripe refuses)."""
    from djstripe.models import PaymentMethod

    _stripe_required()
    try:
        detached = gateway.payment_method_detach(payment_method_id=payment_method_id)
    except gateway.StripeGatewayError as exc:
        raise PaymentProviderError(str(exc)) from exc
    with transaction.atomic():
        PaymentMethod.sync_from_stripe_data(detached)
        StripeCustomer.objects.filter(customer=customer, default_payment_method_id=payment_method_id).update(
            default_payment_method_id="", updated_at=timezone.now())


def payment_method_default_set(*, customer: Customer, payment_method_id: str) -> StripeCustomer:
    """Make a saved payment method the one invoices are charged to (Stripe's invoice default too). Idempotent."""
    _stripe_required()
    account = StripeCustomer.objects.get(customer=customer)
    if account.default_payment_method_id == payment_method_id:
        return account
    try:
        gateway.customer_default_payment_method_set(customer_id=account.stripe_customer_id,
                                                    payment_method_id=payment_method_id)
    except gateway.StripeGatewayError as exc:
        raise PaymentProviderError(str(exc)) from exc
    StripeCustomer.objects.filter(pk=account.pk).update(default_payment_method_id=payment_method_id,
                                                        payment_method_saved_at=timezone.now(), updated_at=timezone.now())
    account.refresh_from_db()
    return account


# --- payment requests (Lago's dunning: overdue invoices in one payment) ---------------------


class PaymentRequestNotAllowed(BillingError):
    code, http_status = "not_allowed", 405


def _overdue(invoice: Invoice, today: dt.date) -> bool:
    """Finalized, owing, unpaid, and past its due date (or flagged overdue)."""
    return (invoice.status == Invoice.Status.FINALIZED and invoice.total_due_amount_cents > 0
            and invoice.payment_status != Invoice.PaymentStatus.SUCCEEDED
            and (invoice.payment_overdue or (invoice.payment_due_date is not None and invoice.payment_due_date < today)))


def payment_request_create(*, link, invoices: list[Invoice], email: str = "") -> PaymentRequest:
    """Group a customer's overdue invoices into one Stripe payment: a Checkout Session for what they owe together.

    Lago's refusals (`payment_requests/create_service.rb`), 405: `invoices_not_overdue`,
    `invoices_have_different_currencies`. The session is created before the row, keyed by the request's own id (no
    lock is held across the call; a retry of a lost answer gets the same session); `payment_request.created` is
    sent with the row. Paid, it settles each invoice once (`payment_request_settle`).
    """
    import uuid as uuid_module

    _stripe_required()
    today = timezone.now().date()
    if any(not _overdue(invoice, today) for invoice in invoices):
        raise PaymentRequestNotAllowed("an invoice is not overdue", code="invoices_not_overdue")
    if len({invoice.currency for invoice in invoices}) > 1:
        raise PaymentRequestNotAllowed("currencies differ", code="invoices_have_different_currencies")
    owed = {invoice.pk: invoice.total_due_amount_cents for invoice in invoices}
    currency, lago_id = invoices[0].currency, uuid_module.uuid4()
    account = stripe_customer_ensure(customer=link.customer)
    try:
        session = gateway.checkout_payment_create(
            customer_id=account.stripe_customer_id, amount_cents=sum(owed.values()), currency=currency,
            description=f"{len(invoices)} overdue invoice(s): " + ", ".join(i.number for i in invoices)[:200],
            success_url=_return_url("paid"), cancel_url=_return_url("canceled"),
            metadata={"payment_request_id": str(lago_id)}, idempotency_key=f"payment-request-{lago_id}",
        )
    except gateway.StripeGatewayError as exc:
        raise PaymentProviderError(str(exc)) from exc
    with transaction.atomic():
        request = PaymentRequest.objects.create(
            lago_id=lago_id, customer=link.customer, account_link=link, email=email or link.customer.email,
            amount_cents=sum(owed.values()), currency=currency, stripe_checkout_session_id=session.id,
            checkout_url=session.url)
        PaymentRequestInvoice.objects.bulk_create(
            PaymentRequestInvoice(payment_request=request, invoice_id=invoice_id, amount_cents=amount)
            for invoice_id, amount in sorted(owed.items()))
        events.payment_request_event(request, "payment_request.created")
    return request


def _payment_requests_sweep() -> int:
    """Re-read pending payment requests' sessions: one paid while its webhook was lost is settled (once)."""
    pending = list(PaymentRequest.objects.filter(payment_status=PaymentRequest.PaymentStatus.PENDING)
                   .exclude(stripe_checkout_session_id="").order_by("pk")[:500])
    for request in pending:
        try:
            session = gateway.checkout_session_get(session_id=request.stripe_checkout_session_id)
        except gateway.StripeUnavailable:
            log.warning("payment sweep: Stripe unavailable for payment request %s", request.lago_id)
            continue
        if session.status == "complete" and session.payment_status == "paid":
            payment_request_settle(payment_request_id=str(request.lago_id), session_id=session.id,
                                   payment_intent_id=session.payment_intent_id, amount_cents=session.amount_total)
    return len(pending)


def payment_request_settle(*, payment_request_id: str, session_id: str, payment_intent_id: str,
                           amount_cents: int) -> PaymentRequest | None:
    """Record a paid payment request exactly once: one Payment per invoice, for what it owed when asked, with the
    session's PaymentIntent, through the same path as any payment (`_payment_apply`: an invoice paid meanwhile
    keeps the money as customer credit, never counted twice). A second event, a late sweep or two workers find the
    request already succeeded under its lock and do nothing. Locks: the request, then its invoices by id."""
    with transaction.atomic():
        request = (PaymentRequest.objects.select_for_update()
                   .filter(lago_id=payment_request_id, stripe_checkout_session_id=session_id).first())
        if request is None or request.payment_status == PaymentRequest.PaymentStatus.SUCCEEDED:
            return request
        if amount_cents and amount_cents != request.amount_cents:
            # Checkout charges the request's amount; a difference is Stripe's to explain, and the integrity check
            # I6 shows it to staff (the PaymentIntent's amount against what the hub recorded).
            log.error("payment request %s: Stripe received %s, the request was for %s", request.lago_id,
                      amount_cents, request.amount_cents)
        items = list(request.items.order_by("invoice_id"))
        locked = {invoice.pk: invoice for invoice in
                  Invoice.objects.select_for_update().filter(pk__in=[item.invoice_id for item in items]).order_by("pk")}
        now = timezone.now()
        for item in items:
            invoice = locked[item.invoice_id]
            payment = Payment.objects.create(
                invoice=invoice, payment_request=request, amount_cents=item.amount_cents, currency=request.currency,
                stripe_payment_intent_id=payment_intent_id, paid_at=now)
            _payment_apply(invoice=invoice, payment=payment, keep=None)
        request.payment_status, request.paid_at = PaymentRequest.PaymentStatus.SUCCEEDED, now
        request.stripe_payment_intent_id = payment_intent_id
        request.save(update_fields=["payment_status", "paid_at", "stripe_payment_intent_id", "updated_at"])
        events.payment_request_event(request, "payment_request.payment_status_updated")
    return request

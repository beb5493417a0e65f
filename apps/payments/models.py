"""Money collected through Stripe: Stripe customers, payment attempts, payments, refunds.

Amounts are integer minor units of the row's `currency` (ISO 4217, upper case); Stripe gets
them lower-cased inside stripe_gateway.py. dj-stripe keeps its own mirror of Stripe objects;
these rows are the hub's decisions (what was attempted for which invoice, what was collected).
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from encrypted_fields.fields import EncryptedCharField

from apps.core.models import TimeStampedModel


class StripeCustomer(TimeStampedModel):
    """The Stripe customer of a hub Customer, created on first need."""

    customer = models.OneToOneField("customers.Customer", on_delete=models.PROTECT, related_name="stripe_account")
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    # Card charged off-session; blank = no saved card, invoices get a Checkout payment link.
    default_payment_method_id = models.CharField(max_length=255, blank=True)
    payment_method_saved_at = models.DateTimeField(null=True, blank=True)
    # Counts setup Checkout Sessions created; part of each session's idempotency key.
    setup_sessions_created = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.stripe_customer_id


class PaymentAttempt(TimeStampedModel):
    """One try at collecting an invoice: one PaymentIntent or one Checkout Session.

    A failed PaymentIntent is never re-confirmed; each retry is a new attempt with its own
    idempotency key (`pi-attempt-<pk>`).
    """

    class Kind(models.TextChoices):
        OFF_SESSION = "off_session"  # saved card charged by the hub
        CHECKOUT = "checkout"  # Stripe Checkout link paid by the customer

    class Status(models.TextChoices):
        CREATED = "created"  # row written, Stripe not called yet
        PROCESSING = "processing"  # claimed; Stripe called or being called
        REQUIRES_ACTION = "requires_action"  # customer must authenticate / pay through the link
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"  # superseded (e.g. invoice paid by another attempt)

    OPEN_STATUSES = (Status.CREATED, Status.PROCESSING, Status.REQUIRES_ACTION)

    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="payment_attempts")
    attempt_number = models.PositiveIntegerField()  # 1, 2, ... per invoice
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED, db_index=True)
    amount_cents = models.BigIntegerField()  # minor units of `currency`
    currency = models.CharField(max_length=3)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=1000, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    # Unix time of the newest Stripe event applied; older events for this attempt are stale.
    last_event_created = models.BigIntegerField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True, db_index=True)  # dunning; null = none planned
    completed_at = models.DateTimeField(null=True, blank=True)
    # A canceled Checkout attempt: when Stripe confirmed its session can take no more money (expired at the hub's
    # request, or found complete and recorded). Null on a canceled one = still to expire (the sweep retries).
    checkout_closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("invoice", "attempt_number")
        constraints = [
            models.UniqueConstraint(fields=("invoice", "attempt_number"), name="uniq_payment_attempt_number"),
            models.UniqueConstraint(
                fields=("stripe_payment_intent_id",),
                condition=~Q(stripe_payment_intent_id=""),
                name="uniq_payment_attempt_pi",
            ),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_attempt_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}#{self.attempt_number} {self.status}"

    @property
    def idempotency_key(self) -> str:
        return f"pi-attempt-{self.pk}"


class Payment(TimeStampedModel):
    """Money collected for an invoice: one succeeded PaymentIntent, or a payment recorded by hand (a cheque, a
    wire: Lago's manual payment, POST /payments). Both settle the invoice through `services._payment_apply`."""

    class PaymentType(models.TextChoices):  # Lago's values
        PROVIDER = "provider"  # collected through Stripe
        MANUAL = "manual"  # recorded by the app or staff; the money came outside Stripe

    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="payments")
    # The Stripe attempt that collected it; none for a manual payment, nor for one of a payment request's invoices
    # (one PaymentIntent paid them all: one Payment per invoice, each with that PaymentIntent).
    attempt = models.OneToOneField(PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="payment")
    payment_request = models.ForeignKey("PaymentRequest", on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="payments")
    payment_type = models.CharField(max_length=16, choices=PaymentType.choices, default=PaymentType.PROVIDER)
    amount_cents = models.BigIntegerField()  # minor units of `currency`
    currency = models.CharField(max_length=3)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)  # unique when set (Meta)
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=40, blank=True)  # manual: the cheque or wire reference (Lago: 40 at most)
    paid_at = models.DateTimeField()

    class Meta:
        ordering = ("-paid_at",)
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_positive"),
            # A PaymentIntent pays an invoice once (a payment request's pays each of its invoices once).
            models.UniqueConstraint(fields=("stripe_payment_intent_id", "invoice"),
                                    condition=~Q(stripe_payment_intent_id=""), name="uniq_payment_stripe_pi"),
            # A Stripe payment has its PaymentIntent and its attempt or payment request; a manual one has none of
            # them, and a reference.
            models.CheckConstraint(
                condition=(Q(payment_type="provider") & ~Q(stripe_payment_intent_id="")
                           & (Q(attempt__isnull=False) | Q(payment_request__isnull=False)))
                | (Q(payment_type="manual") & Q(stripe_payment_intent_id="") & Q(attempt__isnull=True)
                   & Q(payment_request__isnull=True) & ~Q(reference="")),
                name="payment_kind_fields",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_payment_intent_id or self.reference}: {self.amount_cents} {self.currency}"

    @property
    def stripe_id(self) -> str:
        """The id the ledger posts the payment under, one per payment: its PaymentIntent (with the invoice when a
        payment request's PaymentIntent paid several), or the hub's id of a manual payment."""
        if self.payment_request_id is not None:
            return f"{self.stripe_payment_intent_id}/{self.invoice.lago_id}"
        return self.stripe_payment_intent_id or f"MANUAL-{self.lago_id}"


class PaymentRequest(TimeStampedModel):
    """Lago's payment request: a customer's overdue invoices grouped into one Stripe payment (a Checkout Session for
    their total). Paid once: the session's payment settles each invoice with what it owed when asked
    (`services.payment_request_settle`)."""

    class PaymentStatus(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_requests")
    # The service that asked, through its view of the customer (what the API shows it).
    account_link = models.ForeignKey("customers.AccountLink", on_delete=models.PROTECT, related_name="payment_requests")
    email = models.CharField(max_length=255, blank=True)
    amount_cents = models.BigIntegerField()  # minor units of `currency`: Σ of its invoices' amounts due when asked
    currency = models.CharField(max_length=3)
    payment_status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=1000, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    invoices = models.ManyToManyField("invoicing.Invoice", through="PaymentRequestInvoice", related_name="+")

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_request_positive")]

    def __str__(self) -> str:
        return f"payment request {self.lago_id}: {self.amount_cents} {self.currency} {self.payment_status}"


class PaymentRequestInvoice(models.Model):
    payment_request = models.ForeignKey(PaymentRequest, on_delete=models.CASCADE, related_name="items")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="payment_request_items")
    amount_cents = models.BigIntegerField()  # what the invoice owed when the request was made, minor units

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("payment_request", "invoice"), name="uniq_payment_request_invoice"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_request_invoice_positive"),
        ]


class PaymentReceipt(TimeStampedModel):
    """Lago's payment receipt: one per payment, numbered in its own gapless series when the payment is recorded."""

    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="receipt")
    series = models.CharField(max_length=32)  # NEXA-RCPT-2026: a counter of invoicing.NumberSequence
    sequential_id = models.PositiveIntegerField()  # position in `series` (integrity I5 checks it gapless)
    number = models.CharField(max_length=64, unique=True)  # NEXA-RCPT-2026-000001

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.UniqueConstraint(fields=("series", "sequential_id"), name="uniq_payment_receipt_seq")]

    def __str__(self) -> str:
        return self.number


class Refund(TimeStampedModel):
    """Money paid back through Stripe: a credit note's refund amount, or a customer credit (a payment no invoice
    took) when PAYMENTS_OVERPAYMENT_HANDLING is "refund"."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    credit_note = models.OneToOneField(
        "invoicing.CreditNote", on_delete=models.PROTECT, null=True, blank=True, related_name="refund"
    )
    customer_credit = models.OneToOneField(
        "invoicing.CustomerCredit", on_delete=models.PROTECT, null=True, blank=True, related_name="refund"
    )
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.BigIntegerField()  # minor units of `currency`
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=255, blank=True)
    failure_message = models.TextField(blank=True)
    tries = models.PositiveIntegerField(default=1)  # Stripe requests made; part of the idempotency key
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="refund_positive"),
            models.CheckConstraint(
                condition=(Q(credit_note__isnull=False, customer_credit__isnull=True)
                           | Q(credit_note__isnull=True, customer_credit__isnull=False)),
                name="refund_one_source",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.credit_note_id or self.customer_credit_id}: {self.amount_cents} {self.currency} {self.status}"


class ProcessedStripeEvent(models.Model):
    """Stripe event ids already applied to payments (dedupe on top of dj-stripe's Event table)."""

    stripe_event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=128)
    processed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.stripe_event_id} {self.event_type}"


class StripeWebhookSecret(TimeStampedModel):
    """The signing secret of one of dj-stripe's webhook endpoints, encrypted at rest.

    dj-stripe keeps the secret in plain text (`djstripe_webhookendpoint.secret`) and its model cannot be changed
    without forking it, so the secret moves here as soon as dj-stripe saves it (payments.endpoint_secrets) and
    dj-stripe's column is left blank; the webhook view (payments.views) verifies with this copy.
    """

    endpoint = models.OneToOneField("djstripe.WebhookEndpoint", on_delete=models.CASCADE, related_name="+")
    # Fernet, keyed from SECRET_KEY and FIELD_ENCRYPTION_SALT (settings).
    secret = EncryptedCharField(max_length=256)

    def __str__(self) -> str:
        return f"secret of webhook endpoint {self.endpoint_id}"

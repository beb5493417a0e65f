"""Invoices, their fees, credit notes and the gapless number sequences.

Amounts billed or credited are integer minor units of the row's `currency`; precise
(unrounded) amounts are Decimals in major units. A finalized invoice never changes:
corrections go through credit notes or void.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import models
from django.db.models import F, Q

from apps.core.models import TimeStampedModel
from apps.core.money import from_minor_units

QUANTITY = {"max_digits": 30, "decimal_places": 12}


class Invoice(TimeStampedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        FINALIZED = "finalized"
        VOIDED = "voided"
        # A draft the app deleted (Lago's DELETE /invoices/{id}): never finalized, hidden from the API; its fees stay,
        # so the close counts its period as billed and never bills it again (as Lago, the app chose not to bill it).
        DELETED = "deleted"

    class PaymentStatus(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class InvoiceType(models.TextChoices):
        # Lago's values. The hub issues subscription (close, immediate billing) and one_off (POST /invoices);
        # credit (wallet top-ups) and progressive_billing (usage thresholds) come with those features, add_on is
        # Lago's legacy name for one_off.
        SUBSCRIPTION = "subscription"
        ADD_ON = "add_on"
        CREDIT = "credit"
        ONE_OFF = "one_off"
        PROGRESSIVE_BILLING = "progressive_billing"

    # No index of its own: Meta's (customer, issuing_date) index serves lookups by customer.
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="invoices", db_index=False)
    invoice_type = models.CharField(max_length=24, choices=InvoiceType.choices, default=InvoiceType.SUBSCRIPTION)
    # Indexed in Meta: `db_index=True` on a CharField also builds a LIKE (pattern_ops) index, which no
    # status query uses and which every invoice insert and finalization paid for (bench/close.py).
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    payment_status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    currency = models.CharField(max_length=3)  # ISO 4217
    # Exactly-once key of a period close: one subscription invoice per customer, billing date and currency.
    # Byte-order collation: the unique index (Meta) then serves the close's prefix lookups
    # (`close_key__startswith`) too, with no second LIKE index to maintain per insert.
    close_key = models.CharField(max_length=128, null=True, blank=True, db_collation="C")
    series = models.CharField(max_length=32, blank=True)  # numbering series, e.g. "NEXA-2026"
    number = models.CharField(max_length=64, blank=True)  # set once, at finalization
    sequential_id = models.PositiveIntegerField(null=True, blank=True)  # position in `series`
    issuing_date = models.DateField()
    payment_due_date = models.DateField(null=True, blank=True)
    net_payment_term = models.PositiveIntegerField(default=0)  # days
    # A draft is finalized automatically once this instant passes (grace period for late usage).
    grace_until = models.DateTimeField(null=True, blank=True)
    fees_amount_cents = models.BigIntegerField(default=0)
    # Coupons taken off the fees before tax (CouponCredit rows, Σ of the fees' coupons_amount_cents), at
    # finalization of a subscription invoice.
    coupons_amount_cents = models.BigIntegerField(default=0)
    # fees_amount_cents - coupons_amount_cents: the taxed base.
    sub_total_excluding_taxes_amount_cents = models.BigIntegerField(default=0)
    taxes_amount_cents = models.BigIntegerField(default=0)
    sub_total_including_taxes_amount_cents = models.BigIntegerField(default=0)
    # Credit-note credit applied at finalization (CreditApplication rows); comes off after tax.
    credit_notes_amount_cents = models.BigIntegerField(default=0)
    # Customer credit from payments no invoice took (CustomerCredit), applied at finalization after credit notes'
    # (Lago's field for prepaid credit, which also comes off after tax).
    prepaid_credit_amount_cents = models.BigIntegerField(default=0)
    # sub_total_including_taxes - credit_notes_amount_cents - prepaid_credit_amount_cents: what the customer is
    # asked to pay.
    total_amount_cents = models.BigIntegerField(default=0)
    total_paid_amount_cents = models.BigIntegerField(default=0)
    # Settled by credit notes issued on this invoice while it was due (their `offset_amount_cents`): Lago's
    # `total_offsetted_credit_note_amount_cents`, Odoo's reconciliation of each out_refund with the invoice it
    # reverses. The invoice's total is unchanged; what is left due is total - paid - offset.
    offset_amount_cents = models.BigIntegerField(default=0)
    finalized_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # Voided with `generate_credit_note` (Lago): its credit notes, not a reversal, take it off the books (the
    # requested note and a voided note for the rest), so I1 keeps counting it as billed; docs/ledger.md.
    voided_with_credit_notes = models.BooleanField(default=False)
    payment_overdue = models.BooleanField(default=False)
    # Lago's lost payment dispute (POST /invoices/{id}/lose_dispute): set once, on a finalized or voided invoice.
    payment_dispute_lost_at = models.DateTimeField(null=True, blank=True)
    # Stripe Checkout link for customers without a saved card (payments app sets it).
    payment_url = models.URLField(max_length=1000, blank=True)
    # Lago's invoice metadata, set by the app (PUT /invoices/{id}): [{"lago_id", "key", "value", "created_at"}].
    metadata = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-issuing_date", "-id")
        constraints = [
            models.UniqueConstraint(fields=("close_key",), name="uniq_invoice_close_key"),
            models.UniqueConstraint(fields=("number",), condition=~Q(number=""), name="uniq_invoice_number"),
            models.UniqueConstraint(
                fields=("series", "sequential_id"), condition=Q(sequential_id__isnull=False), name="uniq_invoice_seq"
            ),
            models.CheckConstraint(  # a deleted draft was never numbered
                condition=Q(status__in=("draft", "deleted")) | ~Q(number=""), name="finalized_invoice_has_number"
            ),
            # Money owed to the customer is a credit note, never a negative invoice (Odoo refuses one, nothing
            # refunds it). Created NOT VALID (migration 0005): rows finalized before it are left as they were.
            models.CheckConstraint(
                condition=Q(status="draft") | Q(total_amount_cents__gte=0), name="finalized_invoice_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=("customer", "issuing_date")),
            models.Index(fields=("status",), name="invoice_status_idx"),
            models.Index(fields=("payment_status",), name="invoice_payment_status_idx"),
            # The admin list's default order (-issuing_date, -id) and its sort by total, each a page of 100 read
            # from an index instead of a sort of every invoice joined to its customer (bench/admin.py). Invoices
            # are issued on today's date, so the first one grows on its right edge.
            models.Index(fields=("issuing_date", "id"), name="invoice_issuing_date_idx"),
            models.Index(fields=("total_amount_cents", "id"), name="invoice_total_idx"),
            # The close asks, per batch, what progressive billing invoices its customers have (usually none).
            models.Index(fields=("customer",), condition=Q(invoice_type="progressive_billing"),
                         name="invoice_progressive_idx"),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.lago_id}"

    @property
    def total_due_amount_cents(self) -> int:
        return max(self.total_amount_cents - self.total_paid_amount_cents - self.offset_amount_cents, 0)


class InvoiceSubscription(models.Model):
    """Which subscription period an invoice bills (Lago's `billing_periods[]`)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="billing_periods")
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="invoice_periods")
    from_datetime = models.DateTimeField()
    to_datetime = models.DateTimeField()  # exclusive
    charges_from_datetime = models.DateTimeField()
    charges_to_datetime = models.DateTimeField()  # exclusive
    invoicing_reason = models.CharField(max_length=32, default="subscription_periodic")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("invoice", "subscription"), name="uniq_invoice_subscription")
        ]


class Fee(TimeStampedModel):
    """One invoice line. `fee_key` makes each (subscription, charge, period) billable once."""

    class FeeType(models.TextChoices):
        SUBSCRIPTION = "subscription"  # plan base fee
        CHARGE = "charge"  # usage
        ADD_ON = "add_on"  # one-off
        CREDIT = "credit"  # unused in-advance fee returned on upgrade/termination
        COMMITMENT = "commitment"  # charge minimum true-up

    # Fees are read by invoice, never listed by creation time: no created_at index to maintain per fee.
    created_at = models.DateTimeField(auto_now_add=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="fees")
    # Unique in Meta, byte-order collation: keys are ASCII, compared with memcmp instead of the
    # locale's strcoll, and no LIKE index beside the unique one (the close writes ~6 fees per subscription).
    fee_key = models.CharField(max_length=255, db_collation="C")
    fee_type = models.CharField(max_length=16, choices=FeeType.choices)
    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, null=True, blank=True, related_name="fees"
    )
    charge = models.ForeignKey("catalog.Charge", on_delete=models.PROTECT, null=True, blank=True, related_name="fees")
    # The charge's filter whose events this fee billed (Lago's one fee per filter); null: the charge's own price.
    # No index: fees are read by invoice, and a filter's fees only to refuse deleting it for good.
    charge_filter = models.ForeignKey(
        "catalog.ChargeFilter", on_delete=models.PROTECT, null=True, blank=True, db_index=False, related_name="fees"
    )
    # The pricing group this fee billed ({key: value or None}: Lago's fee `grouped_by`); {} for an ungrouped charge.
    grouped_by = models.JSONField(default=dict, blank=True)
    add_on_code = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255)  # what the line says
    description = models.TextField(blank=True)
    currency = models.CharField(max_length=3)
    units = models.DecimalField(**QUANTITY, default=0)
    total_aggregated_units = models.DecimalField(**QUANTITY, default=0)
    events_count = models.BigIntegerField(default=0)
    precise_unit_amount = models.DecimalField(**QUANTITY, default=0)  # major units
    precise_amount = models.DecimalField(**QUANTITY, default=0)  # major units, unrounded
    amount_cents = models.BigIntegerField(default=0)  # precise_amount rounded once, half-up
    # Coupons' share of this fee, minor units (Σ of its CouponCredit shares); taxes are on amount - coupons.
    coupons_amount_cents = models.BigIntegerField(default=0)
    taxes_amount_cents = models.BigIntegerField(default=0)
    taxes_rate = models.DecimalField(max_digits=9, decimal_places=5, default=0)  # percent, summed over taxes
    # [{"code", "name", "rate", "amount_cents"}] per tax applied to this line (Odoo round_per_line).
    applied_taxes = models.JSONField(default=list, blank=True)
    amount_details = models.JSONField(default=dict, blank=True)
    from_datetime = models.DateTimeField(null=True, blank=True)
    to_datetime = models.DateTimeField(null=True, blank=True)  # exclusive
    # Usage that arrived after its period was invoiced, billed on a later invoice.
    is_adjustment = models.BooleanField(default=False)

    class Meta:
        ordering = ("invoice", "id")
        constraints = [models.UniqueConstraint(fields=("fee_key",), name="uniq_fee_key")]

    def __str__(self) -> str:
        return f"{self.name}: {self.amount_cents} {self.currency}"


class InvoiceAppliedTax(models.Model):
    """Per-rate tax summary of an invoice: the sum of its lines' rounded taxes."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="applied_taxes")
    tax_code = models.CharField(max_length=255)
    tax_name = models.CharField(max_length=255)
    tax_rate = models.DecimalField(max_digits=9, decimal_places=5)  # percent
    base_amount_cents = models.BigIntegerField()  # lines this tax applies to
    amount_cents = models.BigIntegerField()  # tax

    class Meta:
        constraints = [models.UniqueConstraint(fields=("invoice", "tax_code"), name="uniq_invoice_tax_code")]


class NumberSequence(models.Model):
    """A gapless counter per series; taken under a row lock, only at finalization."""

    series = models.CharField(max_length=64, unique=True)
    last_value = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.series}: {self.last_value}"


class CreditNote(TimeStampedModel):
    class Reason(models.TextChoices):
        DUPLICATED_CHARGE = "duplicated_charge"
        PRODUCT_UNSATISFACTORY = "product_unsatisfactory"
        ORDER_CHANGE = "order_change"
        ORDER_CANCELLATION = "order_cancellation"
        FRAUDULENT_CHARGE = "fraudulent_charge"
        OTHER = "other"

    class CreditStatus(models.TextChoices):
        AVAILABLE = "available"
        CONSUMED = "consumed"
        VOIDED = "voided"

    class RefundStatus(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=64, unique=True)
    sequential_id = models.PositiveIntegerField()  # per invoice
    issuing_date = models.DateField()
    reason = models.CharField(max_length=32, choices=Reason.choices)
    description = models.TextField(blank=True)
    currency = models.CharField(max_length=3)
    sub_total_excluding_taxes_amount_cents = models.BigIntegerField(default=0)
    taxes_amount_cents = models.BigIntegerField(default=0)
    total_amount_cents = models.BigIntegerField(default=0)
    credit_amount_cents = models.BigIntegerField(default=0)  # kept as customer credit
    refund_amount_cents = models.BigIntegerField(default=0)  # paid back through Stripe
    # Taken off its invoice's amount due when issued (Lago's offset; Odoo reconciles the out_refund with the
    # invoice it reverses as it is posted): min(amount due, total), before any refund or credit.
    offset_amount_cents = models.BigIntegerField(default=0)
    balance_amount_cents = models.BigIntegerField(default=0)  # credit not yet consumed
    # Credit the customer lost when the note's credit was voided (Lago's PUT /credit_notes/{id}/void): its balance
    # then, plus credit an invoice voided later gave back to it (minor units). Never consumed or refunded.
    voided_amount_cents = models.BigIntegerField(default=0)
    voided_at = models.DateTimeField(null=True, blank=True)
    credit_status = models.CharField(max_length=16, choices=CreditStatus.choices, blank=True)
    refund_status = models.CharField(max_length=16, choices=RefundStatus.choices, blank=True)
    # Lago's credit-note metadata, set by the app (PUT /credit_notes/{id}): {"key": "value" or null}.
    metadata = models.JSONField(default=dict, blank=True)
    # The in-advance credit of an upgrade/termination is created by the close, not a person.
    created_by_close = models.BooleanField(default=False)
    # Exactly-once key of such a credit (the planner's `sub:<id>:credit:<period>`), and its subscription, whose
    # billed keys the close reads back. Byte-order collation, as Invoice.close_key.
    close_key = models.CharField(max_length=128, null=True, blank=True, db_collation="C")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes",
    )

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=("invoice", "sequential_id"), name="uniq_credit_note_seq"),
            models.CheckConstraint(
                condition=Q(credit_amount_cents__gte=0) & Q(refund_amount_cents__gte=0), name="credit_note_positive"
            ),
            models.CheckConstraint(condition=Q(offset_amount_cents__gte=0), name="credit_note_offset_positive"),
            models.UniqueConstraint(fields=("close_key",), name="uniq_credit_note_close_key"),
            models.CheckConstraint(
                condition=Q(balance_amount_cents__gte=0) & Q(balance_amount_cents__lte=models.F("credit_amount_cents")),
                name="credit_note_balance_within_credit",
            ),
            models.CheckConstraint(
                condition=Q(voided_amount_cents__gte=0)
                & Q(voided_amount_cents__lte=models.F("credit_amount_cents") - models.F("balance_amount_cents")),
                name="credit_note_voided_within_credit",
            ),
        ]
        # Finalization looks up each customer's credit still available: a small partial index, empty for most.
        indexes = [
            models.Index(fields=("customer", "currency"), condition=Q(credit_status="available"),
                         name="credit_note_available_idx"),
        ]

    def __str__(self) -> str:
        return self.number


class CreditNoteItem(TimeStampedModel):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="items")
    fee = models.ForeignKey(Fee, on_delete=models.PROTECT, related_name="credit_note_items")
    amount_cents = models.BigIntegerField()  # tax excluded
    taxes_amount_cents = models.BigIntegerField(default=0)  # Σ applied_taxes[].amount_cents
    # [{"code", "name", "rate", "amount_cents"}] per rate of the fee, rounded cumulatively over the fee's credits
    # (taxes.credit_applied_taxes) so a fee's credits never take more tax per rate than it was charged.
    # Empty on items written before it was stored: those were taxed per line (taxes.credited_item_taxes).
    applied_taxes = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="credit_note_item_positive")]


class CustomerCredit(TimeStampedModel):
    """Money Stripe collected that no invoice took: paid on an invoice already paid (a superseded link, a second
    attempt) or voided, or beyond the amount due. Never dropped: it is credit the customer's next invoices consume
    like credit-note credit (credits.py), or it is paid back (settings.PAYMENTS_OVERPAYMENT_HANDLING = "refund").
    Each row is an alert for staff until someone acknowledges it in the admin."""

    class Reason(models.TextChoices):
        INVOICE_PAID = "invoice_paid"  # the invoice had been paid another way
        INVOICE_VOIDED = "invoice_voided"
        OVERPAID = "overpaid"  # more than the invoice still owed

    class Status(models.TextChoices):
        AVAILABLE = "available"  # consumed by the customer's next invoices
        CONSUMED = "consumed"
        REFUNDING = "refunding"  # being paid back through Stripe; not consumable
        REFUNDED = "refunded"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="customer_credits")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="overpayment_credits")  # paid for
    payment = models.OneToOneField("payments.Payment", on_delete=models.PROTECT, related_name="customer_credit")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    currency = models.CharField(max_length=3)
    amount_cents = models.BigIntegerField()  # minor units of `currency`: the part of the payment kept as credit
    balance_amount_cents = models.BigIntegerField()  # not consumed (nor refunded) yet
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    acknowledged_at = models.DateTimeField(null=True, blank=True)  # staff looked at it; null = alert open
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0) & Q(balance_amount_cents__gte=0)
                & Q(balance_amount_cents__lte=models.F("amount_cents")),
                name="customer_credit_amounts",
            ),
        ]
        indexes = [
            models.Index(fields=("customer", "currency"), condition=Q(status="available"),
                         name="customer_credit_available_idx"),
            models.Index(fields=("created_at",), condition=Q(acknowledged_at__isnull=True),
                         name="customer_credit_alert_idx"),
        ]

    def __str__(self) -> str:
        return f"credit {self.pk}: {self.balance_amount_cents}/{self.amount_cents} {self.currency} ({self.reason})"


class CreditApplication(TimeStampedModel):
    """Customer credit consumed by (or given back from) one finalized invoice: an append-only history.

    A positive row takes `amount_cents` off the source's balance onto the invoice at finalization; voiding the
    invoice writes the opposite row (`kind` return) and gives the amount back. So, per source, the balance is
    its credit less the sum of its rows, and per invoice the credit applied is the sum of its rows (until void).
    """

    class Kind(models.TextChoices):
        APPLIED = "applied"  # taken off the source's balance, onto the invoice
        RETURNED = "returned"  # the invoice was voided: the amount went back to the source

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_applications")
    # The source: exactly one of a credit note and a customer credit.
    credit_note = models.ForeignKey(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="applications"
    )
    customer_credit = models.ForeignKey(
        CustomerCredit, on_delete=models.PROTECT, null=True, blank=True, related_name="applications"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.APPLIED)
    amount_cents = models.BigIntegerField()  # minor units of `currency`; negative for a return
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ("invoice", "id")
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="applied", amount_cents__gt=0) | Q(kind="returned", amount_cents__lt=0)),
                name="credit_application_sign",
            ),
            models.CheckConstraint(
                condition=(Q(credit_note__isnull=False, customer_credit__isnull=True)
                           | Q(credit_note__isnull=True, customer_credit__isnull=False)),
                name="credit_application_one_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_cents} {self.currency} on {self.invoice_id}"


class CouponCredit(TimeStampedModel):
    """One applied coupon's discount on one invoice (Lago's coupon credit, `before_taxes`), written at finalization.

    `fee_shares` spreads `amount_cents` over the fees it discounts, pro rata of what each had left after earlier
    coupons, in whole minor units (largest remainder), so the shares add up to the amount exactly:
    {"<fee id>": cents}. One row per (invoice, applied coupon): a second finalization cannot apply it twice.
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="coupon_credits")
    applied_coupon = models.ForeignKey("catalog.AppliedCoupon", on_delete=models.PROTECT, related_name="credits")
    amount_cents = models.BigIntegerField()  # minor units of `currency`, before tax
    currency = models.CharField(max_length=3)
    fee_shares = models.JSONField(default=dict)

    class Meta:
        ordering = ("invoice", "id")
        constraints = [
            models.UniqueConstraint(fields=("invoice", "applied_coupon"), name="uniq_coupon_credit_per_invoice"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="coupon_credit_positive"),
        ]

    def __str__(self) -> str:
        return f"coupon {self.applied_coupon_id}: {self.amount_cents} {self.currency} on {self.invoice_id}"


class CloseRun(TimeStampedModel):
    """One run of the period close (task, command or test): what it billed and who failed."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"  # some customers failed; the next run retries them

    as_of = models.DateTimeField()  # periods ending at or before this instant were billed
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    finished_at = models.DateTimeField(null=True, blank=True)
    customers_count = models.PositiveIntegerField(default=0)  # customers examined
    invoices_count = models.PositiveIntegerField(default=0)  # invoices created or extended
    fees_count = models.PositiveIntegerField(default=0)
    failures_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"close as of {self.as_of:%Y-%m-%d %H:%M} ({self.status})"


class CloseRange(models.Model):
    """A slice of a distributed close's customers (ids `first_customer_id`..`last_customer_id`), billed by
    whichever Celery worker claims it (apps/invoicing/close/distributed.py). A claim is a lease: a worker that
    dies leaves its range claimable again once `claimed_until` passes, and the sweep hands it out again."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"

    run = models.ForeignKey(CloseRun, on_delete=models.CASCADE, related_name="ranges")
    first_customer_id = models.BigIntegerField()
    last_customer_id = models.BigIntegerField()
    customers_count = models.PositiveIntegerField(default=0)  # due when the run was split
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=255, blank=True)  # host:pid of the last worker to claim it
    claimed_until = models.DateTimeField(null=True, blank=True)
    # The close run (of this range only) that finished it: its customers' outcomes and counts.
    result_run = models.ForeignKey(CloseRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run", "first_customer_id")
        constraints = [
            models.UniqueConstraint(fields=("run", "first_customer_id"), name="uniq_close_range_start"),
            models.CheckConstraint(condition=Q(first_customer_id__lte=F("last_customer_id")),
                                   name="close_range_ordered"),
        ]
        indexes = [models.Index(fields=("status", "claimed_until"), name="close_range_claimable_idx")]

    def __str__(self) -> str:
        return f"customers {self.first_customer_id}..{self.last_customer_id} of run {self.run_id} ({self.status})"


class CloseRunCustomer(models.Model):
    """A customer's outcome in a close run (only customers billed or failed are recorded)."""

    class Outcome(models.TextChoices):
        BILLED = "billed"
        FAILED = "failed"

    run = models.ForeignKey(CloseRun, on_delete=models.CASCADE, related_name="outcomes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="close_outcomes")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    invoices_count = models.PositiveIntegerField(default=0)
    fees_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)  # exception class and message; traceback below
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ("run", "id")
        indexes = [models.Index(fields=("customer", "outcome"))]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.outcome}"


class Wallet(TimeStampedModel):
    """A customer's prepaid credits with one service (Lago's wallet), consumed by that service's share of the
    customer's invoices at finalization, after coupons, tax and credit-note credit (apps/invoicing/wallets.py).

    Money is kept in minor units (`balance_amount_cents`); credits are money / `rate_amount`, computed for the API.
    Every change of the balance is a `WalletTransaction` row written in the same transaction, so the balance always
    equals the settled inbound transactions less the outbound ones.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        TERMINATED = "terminated"

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="wallets")
    account_link = models.ForeignKey("customers.AccountLink", on_delete=models.PROTECT, related_name="wallets")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="wallets")
    name = models.CharField(max_length=255, blank=True)
    code = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    currency = models.CharField(max_length=3)  # ISO 4217
    rate_amount = models.DecimalField(max_digits=30, decimal_places=12)  # major units of `currency` per credit
    balance_amount_cents = models.BigIntegerField(default=0)  # minor units: settled credit not consumed yet
    # Of the balance, the part bought with money (paid top-ups); the rest was granted. The ledger posts paid credit
    # consumed as the customer's prepayment used, granted credit as a discount (apps/ledger, docs/ledger.md).
    paid_balance_amount_cents = models.BigIntegerField(default=0)
    consumed_amount_cents = models.BigIntegerField(default=0)  # minor units consumed by invoices (net of returns)
    priority = models.PositiveSmallIntegerField(default=50)  # Lago: 1 (first) to 50
    invoice_requires_successful_payment = models.BooleanField(default=False)
    # Lago's `applies_to`: the fee types and the service's metric codes (charges) the wallet may pay; both empty,
    # any fee of its service.
    allowed_fee_types = models.JSONField(default=list, blank=True)
    billable_metric_codes = models.JSONField(default=list, blank=True)
    expiration_at = models.DateTimeField(null=True, blank=True)  # terminated at this instant (wallets_expire)
    terminated_at = models.DateTimeField(null=True, blank=True)
    last_balance_sync_at = models.DateTimeField(null=True, blank=True)
    last_consumed_credit_at = models.DateTimeField(null=True, blank=True)
    # Lago's flag: the ongoing balance is at or below zero and `wallet.depleted_ongoing_balance` was sent; cleared
    # once it is positive again, so the webhook goes once per depletion (apps/invoicing/top_ups.py).
    depleted_ongoing_balance = models.BooleanField(default=False)
    metadata = models.JSONField(null=True, blank=True)  # Lago's key -> string|null object; null: none set

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(condition=Q(balance_amount_cents__gte=0), name="wallet_balance_not_negative"),
            models.CheckConstraint(condition=Q(paid_balance_amount_cents__gte=0)
                                   & Q(paid_balance_amount_cents__lte=F("balance_amount_cents")),
                                   name="wallet_paid_balance_within_balance"),
            models.CheckConstraint(condition=Q(rate_amount__gt=0), name="wallet_rate_positive"),
        ]
        indexes = [
            models.Index(fields=("customer",), condition=Q(status="active"), name="wallet_active_idx"),
            models.Index(fields=("expiration_at",), condition=Q(status="active", expiration_at__isnull=False),
                         name="wallet_expiring_idx"),
        ]

    def __str__(self) -> str:
        return f"wallet {self.name or self.lago_id}: {self.balance_amount_cents} {self.currency}"

    def credits_of(self, amount_cents: int) -> Decimal:
        """Return the credits worth `amount_cents` here, rounded half-up to Lago's 5 decimals."""
        return (from_minor_units(amount_cents, self.currency) / self.rate_amount).quantize(
            Decimal("0.00001"), ROUND_HALF_UP)


class WalletTransaction(TimeStampedModel):
    """One movement of a wallet's balance (Lago's wallet transaction): an append-only history.

    Inbound: granted credits (settled at once), purchased credits (pending on a credit invoice until Stripe
    collects it; settled exactly once then, failed if the invoice is voided unpaid), credits given back when an
    invoice that consumed them is voided. Outbound: credits an invoice consumed at finalization (`invoiced`).
    """

    class TransactionType(models.TextChoices):
        INBOUND = "inbound"
        OUTBOUND = "outbound"

    class Status(models.TextChoices):
        PENDING = "pending"
        SETTLED = "settled"
        FAILED = "failed"

    class TransactionStatus(models.TextChoices):  # Lago's values
        PURCHASED = "purchased"
        GRANTED = "granted"
        VOIDED = "voided"
        INVOICED = "invoiced"

    class Source(models.TextChoices):
        MANUAL = "manual"
        INTERVAL = "interval"
        THRESHOLD = "threshold"

    class Reason(models.TextChoices):
        # The hub's own reason (not in Lago's body): what wrote the row, and its exactly-once key with the invoice.
        TOP_UP = "top_up"  # paid or granted credits
        CONSUMPTION = "consumption"  # taken by `invoice` at its finalization
        RETURN = "return"  # `invoice` was voided: what it consumed went back
        # The wallet expired or was terminated: its unused balance voided (Lago's `voided`), the paid part released
        # from the prepayment liability to income in the ledger.
        FORFEIT = "forfeit"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions")
    transaction_type = models.CharField(max_length=16, choices=TransactionType.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    transaction_status = models.CharField(max_length=16, choices=TransactionStatus.choices)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    amount_cents = models.BigIntegerField()  # minor units of the wallet's currency, positive in both directions
    # Of amount_cents, the paid (purchased) credit: all of a paid top-up, none of a granted one; for a consumption
    # the part taken from paid credit (granted credit is consumed first), for a return what goes back to it.
    paid_amount_cents = models.BigIntegerField(default=0)
    credit_amount = models.DecimalField(max_digits=30, decimal_places=5)  # credits: amount / rate_amount
    # The credit invoice of a purchase, or the invoice that consumed (or gave back) the credit.
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="wallet_transactions")
    name = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=list, blank=True)  # [{"key", "value"}] as Lago
    settled_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="wallet_transaction_positive"),
            models.CheckConstraint(condition=Q(paid_amount_cents__gte=0) & Q(paid_amount_cents__lte=F("amount_cents")),
                                   name="wallet_transaction_paid_within_amount"),
            # An invoice consumes a wallet once, and gives it back once.
            models.UniqueConstraint(fields=("wallet", "invoice", "reason"),
                                    condition=Q(reason__in=("consumption", "return")),
                                    name="uniq_wallet_transaction_per_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.transaction_type} {self.amount_cents} ({self.status}) on wallet {self.wallet_id}"


class LifetimeUsage(TimeStampedModel):
    """What a subscription used before the hub billed it (Lago's `external_historical_usage_amount_cents`), counted
    into its lifetime usage against the plan's usage thresholds. Invoiced and current usage are read, not stored."""

    subscription = models.OneToOneField(
        "subscriptions.Subscription", on_delete=models.CASCADE, related_name="lifetime_usage"
    )
    external_historical_usage_amount_cents = models.BigIntegerField(default=0)  # minor units of the plan's currency

    def __str__(self) -> str:
        return f"lifetime usage of subscription {self.subscription_id}"


class AppliedUsageThreshold(TimeStampedModel):
    """A usage threshold a progressive billing invoice was issued for (Lago's `applied_usage_thresholds`), copied
    as it was: the plan's threshold may change or go later."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="applied_usage_thresholds")
    usage_threshold = models.ForeignKey("catalog.UsageThreshold", on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="+")
    threshold_lago_id = models.UUIDField()
    amount_cents = models.BigIntegerField()  # the threshold, minor units
    recurring = models.BooleanField(default=False)
    threshold_display_name = models.CharField(max_length=255, blank=True)
    lifetime_usage_amount_cents = models.BigIntegerField()  # lifetime usage when the invoice was issued

    class Meta:
        ordering = ("invoice", "amount_cents", "id")


class UsageAlert(TimeStampedModel):
    """Lago's subscription usage alert: tell the service (`alert.triggered`) when a usage value crosses thresholds.

    Addressed by the subscription's external id (it survives plan changes); evaluated after ingest and by a sweep
    (apps/invoicing/alerts.py). `previous_value` is the value last seen: a threshold is crossed once per rise past it.
    """

    class AlertType(models.TextChoices):
        CURRENT_USAGE_AMOUNT = "current_usage_amount"  # the period's usage, minor units
        METRIC_USAGE_AMOUNT = "billable_metric_current_usage_amount"  # one metric's charges, minor units
        METRIC_USAGE_UNITS = "billable_metric_current_usage_units"  # one metric's units
        LIFETIME_USAGE_AMOUNT = "lifetime_usage_amount"  # the subscription's lifetime usage, minor units

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    subscription_external_id = models.CharField(max_length=255)
    alert_type = models.CharField(max_length=48, choices=AlertType.choices)
    billable_metric = models.ForeignKey("catalog.BillableMetric", on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="+")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    previous_value = models.DecimalField(**QUANTITY, default=0)  # the alert type's unit (minor units or units)
    last_processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("service", "subscription_external_id", "created_at", "id")
        constraints = [
            models.UniqueConstraint(fields=("service", "subscription_external_id", "code"), name="uniq_alert_code"),
            models.UniqueConstraint(fields=("service", "subscription_external_id", "alert_type"),
                                    condition=Q(billable_metric__isnull=True), name="uniq_alert_type"),
            models.UniqueConstraint(fields=("service", "subscription_external_id", "alert_type", "billable_metric"),
                                    condition=Q(billable_metric__isnull=False), name="uniq_alert_type_metric"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_external_id}:{self.code}"


class UsageAlertThreshold(models.Model):
    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="thresholds")
    code = models.CharField(max_length=255, blank=True)
    value = models.DecimalField(**QUANTITY)  # the alert type's unit
    recurring = models.BooleanField(default=False)

    class Meta:
        ordering = ("alert", "recurring", "value", "id")


class TriggeredAlert(TimeStampedModel):
    """One crossing of an alert's thresholds, and the `alert.triggered` webhook it sent."""

    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="triggered")
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.CASCADE, related_name="+")
    current_value = models.DecimalField(**QUANTITY)
    previous_value = models.DecimalField(**QUANTITY)
    crossed_thresholds = models.JSONField(default=list)  # [{"code", "value", "recurring"}]
    triggered_at = models.DateTimeField()


class WalletAlert(TimeStampedModel):
    """Lago's wallet alert (usage monitoring): thresholds on one of the wallet's balances, watched as it falls
    (`decreasing`, as Lago sets wallet alerts); crossing any sends `alert.triggered` (apps/invoicing/wallet_alerts.py).

    `thresholds`: [{"code", "value" (decimal string: cents for the *_amount types, credits otherwise),
    "recurring"}] as Lago; `previous_value` the value last checked, in the same unit.
    """

    class AlertType(models.TextChoices):
        BALANCE_AMOUNT = "wallet_balance_amount"  # balance_cents
        CREDITS_BALANCE = "wallet_credits_balance"  # credits_balance
        ONGOING_BALANCE_AMOUNT = "wallet_ongoing_balance_amount"  # ongoing_balance_cents
        CREDITS_ONGOING_BALANCE = "wallet_credits_ongoing_balance"  # credits_ongoing_balance

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="alerts")
    alert_type = models.CharField(max_length=40, choices=AlertType.choices)
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    direction = models.CharField(max_length=16, default="decreasing")
    previous_value = models.DecimalField(max_digits=30, decimal_places=5, default=0)
    last_processed_at = models.DateTimeField(null=True, blank=True)
    thresholds = models.JSONField(default=list)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(fields=("wallet", "code"), condition=Q(deleted_at__isnull=True),
                                    name="uniq_wallet_alert_code"),
            models.UniqueConstraint(fields=("wallet", "alert_type"), condition=Q(deleted_at__isnull=True),
                                    name="uniq_wallet_alert_type"),
        ]

    def __str__(self) -> str:
        return f"{self.alert_type} alert {self.code} on wallet {self.wallet_id}"


class RecurringTransactionRule(TimeStampedModel):
    """A wallet's automatic top-up (Lago's recurring transaction rule; one active per wallet, as Lago allows).

    `interval` rules top up on the anniversary of `started_at` (else the wallet's creation) in the customer's time
    zone; `threshold` rules when the wallet's ongoing balance (credits, after current usage) is at or below
    `threshold_credits`. `fixed` buys `paid_credits` and grants `granted_credits`; `target` tops the ongoing balance
    up to `target_ongoing_balance` (paid, or granted with `grants_target_top_up`). Fired by
    apps/invoicing/top_ups.py under the wallet's row lock: once per interval (`last_interval_on`) and once per
    crossing of the threshold (`threshold_armed`).
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        TERMINATED = "terminated"

    class Trigger(models.TextChoices):
        INTERVAL = "interval"
        THRESHOLD = "threshold"

    class Method(models.TextChoices):
        FIXED = "fixed"
        TARGET = "target"

    class Interval(models.TextChoices):
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        QUARTERLY = "quarterly"
        SEMIANNUAL = "semiannual"
        YEARLY = "yearly"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="recurring_rules")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.FIXED)
    interval = models.CharField(max_length=16, choices=Interval.choices, blank=True)  # interval rules only
    threshold_credits = models.DecimalField(max_digits=30, decimal_places=5, default=0)  # credits
    paid_credits = models.DecimalField(max_digits=30, decimal_places=5, default=0)  # credits bought per top-up
    granted_credits = models.DecimalField(max_digits=30, decimal_places=5, default=0)  # credits granted per top-up
    target_ongoing_balance = models.DecimalField(max_digits=30, decimal_places=5, null=True, blank=True)  # credits
    grants_target_top_up = models.BooleanField(null=True, blank=True)  # target rules only (Lago: null for fixed)
    started_at = models.DateTimeField(null=True, blank=True)
    expiration_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    invoice_requires_successful_payment = models.BooleanField(default=False)
    transaction_name = models.CharField(max_length=255, blank=True)
    transaction_metadata = models.JSONField(default=list, blank=True)  # [{"key", "value"}] as Lago
    # The hub's exactly-once state (not in Lago's body): the customer's local day an interval rule last fired, and
    # whether a threshold rule may fire (cleared when it fires, set again once the balance is above the threshold).
    last_interval_on = models.DateField(null=True, blank=True)
    threshold_armed = models.BooleanField(default=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(fields=("wallet",), condition=Q(status="active"),
                                    name="uniq_active_recurring_rule_per_wallet"),
        ]

    def __str__(self) -> str:
        return f"{self.trigger}/{self.method} rule on wallet {self.wallet_id}"

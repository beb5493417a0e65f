"""The Odoo ledger: an outbox of postings and the admin-edited mapping to Odoo records.

A `LedgerPosting` is written in the transaction that finalized an invoice, issued a credit note or
recorded a payment; services.py sends it to Odoo. Odoo references in the mapping tables are strings:
an xml id ("account.1_sale"), a code (account code, journal code, product default_code, analytic
code, tax name) or a database id ("#42"); they are resolved through `OdooClient.refs_resolve`.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel

ODOO_REF_HELP = 'xml id ("account.1_sale"), code ("INV", "400000", product default code) or database id ("#42")'


class LedgerPosting(TimeStampedModel):
    """One document to post to Odoo exactly once, keyed by its deterministic `ref`."""

    class Kind(models.TextChoices):
        INVOICE = "invoice"
        CREDIT_NOTE = "credit_note"
        PAYMENT = "payment"
        REFUND = "refund"  # money paid back on a credit note: an outbound payment on its out_refund (odoo.md §3.4)
        VOID = "void"  # a voided invoice: an out_refund reversing what no credit note has credited yet
        # Customer credit consumed by an invoice (or given back by its void): its credit note's receivable
        # reconciled with (or unreconciled from) the invoice's, so each Odoo document shows what the hub says is due.
        CREDIT_APPLICATION = "credit_application"
        # Money Stripe collected that no invoice took (apps.invoicing CustomerCredit): a customer payment posted
        # unmatched on the receipts journal, the partner's outstanding credit until an application reconciles it.
        CUSTOMER_CREDIT = "customer_credit"
        # Wallet credit an invoice consumed (or gave back on its void): an out_refund of the consumed amount on the
        # prepayment liability (paid credit) and the prepaid-discount account (granted credit), reversing the
        # invoice so Odoo reconciles it with the invoice's receivable; the give-back reverses that out_refund.
        WALLET_TRANSACTION = "wallet_transaction"
        # Paid wallet credit left unused when the wallet expired or was terminated: the prepayment liability
        # released to income (a zero-total out_invoice: the credit to the breakage income account, the debit to the
        # prepayment account), so the liability of a wallet that can no longer be used is zero.
        WALLET_FORFEIT = "wallet_forfeit"
        # The unused credit of a credit note, voided (lost by the customer): an out_invoice re-billing that part of
        # the note, pro rata per item and tax, reconciled with the note's out_refund, so the receivable and the
        # sales taxes the note had lowered come back for what the customer can no longer use. One per note void;
        # another per credit an invoice voided later gives back to the voided note (its `credit_application`).
        CREDIT_NOTE_VOID = "credit_note_void"

    class Status(models.TextChoices):
        PENDING = "pending"  # to send (again) once next_attempt_at passes
        POSTED = "posted"  # in Odoo, totals equal the hub's
        FAILED = "failed"  # Odoo or the mapping refused it; retry from the admin
        MISMATCH = "mismatch"  # in Odoo, but its totals differ from the hub's
        SKIPPED = "skipped"  # nothing to post (zero-amount document)

    kind = models.CharField(max_length=24, choices=Kind.choices)
    ref = models.CharField(max_length=128, unique=True)  # Odoo move `ref` / payment `memo`
    invoice = models.ForeignKey(  # the invoice posted, or the invoice a payment settles
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_postings"
    )
    credit_note = models.ForeignKey(
        "invoicing.CreditNote", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_postings"
    )
    credit_application = models.ForeignKey(
        "invoicing.CreditApplication", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_postings"
    )
    # The customer credit posted (kind customer_credit) or consumed (a credit_application of that source).
    customer_credit = models.ForeignKey(
        "invoicing.CustomerCredit", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_postings"
    )
    wallet_transaction = models.ForeignKey(
        "invoicing.WalletTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_postings"
    )
    # Payments and refunds: the hub has no payment model shared with the ledger; the row carries what Odoo needs.
    # Credit applications carry their amount here too (negative: given back by a void).
    stripe_payment_id = models.CharField(max_length=255, blank=True)  # pi_/ch_/in_ (payment) or re_ (refund) id
    payment_amount_cents = models.BigIntegerField(null=True, blank=True)  # minor units of payment_currency
    payment_currency = models.CharField(max_length=3, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    odoo_move_id = models.BigIntegerField(null=True, blank=True)  # account.move (the invoice's for payments)
    odoo_payment_id = models.BigIntegerField(null=True, blank=True)  # account.payment
    odoo_name = models.CharField(max_length=64, blank=True)  # e.g. "INV/2026/00001"
    # What the hub billed and what Odoo computed, minor units of the document currency (set when read back).
    hub_amount_untaxed_cents = models.BigIntegerField(null=True, blank=True)
    hub_amount_tax_cents = models.BigIntegerField(null=True, blank=True)
    hub_amount_total_cents = models.BigIntegerField(null=True, blank=True)
    odoo_amount_untaxed_cents = models.BigIntegerField(null=True, blank=True)
    odoo_amount_tax_cents = models.BigIntegerField(null=True, blank=True)
    odoo_amount_total_cents = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # null = due now
    claimed_until = models.DateTimeField(null=True, blank=True)  # a sender's lease; expired = claimable
    last_error = models.TextField(blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=("invoice",), condition=Q(kind="invoice"), name="uniq_ledger_invoice"),
            models.UniqueConstraint(fields=("credit_note",), condition=Q(kind="credit_note"),
                                    name="uniq_ledger_credit_note"),
            models.UniqueConstraint(fields=("stripe_payment_id",), condition=Q(kind="payment"),
                                    name="uniq_ledger_payment"),
            models.UniqueConstraint(fields=("stripe_payment_id",), condition=Q(kind="refund"),
                                    name="uniq_ledger_refund"),
            models.UniqueConstraint(fields=("invoice",), condition=Q(kind="void"), name="uniq_ledger_void"),
            models.UniqueConstraint(fields=("credit_application",), condition=Q(kind="credit_application"),
                                    name="uniq_ledger_credit_application"),
            models.UniqueConstraint(fields=("customer_credit",), condition=Q(kind="customer_credit"),
                                    name="uniq_ledger_customer_credit"),
            models.UniqueConstraint(fields=("wallet_transaction",), condition=Q(kind="wallet_transaction"),
                                    name="uniq_ledger_wallet_transaction"),
            models.UniqueConstraint(fields=("wallet_transaction",), condition=Q(kind="wallet_forfeit"),
                                    name="uniq_ledger_wallet_forfeit"),
            models.UniqueConstraint(fields=("credit_note",),
                                    condition=Q(kind="credit_note_void", credit_application__isnull=True),
                                    name="uniq_ledger_credit_note_void"),
            models.UniqueConstraint(fields=("credit_application",), condition=Q(kind="credit_note_void"),
                                    name="uniq_ledger_credit_note_void_return"),
            models.CheckConstraint(
                condition=(Q(kind__in=["invoice", "void"], invoice__isnull=False)
                           | Q(kind="credit_note", credit_note__isnull=False)
                           | Q(kind="credit_application", credit_application__isnull=False, invoice__isnull=False)
                           | Q(kind="wallet_transaction", wallet_transaction__isnull=False, invoice__isnull=False)
                           | Q(kind="wallet_forfeit", wallet_transaction__isnull=False)
                           | Q(kind="credit_note_void", credit_note__isnull=False, invoice__isnull=False)
                           | (Q(kind="customer_credit", customer_credit__isnull=False, invoice__isnull=False)
                              & ~Q(stripe_payment_id=""))
                           | (Q(kind="payment", invoice__isnull=False) & ~Q(stripe_payment_id=""))
                           | (Q(kind="refund", credit_note__isnull=False) & ~Q(stripe_payment_id=""))),
                name="ledger_posting_has_document",
            ),
        ]
        indexes = [models.Index(fields=("status", "next_attempt_at"), name="ledger_due_idx")]

    def __str__(self) -> str:
        return f"{self.ref} ({self.status})"


class OdooProductMapping(models.Model):
    """Odoo product and income account for one service's fees, per metric or plan.

    Lookup order for a fee: (service, metric) for usage fees, (service, plan) for plan fees, then the
    service default (no metric, no plan).
    """

    service = models.ForeignKey("customers.Service", on_delete=models.CASCADE, related_name="+")
    billable_metric = models.ForeignKey("catalog.BillableMetric", on_delete=models.CASCADE, null=True, blank=True,
                                        related_name="+")
    plan = models.ForeignKey("catalog.Plan", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    odoo_product = models.CharField(max_length=255, help_text=ODOO_REF_HELP)
    odoo_income_account = models.CharField(max_length=255, blank=True,
                                           help_text="blank: the product's income account. " + ODOO_REF_HELP)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("service", "billable_metric"), condition=Q(billable_metric__isnull=False),
                                    name="uniq_odoo_product_metric"),
            models.UniqueConstraint(fields=("service", "plan"), condition=Q(plan__isnull=False),
                                    name="uniq_odoo_product_plan"),
            models.UniqueConstraint(fields=("service",), condition=Q(plan__isnull=True, billable_metric__isnull=True),
                                    name="uniq_odoo_product_default"),
            models.CheckConstraint(condition=Q(plan__isnull=True) | Q(billable_metric__isnull=True),
                                   name="odoo_product_metric_or_plan"),
        ]

    def __str__(self) -> str:
        target = self.billable_metric_id and f"metric {self.billable_metric_id}" or (
            self.plan_id and f"plan {self.plan_id}") or "default"
        return f"{self.service_id} {target} -> {self.odoo_product}"


class OdooTaxMapping(models.Model):
    """The Odoo sale tax for one hub tax code (apps/catalog/taxes.py, e.g. "hst_sale_tax_13")."""

    tax_code = models.CharField(max_length=64, unique=True)
    odoo_tax = models.CharField(max_length=255, help_text=ODOO_REF_HELP)

    def __str__(self) -> str:
        return f"{self.tax_code} -> {self.odoo_tax}"


class OdooJournalMapping(models.Model):
    """The Odoo journal for sales (invoices, credit notes) and for Stripe receipts (payments)."""

    class Purpose(models.TextChoices):
        SALES = "sales"
        STRIPE_RECEIPTS = "stripe_receipts"

    purpose = models.CharField(max_length=32, choices=Purpose.choices, unique=True)
    odoo_journal = models.CharField(max_length=255, help_text=ODOO_REF_HELP)

    def __str__(self) -> str:
        return f"{self.purpose} -> {self.odoo_journal}"


class OdooAccountMapping(models.Model):
    """The Odoo account of one purpose the hub posts to without a product: wallet credit.

    Without a row, `DEFAULTS` apply (the Canadian chart ca_2023's codes); a blank default must be mapped before a
    document needing it can post (the posting fails naming it, `odoo_check` lists it).
    """

    class Purpose(models.TextChoices):
        # Paid wallet top-ups: money received for credit not consumed yet (a current liability).
        PREPAYMENT = "prepayment"
        # Granted (free) wallet credit an invoice consumed: a discount or marketing expense.
        PREPAID_DISCOUNT = "prepaid_discount"
        # Paid wallet credit never used (the wallet expired or was terminated): income (breakage).
        PREPAID_BREAKAGE = "prepaid_breakage"

    # 298000: All Other Current Liabilities. Granted credit's expense and breakage income are a company's choice.
    DEFAULTS = {Purpose.PREPAYMENT: "298000", Purpose.PREPAID_DISCOUNT: "", Purpose.PREPAID_BREAKAGE: ""}

    purpose = models.CharField(max_length=32, choices=Purpose.choices, unique=True)
    odoo_account = models.CharField(max_length=255, help_text=ODOO_REF_HELP)

    def __str__(self) -> str:
        return f"{self.purpose} -> {self.odoo_account}"


class OdooAnalyticMapping(models.Model):
    """The Odoo analytic account every line of one service's fees is distributed to (100 %)."""

    service = models.OneToOneField("customers.Service", on_delete=models.CASCADE, related_name="+")
    odoo_analytic_account = models.CharField(max_length=255, help_text=ODOO_REF_HELP)

    def __str__(self) -> str:
        return f"{self.service_id} -> {self.odoo_analytic_account}"

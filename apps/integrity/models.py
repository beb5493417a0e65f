"""Runs of the billing invariants (apps/integrity/invariants.py) and the violations each one found."""
from __future__ import annotations

from django.db import models

from apps.core.models import TimeStampedModel


class CheckRun(TimeStampedModel):
    """One run of `billing_check_run` (daily task, command or staff)."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    violations_count = models.PositiveIntegerField(default=0)
    # Violations per invariant code, every code run listed ({"I1": 0, ...}).
    counts = models.JSONField(default=dict, blank=True)
    customer_ids = models.JSONField(null=True, blank=True)  # the scope; null = every customer
    # Why part of the run could not be done (e.g. Odoo unreachable: the Odoo comparison was skipped).
    note = models.TextField(blank=True)

    class Meta:
        ordering = ("-started_at", "-id")

    def __str__(self) -> str:
        return f"billing check {self.started_at:%Y-%m-%d %H:%M}: {self.violations_count} violation(s)"


class CheckViolation(models.Model):
    """One row breaking an invariant when the run looked (invariants.Violation, stored)."""

    run = models.ForeignKey(CheckRun, on_delete=models.CASCADE, related_name="violations")
    code = models.CharField(max_length=8)  # I1 .. I6
    rule = models.CharField(max_length=32)  # which rule of the invariant (invariants.py docstring)
    message = models.TextField()
    # No database constraint: a violation may name a row that is gone by the time staff read it.
    customer = models.ForeignKey("customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, null=True,
                                 blank=True, related_name="+")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.DO_NOTHING, db_constraint=False, null=True,
                                blank=True, related_name="+")
    invoice_number = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    expected = models.BigIntegerField(null=True, blank=True)  # in `unit`
    actual = models.BigIntegerField(null=True, blank=True)
    unit = models.CharField(max_length=16)  # cents (minor units of `currency`), rows, numbers
    reference = models.CharField(max_length=255, blank=True)  # fee, subscription, series, PaymentIntent

    class Meta:
        ordering = ("run", "code", "id")

    def __str__(self) -> str:
        return f"{self.code} {self.rule}: {self.message[:80]}"

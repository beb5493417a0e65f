"""The move of a service from Lago to the hub: phases, imports, the event relay and reconciliation.

A service without a `ServicePhase` row was born on the hub: it is authoritative (`hub`). Only services moved
from Lago get a row, created by their first import in the `lago` phase.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class ServicePhase(TimeStampedModel):
    """Where a service bills today, and how to reach its Lago organisation."""

    class Phase(models.TextChoices):
        LAGO = "lago", "Lago (hub not billing)"
        DUAL_RUN = "dual_run", "Dual run (hub bills in shadow)"
        HUB = "hub", "Hub (authoritative)"

    service = models.OneToOneField("customers.Service", on_delete=models.PROTECT, related_name="migration_phase")
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.LAGO)
    changed_at = models.DateTimeField(null=True, blank=True)
    # Lago's root URL (the client appends /api/v1/) and the organisation's API key: the relay and the
    # reconciliation call Lago long after the import that stored them. Shown masked in the admin.
    lago_api_url = models.CharField(max_length=500, blank=True)
    lago_api_key = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ("service__code",)

    def __str__(self) -> str:
        return f"{self.service.code}: {self.phase}"


class PhaseChange(models.Model):
    """One audited phase switch: who, when, why, from -> to (and what the cutover guard checked)."""

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    from_phase = models.CharField(max_length=16)
    to_phase = models.CharField(max_length=16)
    reason = models.TextField()
    actor = models.CharField(max_length=255)
    changed_at = models.DateTimeField()
    # The guard's per-subscription report (hub's and Lago's billed-through instants) for a switch to `hub`.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-changed_at", "-id")

    def __str__(self) -> str:
        return f"{self.from_phase} -> {self.to_phase} by {self.actor}"


class ImportRun(TimeStampedModel):
    """One `lago_import` of a service; a crashed run is resumed by the next one from its checkpoints."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # crashed or stopped: the next run resumes it

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    api_url = models.CharField(max_length=500)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    actor = models.CharField(max_length=255, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # {resource: {"created": n, "updated": n, "unchanged": n, "skipped": n, "conflict": n}}
    counts = models.JSONField(default=dict, blank=True)
    resumed_count = models.PositiveIntegerField(default=0)  # times a later run picked this one up

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"import {self.service_id} {self.created_at:%Y-%m-%d %H:%M} ({self.status})"


class ImportCheckpoint(models.Model):
    """The last page of a resource a run has committed (with the counts so far): a rerun starts after it."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="checkpoints")
    resource = models.CharField(max_length=32)
    page = models.PositiveIntegerField(default=0)
    total_pages = models.PositiveIntegerField(default=0)
    done = models.BooleanField(default=False)
    counts = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("run", "resource"), name="uniq_import_checkpoint")]


class ImportIssue(models.Model):
    """An object not imported (skipped) or not overwritten (conflict), with the reason."""

    class Outcome(models.TextChoices):
        SKIPPED = "skipped"
        CONFLICT = "conflict"
        WARNING = "warning"  # imported, with something staff should check

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="issues")
    resource = models.CharField(max_length=32)
    key = models.CharField(max_length=255)  # Lago's code / external id / number
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField()

    class Meta:
        ordering = ("run", "resource", "key")

    def __str__(self) -> str:
        return f"{self.resource} {self.key}: {self.outcome}"


class LagoObject(models.Model):
    """Which hub row an imported Lago object became (`kind`: tax, metric, plan, charge, customer, subscription,
    invoice, fee): reruns and the reconciliation map Lago's ids through it."""

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16)
    lago_id = models.CharField(max_length=64)
    hub_id = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("service", "kind", "lago_id"), name="uniq_lago_object")]
        indexes = [models.Index(fields=("kind", "hub_id"))]

    def __str__(self) -> str:
        return f"{self.kind} {self.lago_id} -> {self.hub_id}"


class ShadowInvoice(models.Model):
    """An invoice the hub finalized in shadow (its service in `dual_run`): never charged, posted or announced.

    Written by the finalization hook in the finalizing transaction; the reconciliation compares these with
    Lago's invoices, and the mark stays after cutover (Lago billed those periods).
    """

    invoice = models.OneToOneField("invoicing.Invoice", on_delete=models.PROTECT, related_name="shadow")
    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)


class RelayStream(models.Model):
    """Usage the hub accepted for a service during one dual run, relayed to Lago in id order.

    Usage rows are append-only and their ids are fenced (apps.usage), so the stream is a watermark instead of a
    row per event: rows with `after_event_id < id <= until_event_id` (open-ended while the dual run lasts) are
    due; `delivered_through_id` moves only after Lago stored (or already knew) every row up to it. Nothing is
    written on the ingest path, and nothing is dropped while Lago is down: the watermark waits.
    """

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    after_event_id = models.BigIntegerField()  # the fenced highest usage row id when the dual run began
    until_event_id = models.BigIntegerField(null=True, blank=True)  # fenced, when the dual run ended
    delivered_through_id = models.BigIntegerField()
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)  # every row up to until_event_id delivered
    events_delivered = models.BigIntegerField(default=0)  # Lago events sent and stored (or known), all time
    duplicates = models.BigIntegerField(default=0)  # of which Lago already knew the transaction_id (422)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    oldest_pending_at = models.DateTimeField(null=True, blank=True)  # acceptance time of the first row not delivered
    attempts = models.PositiveIntegerField(default=0)  # consecutive failed deliveries
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ("-opened_at",)
        constraints = [
            models.UniqueConstraint(fields=("service",), condition=Q(until_event_id__isnull=True),
                                    name="uniq_open_relay_stream"),
        ]

    def __str__(self) -> str:
        return f"relay {self.service_id} ({self.after_event_id}, {self.until_event_id or '...'}]"


class RelayFailure(models.Model):
    """A usage row Lago refused for a reason other than a known transaction_id: kept for staff, not retried."""

    stream = models.ForeignKey(RelayStream, on_delete=models.CASCADE, related_name="failures")
    usage_event_id = models.BigIntegerField()
    transaction_id = models.CharField(max_length=255)
    error = models.TextField()
    failed_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-failed_at",)
        constraints = [models.UniqueConstraint(fields=("stream", "usage_event_id"), name="uniq_relay_failure")]


class ReconciliationRun(TimeStampedModel):
    """One comparison of a service's invoices issued in a month (`period`, YYYY-MM) with Lago's."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=7)  # YYYY-MM of the invoices' issuing date
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    actor = models.CharField(max_length=255, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    customers_count = models.PositiveIntegerField(default=0)
    matching_count = models.PositiveIntegerField(default=0)  # customers whose every invoice agrees
    differing_count = models.PositiveIntegerField(default=0)
    differences_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("service", "period"))]

    def __str__(self) -> str:
        return self.summary

    @property
    def summary(self) -> str:
        return (f"{self.service.name}, {self.period}: {self.customers_count:,} customers, "
                f"{self.matching_count:,} match, {self.differing_count:,} differ")


class ReconciliationLine(models.Model):
    """One customer-period's invoice pair (hub and Lago, matched by issuing date and currency), both kept whole
    for the drill-down."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="lines")
    external_customer_id = models.CharField(max_length=255)  # the service's id for the customer
    issuing_date = models.DateField()
    currency = models.CharField(max_length=3)
    hub_invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    hub_number = models.CharField(max_length=64, blank=True)
    lago_invoice_id = models.CharField(max_length=64, blank=True)
    lago_number = models.CharField(max_length=64, blank=True)
    hub_total_amount_cents = models.BigIntegerField(null=True, blank=True)
    lago_total_amount_cents = models.BigIntegerField(null=True, blank=True)
    matches = models.BooleanField()
    hub_side = models.JSONField(default=dict, blank=True)  # what was compared, as read
    lago_side = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("run", "matches", "external_customer_id", "issuing_date")

    def __str__(self) -> str:
        return f"{self.external_customer_id} {self.issuing_date}: {'match' if self.matches else 'differ'}"


class ReconciliationDifference(models.Model):
    class Kind(models.TextChoices):
        MISSING_IN_HUB = "missing_in_hub"
        MISSING_IN_LAGO = "missing_in_lago"
        UNITS_DIFFER = "units_differ"
        PRICE_DIFFER = "price_differ"
        TAX_DIFFER = "tax_differ"
        TOTAL_DIFFER = "total_differ"

    line = models.ForeignKey(ReconciliationLine, on_delete=models.CASCADE, related_name="differences")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    item = models.CharField(max_length=255)  # fee key, tax rate, total's name or "invoice"
    hub_value = models.CharField(max_length=255, blank=True)
    lago_value = models.CharField(max_length=255, blank=True)
    delta_cents = models.BigIntegerField(default=0)  # hub − Lago, minor units of the line's currency

    class Meta:
        ordering = ("line", "id")

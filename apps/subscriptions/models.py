from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class Subscription(TimeStampedModel):
    """A customer on a plan, as one service sees it (addressed by the service's external id)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        TERMINATED = "terminated"
        CANCELED = "canceled"

    class BillingTime(models.TextChoices):
        CALENDAR = "calendar"
        ANNIVERSARY = "anniversary"

    class TerminationCredit(models.TextChoices):
        CREDIT = "credit"  # a credit note kept as customer credit, consumed by the next invoices
        REFUND = "refund"  # refunded through Stripe up to what was paid, the rest as credit
        OFFSET = "offset"  # Lago: refund the paid part, offset the unpaid part (every note offsets first here)
        SKIP = "skip"  # no credit note

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="subscriptions")
    account_link = models.ForeignKey("customers.AccountLink", on_delete=models.PROTECT, related_name="subscriptions")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey("catalog.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    billing_time = models.CharField(max_length=16, choices=BillingTime.choices, default=BillingTime.CALENDAR)
    subscription_at = models.DateTimeField()  # when it starts (or started); anniversary anchor
    # When a pending plan change starts (the end of its predecessor's period); its `subscription_at` is the
    # predecessor's, as in Lago, so the anchor never moves. Null: a pending subscription starts at subscription_at.
    activates_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ending_at = models.DateTimeField(null=True, blank=True)  # planned automatic termination
    terminated_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # What the close does with the unused part of an in-advance base fee when this subscription is terminated
    # (Lago's `on_termination_credit_note`); blank = credit, Lago's default.
    on_termination_credit_note = models.CharField(max_length=8, choices=TerminationCredit.choices, blank=True)
    # Usage before this instant has been invoiced (set at finalization); later-arriving events
    # dated before it are "late" and billed as adjustments on the next invoice.
    usage_billed_until = models.DateTimeField(null=True, blank=True)
    # The subscription this one replaced on upgrade or downgrade.
    previous_subscription = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="next_subscription"
    )

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("service", "external_id"), condition=Q(status="active"), name="uniq_active_subscription"
            ),
            models.UniqueConstraint(
                fields=("service", "external_id"), condition=Q(status="pending"), name="uniq_pending_subscription"
            ),
        ]
        indexes = [models.Index(fields=("service", "external_id"))]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_id} ({self.status})"


class SubscriptionChange(models.Model):
    """One row per transaction that wrote subscriptions; only the trigger of migration 0003 writes it.

    Ingest keeps each worker's subscription lookups between batches (apps/usage/subscription_cache.py)
    and asks this table, in the batch's fenced transaction, whether a change committed since the
    snapshot its lookups were read in. A row appears exactly when its transaction commits, whatever
    wrote the subscriptions (ORM, raw SQL, COPY, admin), so no write path can forget to invalidate.
    """

    # The writing transaction's id (pg_current_xact_id(), an xid8, never reused).
    xid = models.BigIntegerField(primary_key=True)
    recorded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"subscriptions written by transaction {self.xid}"


class SubscriptionChangeHorizon(models.Model):
    """A snapshot's xmin kept by `subscription_changes_prune`: every transaction below it had ended by `taken_at`."""

    horizon_xid = models.BigIntegerField()
    taken_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"transactions below {self.horizon_xid} ended by {self.taken_at:%Y-%m-%d %H:%M:%S}"


class SubscriptionEntitlementOverride(models.Model):
    """A subscription's own value of a plan privilege (Lago's subscription entitlement override)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="entitlement_overrides")
    privilege = models.ForeignKey("catalog.FeaturePrivilege", on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=255)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("subscription", "privilege"), name="uniq_subscription_privilege")]


class SubscriptionFeatureRemoval(models.Model):
    """A plan feature a subscription does not get (Lago's DELETE /subscriptions/{id}/entitlements/{feature})."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="feature_removals")
    feature = models.ForeignKey("catalog.Feature", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("subscription", "feature"), name="uniq_subscription_feature_removal")]

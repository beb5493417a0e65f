"""The money audit: PostgreSQL triggers (django-pghistory) write an event row for every change of a money row.

Because the triggers live in the database, no path skips them: the API, the admin, a Celery task, a shell or a raw
`UPDATE`. Each change is recorded twice in one statement, the row before (`before`) and after (`changed`), so staff
see exactly what changed; rows that appear or go (plans, charges, taxes, credit notes, payments, refunds, customer
credit, services' keys, payment attempts) are recorded as `created` / `deleted`. Who and why come from the context
(`pghistory.context`): the request's user and URL (middleware), and the reason staff give for a manual action
(`apps.audit.services.audit_context`). Event tables are append-only (pgtrigger Protect on update and delete).

Busy tables (invoices, subscriptions, payment attempts) record changes of the money fields only, and no inserts:
their creation is the close's or the API's, already written down in the row itself; what changes a money row
afterwards is what staff must be able to explain.
"""
from __future__ import annotations

import pghistory
import pghistory.models
from django.db import models
from django.db.models.functions import Now

from apps.catalog.models import Charge, ChargeFilter, Commitment, Plan, Tax, UsageThreshold
from apps.customers.models import Organization, Service
from apps.invoicing.models import (CreditNote, CustomerCredit, Invoice, LifetimeUsage, RecurringTransactionRule,
                                   Wallet, WalletTransaction)
from apps.payments.models import Payment, PaymentAttempt, PaymentRequest, Refund
from apps.subscriptions.models import Subscription

BEFORE, CHANGED, CREATED, DELETED = "before", "changed", "created", "deleted"


def _changes(*fields: str) -> tuple[pghistory.UpdateEvent, pghistory.UpdateEvent]:
    """The row before and after an update that changes any of `fields` (all snapshot fields when none given)."""
    condition = pghistory.AnyChange(*fields) if fields else pghistory.AnyChange()
    return (pghistory.UpdateEvent(BEFORE, row=pghistory.Old, condition=condition),
            pghistory.UpdateEvent(CHANGED, row=pghistory.New, condition=condition))


def _event_model(model, *trackers, exclude=("updated_at",), **kwargs):
    return pghistory.create_event_model(
        model, *trackers, exclude=list(exclude), app_label="audit", model_name=f"{model.__name__}Event",
        append_only=True, abstract=False, **kwargs,
    )


INVOICE_MONEY = ("status", "payment_status", "number", "fees_amount_cents", "taxes_amount_cents",
                 "credit_notes_amount_cents", "prepaid_credit_amount_cents", "total_amount_cents",
                 "total_paid_amount_cents", "coupons_amount_cents", "finalized_at", "voided_at")

InvoiceEvent = _event_model(Invoice, *_changes(*INVOICE_MONEY))
SubscriptionEvent = _event_model(Subscription, *_changes(
    "status", "plan", "started_at", "terminated_at", "canceled_at", "ending_at", "activates_at",
    "on_termination_credit_note"))
PaymentAttemptEvent = _event_model(PaymentAttempt, pghistory.InsertEvent(CREATED), *_changes(
    "status", "amount_cents", "next_retry_at", "completed_at", "failure_code"))
PaymentEvent = _event_model(Payment, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
PaymentRequestEvent = _event_model(PaymentRequest, pghistory.InsertEvent(CREATED), *_changes(),
                                   pghistory.DeleteEvent(DELETED))
RefundEvent = _event_model(Refund, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
CreditNoteEvent = _event_model(CreditNote, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
CustomerCreditEvent = _event_model(CustomerCredit, pghistory.InsertEvent(CREATED), *_changes(),
                                   pghistory.DeleteEvent(DELETED))
# Prepaid credits: every wallet change (balance, status, expiration) and every transaction (created, settled, failed).
WalletEvent = _event_model(Wallet, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
WalletTransactionEvent = _event_model(WalletTransaction, pghistory.InsertEvent(CREATED), *_changes(),
                                      pghistory.DeleteEvent(DELETED))
# Automatic top-ups: what a rule buys or grants, and when it fired (its exactly-once markers).
RecurringTransactionRuleEvent = _event_model(RecurringTransactionRule, pghistory.InsertEvent(CREATED), *_changes(),
                                             pghistory.DeleteEvent(DELETED))
PlanEvent = _event_model(Plan, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
ChargeEvent = _event_model(Charge, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
# A plan's minimum commitment and usage thresholds price it as much as its charges; a subscription's historical
# usage moves its thresholds.
CommitmentEvent = _event_model(Commitment, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
UsageThresholdEvent = _event_model(UsageThreshold, pghistory.InsertEvent(CREATED), *_changes(),
                                   pghistory.DeleteEvent(DELETED))
LifetimeUsageEvent = _event_model(LifetimeUsage, pghistory.InsertEvent(CREATED), *_changes(),
                                  pghistory.DeleteEvent(DELETED))
ChargeFilterEvent = _event_model(ChargeFilter, pghistory.InsertEvent(CREATED), *_changes(),
                                 pghistory.DeleteEvent(DELETED))
TaxEvent = _event_model(Tax, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED))
# A service's key: its prefix and rotation time, never the hash.
ServiceEvent = _event_model(Service, pghistory.InsertEvent(CREATED), *_changes(), pghistory.DeleteEvent(DELETED),
                            exclude=("updated_at", "api_key_hash"))
# What invoices say about the seller (PUT /organizations, the admin): every change, who made it.
OrganizationEvent = _event_model(Organization, pghistory.InsertEvent(CREATED), *_changes())

AUDITED_MODELS = (Invoice, Subscription, PaymentAttempt, Payment, PaymentRequest, Refund, CreditNote, CustomerCredit,
                  Plan, Charge, ChargeFilter, Tax, Service, Wallet, WalletTransaction, Commitment, UsageThreshold,
                  LifetimeUsage, RecurringTransactionRule, Organization)


class AuditEvent(pghistory.models.Events):
    """Every audit event of every audited table, for the admin's audit views (pghistory's union of event tables)."""

    class Meta:
        proxy = True
        verbose_name = "audit event"
        ordering = ("-pgh_created_at",)


class ApiLog(models.Model):
    """One write request a service made to the API (Lago's API logs): who, what, how it ended.

    Written by apps/api/request_log.py after the response, one INSERT per POST/PUT/PATCH/DELETE (reads are not
    logged, nor usage ingestion: Lago skips its events endpoint too); kept API_LOG_RETENTION_DAYS, then pruned by
    `api_logs_prune_task`. Not a money row: no audit mirror, and rows are only ever inserted or pruned.
    """

    request_id = models.UUIDField(unique=True)  # the response's X-Request-Id
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+", db_index=False)
    api_key_prefix = models.CharField(max_length=16)  # which of the service's keys (the public prefix)
    api_version = models.CharField(max_length=8)  # "v1"
    http_method = models.CharField(max_length=8)  # lower case, as Lago sends it
    request_path = models.TextField()
    request_origin = models.CharField(max_length=512)  # scheme and host the client called
    client = models.CharField(max_length=512, blank=True)  # the User-Agent header
    http_status = models.PositiveSmallIntegerField()
    # The JSON body as received (an object), or {"truncated": true, "bytes": n} past API_LOG_MAX_BODY_BYTES.
    request_body = models.JSONField(default=dict)
    logged_at = models.DateTimeField()  # when the request arrived
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=("service", "-logged_at"), name="api_log_service_logged_idx"),
                   models.Index(fields=("logged_at",), name="api_log_logged_at_idx")]  # the prune's range

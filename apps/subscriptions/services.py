"""Writes for subscriptions: create (with Lago's upgrade/downgrade rules), update, terminate."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.catalog.models import Plan
from apps.core.exceptions import ValidationFailed
from apps.customers.models import AccountLink, Service
from apps.customers.services import customer_upsert
from apps.webhooks.services import webhook_event_record

from .lifecycle import billing_due_announce
from .models import Subscription, SubscriptionChange, SubscriptionChangeHorizon
from .representations import subscription_out
from .selectors import current_period_end, starts_at


@dataclass(frozen=True)
class SubscriptionRequest:
    external_id: str
    external_customer_id: str
    plan: Plan
    name: str = ""
    billing_time: str = Subscription.BillingTime.CALENDAR
    subscription_at: datetime | None = None
    ending_at: datetime | None = None


def subscription_webhook_record(*, subscription: Subscription, event_type: str) -> None:
    """Record `subscription.started|terminated` for the subscription's service, rendered like the API. Call inside
    the transaction that changed the subscription."""
    webhook_event_record(
        event_type=event_type,
        object_type="subscription",
        payload_object=subscription_out(subscription),
        service_ids=[subscription.service_id],
    )


@transaction.atomic
def subscription_create(*, service: Service, request: SubscriptionRequest) -> Subscription:
    """Create a subscription, Lago-style. Idempotent by external_id for the same plan.

    An active subscription with the same external_id on another plan is upgraded at once
    (plan with a higher yearly amount) or downgraded at its period end (pending successor).
    """
    now = timezone.now()
    if request.plan.service_id != service.pk:
        raise ValueError("plan belongs to another service")  # selectors scope plans; this is a bug guard
    link = _link_for(service=service, external_customer_id=request.external_customer_id)
    # What time has made due comes first: a subscription past its ending date is terminated at that date, not
    # replaced by a plan change now (its successor would inherit an ending date already past, and the old plan
    # would be billed until today).
    subscription_transitions_apply(now=now, customer_ids=[link.customer_id])
    current = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "customer")
        .filter(service=service, external_id=request.external_id, status__in=("active", "pending"))
        .order_by("status")  # "active" before "pending"
        .first()
    )
    if current is not None:
        if current.account_link_id != link.pk:
            raise ValidationFailed("subscription id used", details={"external_id": ["value_already_exist"]})
        if current.plan_id == request.plan.pk:
            return current
        if current.status == Subscription.Status.PENDING:
            # A pending subscription simply changes plan before it starts.
            current.plan = request.plan
            current.save(update_fields=["plan", "updated_at"])
            return current
        return _change_plan(current=current, request=request, now=now)

    begins = request.subscription_at or now
    status = Subscription.Status.PENDING if begins > now else Subscription.Status.ACTIVE
    subscription = _insert(
        service=service,
        link=link,
        request=request,
        status=status,
        subscription_at=begins,
        started_at=begins if status == Subscription.Status.ACTIVE else None,
        previous=None,
    )
    if status == Subscription.Status.ACTIVE:
        subscription_webhook_record(subscription=subscription, event_type="subscription.started")
        if request.plan.pay_in_advance:
            billing_due_announce(customer_id=subscription.customer_id, reason="subscription_starting")
    return subscription


def _link_for(*, service: Service, external_customer_id: str) -> AccountLink:
    link = AccountLink.objects.filter(
        service=service, external_id=external_customer_id, deleted_at__isnull=True
    ).first()
    # Lago creates an unknown customer on the fly.
    return link or customer_upsert(service=service, external_id=external_customer_id, attributes={})


def _insert(
    *, service, link, request, status, subscription_at, started_at, previous,
    billing_time=None, ending_at=None, activates_at=None,
) -> Subscription:
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                service=service,
                account_link=link,
                customer=link.customer,
                plan=request.plan,
                external_id=request.external_id,
                name=request.name,
                status=status,
                billing_time=billing_time or request.billing_time,
                subscription_at=subscription_at,
                activates_at=activates_at,
                started_at=started_at,
                ending_at=ending_at if ending_at is not None else request.ending_at,
                previous_subscription=previous,
            )
    except IntegrityError:
        # A concurrent create with the same external_id won the race.
        raise ValidationFailed("subscription id used", details={"external_id": ["value_already_exist"]}) from None


def _change_plan(*, current: Subscription, request: SubscriptionRequest, now: datetime) -> Subscription:
    """Replace an active subscription's plan. As in Lago, the successor keeps the anchor (`subscription_at`), the
    billing time and the ending date of the subscription it replaces (a new `ending_at` in the request wins):
    a plan change never moves the billing day."""
    if request.plan.amount_currency != current.plan.amount_currency:
        raise ValidationFailed("currency mismatch", details={"currency": ["currencies_does_not_match"]})
    kept = {
        "subscription_at": current.subscription_at,
        "billing_time": current.billing_time,
        "ending_at": request.ending_at if request.ending_at is not None else current.ending_at,
    }
    if request.plan.yearly_amount_cents >= current.plan.yearly_amount_cents:
        # Upgrade: applied at once; rating credits the unused part of an in-advance fee.
        current.status = Subscription.Status.TERMINATED
        current.terminated_at = now
        current.save(update_fields=["status", "terminated_at", "updated_at"])
        # A pending downgrade is canceled, and lets go of `current`: the link is one-to-one, and the upgrade's
        # successor is the subscription that replaces it.
        Subscription.objects.filter(previous_subscription=current, status=Subscription.Status.PENDING).update(
            status=Subscription.Status.CANCELED, canceled_at=now, updated_at=now, previous_subscription=None
        )
        successor = _insert(
            service=current.service,
            link=current.account_link,
            request=request,
            status=Subscription.Status.ACTIVE,
            started_at=now,
            previous=current,
            **kept,
        )
        subscription_webhook_record(subscription=current, event_type="subscription.terminated")
        subscription_webhook_record(subscription=successor, event_type="subscription.started")
        billing_due_announce(customer_id=current.customer_id, reason="upgrading")
        return successor
    # Downgrade: the new plan starts when the current period ends.
    Subscription.objects.filter(
        service=current.service, external_id=current.external_id, status=Subscription.Status.PENDING
    ).delete()
    return _insert(
        service=current.service,
        link=current.account_link,
        request=request,
        status=Subscription.Status.PENDING,
        started_at=None,
        previous=current,
        activates_at=current_period_end(current, at=now),
        **kept,
    )


@transaction.atomic
def subscription_update(*, subscription: Subscription, values: dict) -> Subscription:
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if "subscription_at" in values and subscription.status != Subscription.Status.PENDING:
        raise ValidationFailed("only pending", details={"subscription_at": ["value_is_invalid"]})
    for field, value in values.items():
        setattr(subscription, field, value)
    subscription.save()
    return subscription


@transaction.atomic
def subscription_terminate(
    *, subscription_id: int, at: datetime | None = None, keep_successor: bool = False,
    on_termination_credit_note: str | None = None, announce: bool = True,
) -> Subscription:
    """Terminate an active subscription, or cancel a pending one. Idempotent.

    `keep_successor`: the termination is its pending plan change starting (not canceled, as it is otherwise).
    `on_termination_credit_note`: Lago's choice for the unused part of an in-advance fee (credit, refund, offset,
    skip); the close issues it (`apps.invoicing.close.termination_credits_issue`).
    `announce`: tell billing, after commit, to bill the customer now (Lago's termination invoice); the close,
    which is billing already, says no.
    """
    if on_termination_credit_note is not None and on_termination_credit_note not in Subscription.TerminationCredit.values:
        raise ValidationFailed("bad choice", details={"on_termination_credit_note": ["value_is_invalid"]})
    if at is None:
        # Terminated now, unless time has ended it already (its ending date passed, transitions not run yet).
        customer_id = Subscription.objects.values_list("customer_id", flat=True).get(pk=subscription_id)
        subscription_transitions_apply(now=timezone.now(), customer_ids=[customer_id])
    subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
    now = at or timezone.now()
    if subscription.status == Subscription.Status.PENDING:
        subscription.status = Subscription.Status.CANCELED
        subscription.canceled_at = now
        subscription.save(update_fields=["status", "canceled_at", "updated_at"])
        return subscription
    if subscription.status != Subscription.Status.ACTIVE:
        return subscription
    subscription.status = Subscription.Status.TERMINATED
    subscription.terminated_at = now
    if on_termination_credit_note is not None:
        subscription.on_termination_credit_note = on_termination_credit_note
    subscription.save(update_fields=["status", "terminated_at", "on_termination_credit_note", "updated_at"])
    if not keep_successor:
        # A scheduled downgrade cannot start once its predecessor is terminated early.
        Subscription.objects.filter(previous_subscription=subscription, status=Subscription.Status.PENDING).update(
            status=Subscription.Status.CANCELED, canceled_at=now, updated_at=now
        )
    subscription_webhook_record(subscription=subscription, event_type="subscription.terminated")
    if announce:
        billing_due_announce(customer_id=subscription.customer_id, reason="subscription_terminating")
    return subscription


@transaction.atomic
def subscription_transitions_apply(
    *, now: datetime | None = None, customer_ids: list[int] | None = None, announce: bool = True
) -> int:
    """Apply what time has made due, as of `now`: start pending subscriptions (plan changes, future starts) at
    their start, and terminate active ones at their `ending_at`. Returns how many subscriptions changed.

    Idempotent, and dated by the transitions' own instants, not by when this runs: a late run (or the period
    close, which calls it for the customers it bills, under their locks, before planning) gives the same rows as
    a punctual one. A pending plan change whose predecessor ends (`ending_at`) before it starts is canceled.
    `announce`: tell billing, after commit, to bill now what a start (in advance) or an end makes due; the
    close, which bills right after applying them, says no.
    """
    now = now or timezone.now()
    scope = Q(customer_id__in=customer_ids) if customer_ids is not None else Q()
    changed = 0
    pending = (
        Subscription.objects.select_for_update(of=("self",))
        .filter(scope, status=Subscription.Status.PENDING)
        .filter(Q(activates_at__lte=now) | Q(activates_at__isnull=True, subscription_at__lte=now))
        .select_related("previous_subscription")
        .order_by("pk")
    )
    for subscription in pending:
        start = starts_at(subscription)
        previous = subscription.previous_subscription
        if previous is not None and previous.ending_at is not None and previous.ending_at < start:
            continue  # the predecessor ends first: its termination below cancels this one
        if previous is not None and previous.status == Subscription.Status.ACTIVE:
            subscription_terminate(subscription_id=previous.pk, at=start, keep_successor=True, announce=False)
        subscription.status = Subscription.Status.ACTIVE
        subscription.started_at = start
        subscription.save(update_fields=["status", "started_at", "updated_at"])
        subscription_webhook_record(subscription=subscription, event_type="subscription.started")
        if announce:
            billing_due_announce(customer_id=subscription.customer_id, reason="subscription_starting")
        changed += 1
    ending = (
        Subscription.objects.filter(scope, status=Subscription.Status.ACTIVE, ending_at__lte=now)
        .order_by("pk")
        .values_list("pk", "ending_at")
    )
    for subscription_id, ending_at in list(ending):
        subscription_terminate(subscription_id=subscription_id, at=ending_at, announce=announce)
        changed += 1
    return changed


def subscription_activate_due(*, now: datetime | None = None) -> int:
    """Beat entry point (name kept for the schedule): `subscription_transitions_apply` for every customer."""
    return subscription_transitions_apply(now=now)


# Ingest's cached subscription lookups last at most this long without a fresh snapshot
# (apps/usage/subscription_cache.py); pruning keeps every change a live cache could still miss.
SUBSCRIPTION_LOOKUP_TTL_SECONDS = 600


def subscription_changes_prune(*, now: datetime | None = None) -> int:
    """Delete the change-log rows no cached subscription lookup can still need; return how many.

    A row matters to a cache only if its transaction committed after the cache's snapshot, and
    caches are at most SUBSCRIPTION_LOOKUP_TTL_SECONDS old. A horizon kept at least twice that long
    ago holds a snapshot's xmin: every transaction below it had ended by then, before any live
    cache's snapshot, so its rows are visible to all of them and can go. (A row's own timestamp
    would not do: a long transaction commits long after it wrote the row.)
    """
    now = now or timezone.now()
    keep_after = now - timedelta(seconds=2 * SUBSCRIPTION_LOOKUP_TTL_SECONDS)
    with transaction.atomic():
        horizons = SubscriptionChangeHorizon.objects.select_for_update().order_by("-taken_at")
        ripe = horizons.filter(taken_at__lte=keep_after).first()
        deleted = 0
        if ripe is not None:
            deleted, _ = SubscriptionChange.objects.filter(xid__lt=ripe.horizon_xid).delete()
            SubscriptionChangeHorizon.objects.filter(taken_at__lte=ripe.taken_at).delete()
        newest = horizons.first()
        if newest is None or newest.taken_at <= now - timedelta(seconds=SUBSCRIPTION_LOOKUP_TTL_SECONDS):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                (xmin,) = cursor.fetchone()
            SubscriptionChangeHorizon.objects.create(horizon_xid=xmin, taken_at=now)
    return deleted


@transaction.atomic
def customer_link_delete(*, link_id: int) -> AccountLink:
    """Delete a service's view of a customer and terminate that service's live subscriptions and wallets on it.

    Here rather than in customers.services: customers sit below subscriptions and do not import them."""
    link = AccountLink.objects.select_for_update().get(pk=link_id)
    if link.deleted_at is not None:
        return link
    for subscription in link.subscriptions.filter(status__in=("active", "pending")):
        subscription_terminate(subscription_id=subscription.pk)
    from .lifecycle import link_deleted_announce

    link_deleted_announce(link_id=link.pk)  # invoicing terminates the link's wallets (Lago), in this transaction
    link.deleted_at = timezone.now()
    link.save(update_fields=["deleted_at", "updated_at"])
    return link

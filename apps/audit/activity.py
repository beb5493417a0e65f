"""Lago's activity logs (GET /activity_logs), read from the money audit's events (apps/audit/models.py).

Each created, changed or deleted event of a row Lago's activity logs know (plans, subscriptions, invoices, credit
notes, wallets and their transactions, payments) is one activity, typed in Lago's words where one fits
(`plan.created`, `subscription.terminated`, `invoice.voided`, `payment.recorded`; `<resource>.updated` otherwise).
The audit's `before` rows are not activities: they give a change's old values (`activity_object_changes`). A
service sees the activities of its own rows: its plans, subscriptions and wallets, and the invoices (with their
credit notes and payments) GET /invoices lists to it. Charges, taxes, refunds, payment attempts, customer credit and
the service's key stay in the admin's audit, which Lago has no activity for.

`activity_id` is a UUID (version 8, RFC 9562's custom layout) that carries the event's table and id, so one
activity is found again without a table of ids: `ACTIVITY_PREFIX` (32 bits), the source's index (16 bits), version
8, zero, the variant, then the event's `pgh_id` (62 bits).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection

from apps.core.exceptions import NotFound
from apps.customers.models import AccountLink, Service
from apps.invoicing.models import Invoice, Wallet
from apps.invoicing.selectors import invoice_list
from apps.subscriptions.models import Subscription

from . import models as audit

ACTIVITY_PREFIX = 0x6E657861  # "nexa"
LINK = AccountLink._meta.db_table
INVOICE = Invoice._meta.db_table
WALLET = Wallet._meta.db_table
SUBSCRIPTION = Subscription._meta.db_table
CONTEXT = "pghistory_context"
USER = get_user_model()._meta.db_table

# The service's external id of a customer (`{customer}`: the SQL naming the customer's id).
_CUSTOMER_EXTERNAL_ID = (f"(SELECT l.external_id FROM {LINK} l WHERE l.customer_id = {{customer}} "
                         "AND l.service_id = %(service)s AND l.deleted_at IS NULL ORDER BY l.id LIMIT 1)")
_LINK_EXTERNAL_ID = f"(SELECT l.external_id FROM {LINK} l WHERE l.id = {{link}})"


@dataclass(frozen=True)
class Source:
    model: type
    resource_type: str
    scope: str  # SQL over the event `e`: rows of the service (%(service)s) or of its invoices (%(invoices)s)
    activity_type: str  # SQL over `e` and its paired `before` row `b` (null for created and deleted events)
    external_customer_id: str = "NULL"
    external_subscription_id: str = "NULL"


def _changed(column: str, value: str) -> str:
    return f"(e.{column} = '{value}' AND b.{column} IS DISTINCT FROM '{value}')"


SOURCES: tuple[Source, ...] = (
    Source(audit.PlanEvent, "Plan", "e.service_id = %(service)s",
           "CASE WHEN e.pgh_label = 'created' THEN 'plan.created' WHEN e.pgh_label = 'deleted' THEN 'plan.deleted' "
           "WHEN e.deleted_at IS NOT NULL AND b.deleted_at IS NULL THEN 'plan.deleted' ELSE 'plan.updated' END"),
    Source(audit.SubscriptionEvent, "Subscription", "e.service_id = %(service)s",
           f"CASE WHEN {_changed('status', 'active')} THEN 'subscription.started' "
           f"WHEN {_changed('status', 'terminated')} THEN 'subscription.terminated' "
           f"WHEN {_changed('status', 'canceled')} THEN 'subscription.canceled' ELSE 'subscription.updated' END",
           _LINK_EXTERNAL_ID.format(link="e.account_link_id"), "e.external_id"),
    Source(audit.InvoiceEvent, "Invoice", "e.pgh_obj_id IN (%(invoices)s)",
           f"CASE WHEN {_changed('status', 'finalized')} THEN 'invoice.created' "
           f"WHEN {_changed('status', 'voided')} THEN 'invoice.voided' "
           "WHEN e.payment_status IS DISTINCT FROM b.payment_status THEN 'invoice.payment_status_updated' "
           "ELSE 'invoice.updated' END",
           _CUSTOMER_EXTERNAL_ID.format(customer="e.customer_id")),
    Source(audit.CreditNoteEvent, "CreditNote", "e.invoice_id IN (%(invoices)s)",
           "CASE WHEN e.pgh_label = 'created' THEN 'credit_note.created' "
           "WHEN e.pgh_label = 'deleted' THEN 'credit_note.deleted' "
           f"WHEN {_changed('refund_status', 'failed')} THEN 'credit_note.refund_failure' ELSE 'credit_note.updated' END",
           _CUSTOMER_EXTERNAL_ID.format(customer="e.customer_id"),
           f"(SELECT s.external_id FROM {SUBSCRIPTION} s WHERE s.id = e.subscription_id)"),
    Source(audit.WalletEvent, "Wallet", "e.service_id = %(service)s",
           "CASE WHEN e.pgh_label = 'created' THEN 'wallet.created' WHEN e.pgh_label = 'deleted' THEN 'wallet.deleted' "
           "ELSE 'wallet.updated' END",
           _LINK_EXTERNAL_ID.format(link="e.account_link_id")),
    Source(audit.WalletTransactionEvent, "WalletTransaction",
           f"e.wallet_id IN (SELECT w.id FROM {WALLET} w WHERE w.service_id = %(service)s)",
           "CASE WHEN e.pgh_label = 'created' THEN 'wallet_transaction.created' "
           "WHEN e.pgh_label = 'deleted' THEN 'wallet_transaction.deleted' "
           f"WHEN {_changed('status', 'failed')} THEN 'wallet_transaction.payment_failure' "
           "ELSE 'wallet_transaction.updated' END",
           _LINK_EXTERNAL_ID.format(link=f"(SELECT w.account_link_id FROM {WALLET} w WHERE w.id = e.wallet_id)")),
    Source(audit.PaymentEvent, "Payment", "e.invoice_id IN (%(invoices)s)",
           "CASE WHEN e.pgh_label = 'created' THEN 'payment.recorded' WHEN e.pgh_label = 'deleted' THEN 'payment.deleted' "
           "ELSE 'payment.updated' END",
           _CUSTOMER_EXTERNAL_ID.format(customer=f"(SELECT i.customer_id FROM {INVOICE} i WHERE i.id = e.invoice_id)")),
)
RESOURCE_TYPES = sorted({source.resource_type for source in SOURCES})
ACTIVITY_SOURCES = ("api", "front", "system")

# Where the activity came from, by what the request wrote into the audit context: the API's caller (apps/api/auth.py)
# or a staff user (pghistory's middleware); neither is the close, a task or Stripe's webhook.
_ACTIVITY_SOURCE = ("CASE WHEN c.metadata ? 'service_id' THEN 'api' "
                    "WHEN c.metadata->>'user' IS NOT NULL THEN 'front' ELSE 'system' END")


def activity_id(source_index: int, pgh_id: int) -> str:
    value = (ACTIVITY_PREFIX << 96) | (source_index << 80) | (0x8 << 76) | (0b10 << 62) | pgh_id
    return str(uuid.UUID(int=value))


def _parse_activity_id(raw: str) -> tuple[int, int] | None:
    try:
        value = uuid.UUID(raw).int
    except (ValueError, AttributeError, TypeError):
        return None
    index, pgh_id = (value >> 80) & 0xFFFF, value & ((1 << 62) - 1)
    if value >> 96 != ACTIVITY_PREFIX or index >= len(SOURCES) or activity_id(index, pgh_id) != str(uuid.UUID(raw)):
        return None
    return index, pgh_id


@dataclass(frozen=True)
class ActivityFilters:
    logged_from: datetime | None = None
    logged_to: datetime | None = None
    activity_types: tuple[str, ...] = ()
    activity_sources: tuple[str, ...] = ()
    user_emails: tuple[str, ...] = ()
    external_customer_id: str | None = None
    external_subscription_id: str | None = None
    resource_ids: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    only: tuple[int, int] | None = None  # (source index, pgh_id): one activity


def _union(service: Service, filters: ActivityFilters) -> tuple[str, dict]:
    invoices_sql, invoices_params = (invoice_list(service=service).order_by().values("id").query.sql_with_params())
    # Named parameters: the invoice subquery's positional %s become %(inv_N)s.
    names = [f"inv_{n}" for n in range(len(invoices_params))]
    invoices_sql = invoices_sql.replace("%%", "%%%%") % tuple(f"%({name})s" for name in names)
    params: dict = {"service": service.pk, **dict(zip(names, invoices_params, strict=True))}
    parts = []
    for index, source in enumerate(SOURCES):
        if filters.resource_types and source.resource_type not in filters.resource_types:
            continue
        if filters.only and filters.only[0] != index:
            continue
        table = source.model._meta.db_table
        parts.append(f"""
            SELECT {index} AS source, e.pgh_id, e.pgh_created_at AS logged_at,
                   ({source.activity_type}) AS activity_type,
                   {_ACTIVITY_SOURCE} AS activity_source, u.email AS user_email,
                   '{source.resource_type}' AS resource_type, e.lago_id::text AS resource_id,
                   {source.external_customer_id} AS external_customer_id,
                   {source.external_subscription_id} AS external_subscription_id
            FROM {table} e
            LEFT JOIN {CONTEXT} c ON c.id = e.pgh_context_id
            LEFT JOIN {USER} u ON u.id::text = c.metadata->>'user'
            LEFT JOIN LATERAL (
                SELECT * FROM {table} p WHERE e.pgh_label = 'changed' AND p.pgh_obj_id = e.pgh_obj_id
                AND p.pgh_label = 'before' AND p.pgh_id < e.pgh_id ORDER BY p.pgh_id DESC LIMIT 1
            ) b ON TRUE
            WHERE e.pgh_label IN ('created', 'changed', 'deleted') AND {source.scope.replace('%(invoices)s', invoices_sql)}
        """)
    if not parts:
        return "SELECT NULL::int AS source, NULL::bigint AS pgh_id, NULL::timestamptz AS logged_at WHERE FALSE", params
    where, values = [], {}
    for clause, name, value in (("logged_at >= %(from)s", "from", filters.logged_from),
                                ("logged_at <= %(to)s", "to", filters.logged_to),
                                ("external_customer_id = %(customer)s", "customer", filters.external_customer_id),
                                ("external_subscription_id = %(subscription)s", "subscription",
                                 filters.external_subscription_id)):
        if value is not None:
            where.append(clause)
            values[name] = value
    for column, name, value in (("activity_type", "types", filters.activity_types),
                                ("activity_source", "sources", filters.activity_sources),
                                ("user_email", "emails", filters.user_emails),
                                ("resource_id", "resources", filters.resource_ids)):
        if value:
            where.append(f"{column} = ANY(%({name})s)")
            values[name] = list(value)
    if filters.only:
        where.append("pgh_id = %(only)s")
        values["only"] = filters.only[1]
    sql = f"SELECT * FROM ({' UNION ALL '.join(parts)}) activity"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, {**params, **values}


class ActivityPage:
    """The service's activities, newest first, as a sliceable list for `paginate` (one count, one page read)."""

    def __init__(self, service: Service, filters: ActivityFilters):
        self.service, self.sql, self.params = service, *_union(service, filters)

    def count(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({self.sql}) counted", self.params)
            return cursor.fetchone()[0]

    def __getitem__(self, window: slice) -> list[dict]:
        limit, offset = window.stop - window.start, window.start
        with connection.cursor() as cursor:
            cursor.execute(f"{self.sql} ORDER BY logged_at DESC, source DESC, pgh_id DESC "
                           "LIMIT %(limit)s OFFSET %(offset)s", {**self.params, "limit": limit, "offset": offset})
            columns = [column.name for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        return _with_objects(rows)


def _snapshot(event) -> dict:
    """The row as the event recorded it: its own fields, not the audit's nor the foreign keys' internal ids."""
    out = {}
    for field in event._meta.concrete_fields:
        if field.name.startswith("pgh_") or field.name == "id" or field.is_relation:
            continue
        out[field.name] = field.value_to_string(event) if not isinstance(
            getattr(event, field.attname), (bool, int, dict, list, type(None))) else getattr(event, field.attname)
    return out


def _with_objects(rows: list[dict]) -> list[dict]:
    """Add each activity's object (the row after it) and changes ({field: [before, after]} for an update)."""
    wanted: dict[int, set[int]] = {}
    for row in rows:
        wanted.setdefault(row["source"], set()).add(row["pgh_id"])
    events, befores = {}, {}
    for index, ids in wanted.items():
        model = SOURCES[index].model
        for event in model.objects.filter(pgh_id__in=ids):
            events[(index, event.pgh_id)] = event
        changed = [events[(index, pgh_id)] for pgh_id in ids if events[(index, pgh_id)].pgh_label == "changed"]
        for event in changed:  # at most a page's worth, each the row just before in the same table
            before = (model.objects.filter(pgh_obj_id=event.pgh_obj_id, pgh_label="before", pgh_id__lt=event.pgh_id)
                      .order_by("-pgh_id").first())
            if before is not None:
                befores[(index, event.pgh_id)] = before
    for row in rows:
        key = (row["source"], row["pgh_id"])
        after = _snapshot(events[key])
        before = befores.get(key)
        row["activity_object"] = after
        if before is None:
            row["activity_object_changes"] = {}
        else:
            old = _snapshot(before)
            row["activity_object_changes"] = {name: [old.get(name), value] for name, value in after.items()
                                              if old.get(name) != value}
    return rows


def activity_list(*, service: Service, filters: ActivityFilters) -> ActivityPage:
    return ActivityPage(service, filters)


def activity_get(*, service: Service, activity_id_text: str) -> dict:
    found = _parse_activity_id(activity_id_text)
    if found is not None:
        rows = ActivityPage(service, ActivityFilters(only=found))[0:1]
        if rows:
            return rows[0]
    raise NotFound("activity_log")

"""Reads for invoices and credit notes, scoped by the calling service.

A service sees an invoice when the invoice bills one of its subscriptions or carries one of its add-ons
(`Fee.service`); customers shared between services thus get one invoice both can read. An invoice with no line
is seen by each service linked with its customer.
"""
from __future__ import annotations

import hashlib
import json

from datetime import date
from decimal import Decimal
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Sum

from apps.catalog.taxes import ScheduledTax, TaxRate, TaxSchedule, rate_percent
from apps.core.exceptions import NotFound
from apps.customers.models import AccountLink, Service

from .models import (CreditNote, CreditNoteItem, Fee, Invoice, InvoiceSubscription, RecurringTransactionRule, Wallet,
                     WalletTransaction)


def _visible(service: Service) -> Q:
    # An invoice with no line at all bills no service, so no other service's identifiers are on it: each service
    # its customer is linked with may read (and void) it. A draft's refresh empties one when nothing it billed is
    # owed any more (an in-advance subscription upgraded the day it began bills that day on the new plan).
    return Exists(Fee.objects.filter(invoice=OuterRef("pk"), service=service)) | (
        ~Exists(Fee.objects.filter(invoice=OuterRef("pk")))
        & Exists(AccountLink.objects.filter(customer=OuterRef("customer_id"), service=service, deleted_at__isnull=True))
    )


def invoice_list(
    *,
    service: Service,
    external_customer_id: str | None = None,
    statuses: list[str] | None = None,
    payment_statuses: list[str] | None = None,
    invoice_type: str | None = None,
    currency: str | None = None,
    issuing_date_from: date | None = None,
    issuing_date_to: date | None = None,
    amount_from: int | None = None,
    amount_to: int | None = None,
    payment_overdue: bool | None = None,
) -> QuerySet[Invoice]:
    queryset = Invoice.objects.filter(_visible(service)).exclude(status=Invoice.Status.DELETED).select_related("customer")
    if external_customer_id:
        queryset = queryset.filter(
            customer__account_links__service=service,
            customer__account_links__external_id=external_customer_id,
            customer__account_links__deleted_at__isnull=True,
        )
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if payment_statuses:
        queryset = queryset.filter(payment_status__in=payment_statuses)
    if invoice_type:
        queryset = queryset.filter(invoice_type=invoice_type)
    if currency:
        queryset = queryset.filter(currency=currency)
    if issuing_date_from:
        queryset = queryset.filter(issuing_date__gte=issuing_date_from)
    if issuing_date_to:
        queryset = queryset.filter(issuing_date__lte=issuing_date_to)
    if amount_from is not None:
        queryset = queryset.filter(total_amount_cents__gte=amount_from)
    if amount_to is not None:
        queryset = queryset.filter(total_amount_cents__lte=amount_to)
    if payment_overdue is not None:
        queryset = queryset.filter(payment_overdue=payment_overdue)
    return queryset.order_by("-issuing_date", "-id")


def invoice_get(*, service: Service, lago_id: UUID | str) -> Invoice:
    """Return the invoice if the service may see it; 404 `invoice_not_found` otherwise."""
    try:
        return invoice_list(service=service).get(lago_id=lago_id)
    except (Invoice.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("invoice") from None


def credit_note_list(*, service: Service, external_customer_id: str | None = None) -> QuerySet[CreditNote]:
    queryset = CreditNote.objects.filter(invoice__in=invoice_list(service=service)).select_related("invoice", "customer")
    if external_customer_id:
        queryset = queryset.filter(
            customer__account_links__service=service, customer__account_links__external_id=external_customer_id
        )
    return queryset.order_by("-created_at", "-id")


def credit_note_get(*, service: Service, lago_id: UUID | str) -> CreditNote:
    try:
        return credit_note_list(service=service).get(lago_id=lago_id)
    except (CreditNote.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("credit_note") from None


def invoice_service_ids(invoice: Invoice) -> list[int]:
    """Return the ids of the services whose lines the invoice bills (the services that may see it), sorted.

    Same rule as `_visible`: a service is entitled to an invoice's events when one of its fees is on it.
    """
    return sorted(
        set(Fee.objects.filter(invoice=invoice, service__isnull=False).values_list("service_id", flat=True))
    )


def fee_remaining_to_credit(invoice: Invoice) -> dict[int, int]:
    """Return, per fee of the invoice, the cents (tax excluded) not yet credited by a credit note."""
    credited = dict(
        CreditNoteItem.objects.filter(credit_note__invoice=invoice)  # voided notes too (Lago): credited once
        .values_list("fee_id")
        .annotate(total=Sum("amount_cents"))
    )
    return {fee.pk: fee.amount_cents - credited.get(fee.pk, 0) for fee in invoice.fees.order_by("pk")}


def invoice_list_for_customer(*, customer_id: int, limit: int = 25) -> list[Invoice]:
    """Return a customer's latest invoices, newest first (staff views; not scoped by service)."""
    return list(Invoice.objects.filter(customer_id=customer_id).order_by("-issuing_date", "-id")[:limit])


def invoice_payment_link(invoice: Invoice) -> str | None:
    """Return the invoice's Checkout link while it is payable (finalized, amount due, not paid), else None.

    The link is stored by apps.payments when it collects a customer without a saved card; once the invoice
    is paid, voided or credited to zero the stale link is not shown (API body, webhooks, PDF).
    """
    payable = (
        invoice.status == Invoice.Status.FINALIZED
        and invoice.payment_status != Invoice.PaymentStatus.SUCCEEDED
        and invoice.total_due_amount_cents > 0
    )
    return invoice.payment_url or None if payable else None


def tax_schedule() -> TaxSchedule:
    """The hub-wide sales taxes billing charges (catalog.Tax rows without a service), dated (taxes.TaxSchedule).

    Read fresh on each call (one query): the close reads it once per batch, so a rate staff add in the admin
    applies from the next batch on. Each row gives one TaxRate object, shared by every line it taxes.
    """
    from apps.catalog.models import Tax

    rows = Tax.objects.filter(service__isnull=True).exclude(country="").exclude(component="").order_by("code")
    return TaxSchedule(
        ScheduledTax(
            rate=TaxRate(row.code, row.name, rate_percent(row.rate)),
            component=row.component,
            country=row.country,
            provinces=tuple(row.provinces),
            valid_from=row.valid_from,
        )
        for row in rows
    )


def wallet_list(*, service: Service, external_customer_id: str | None = None,
                status: str | None = None) -> QuerySet[Wallet]:
    """The service's wallets, newest first; a customer is named by the service's own external id."""
    rows = (Wallet.objects.filter(service=service).select_related("account_link")
            .prefetch_related(Prefetch("recurring_rules", to_attr="active_recurring_rules",
                                       queryset=RecurringTransactionRule.objects.filter(status="active"))))
    if external_customer_id is not None:
        rows = rows.filter(account_link__external_id=external_customer_id, account_link__deleted_at__isnull=True)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")


def wallet_get(*, service: Service, lago_id) -> Wallet:
    """The service's wallet `lago_id`; 404 `wallet_not_found` for another service's, or none."""
    try:
        found = wallet_list(service=service).filter(lago_id=lago_id).first()
    except DjangoValidationError:  # not a UUID
        found = None
    if found is None:
        raise NotFound("wallet")
    return found


def wallet_get_by_code(*, service: Service, external_customer_id: str, code: str) -> Wallet:
    """The service's customer's wallet `code` (Lago's customer-nested paths: an active one first, else the newest
    terminated); 404 `wallet_not_found`."""
    found = (wallet_list(service=service, external_customer_id=external_customer_id).filter(code=code)
             .order_by("status", "-created_at", "-id").first())
    if found is None or not code:
        raise NotFound("wallet")
    return found


def wallet_transaction_get(*, service: Service, lago_id) -> WalletTransaction:
    """The service's wallet transaction `lago_id`; 404 `wallet_transaction_not_found` otherwise."""
    try:
        found = (WalletTransaction.objects.filter(wallet__service=service, lago_id=lago_id)
                 .select_related("wallet", "invoice", "wallet__account_link", "wallet__customer").first())
    except DjangoValidationError:
        found = None
    if found is None:
        raise NotFound("wallet_transaction")
    return found


def wallet_transaction_list(*, wallet: Wallet, status: str | None = None, transaction_status: str | None = None,
                            transaction_type: str | None = None) -> QuerySet[WalletTransaction]:
    """A wallet's transactions, newest first."""
    rows = WalletTransaction.objects.filter(wallet=wallet).select_related("wallet", "invoice")
    if status:
        rows = rows.filter(status=status)
    if transaction_status:
        rows = rows.filter(transaction_status=transaction_status)
    if transaction_type:
        rows = rows.filter(transaction_type=transaction_type)
    return rows.order_by("-created_at", "-id")


# Up to this many matching customers go into the invoice query as a list of ids (an index lookup each); more
# (a broad word like "Inc") as a subquery, which then matches most invoices anyway.
SEARCH_CUSTOMER_IDS_INLINE = 5000


def invoices_matching(queryset: QuerySet, *, text: str) -> QuerySet:
    """Narrow `queryset` to the invoices staff searched for: a lago id, a whole invoice number, or customers.

    Customers first: the words are matched against customers (external id, name, legal name), then their
    invoices are read through the (customer, issuing_date) index, plus the invoice whose number is the text.
    An ILIKE over every invoice joined to its customer read 240,000 rows per search (bench/admin.py). Only
    when neither matches is the text looked for inside numbers (a part of one, "000123"), over every invoice.
    """
    from apps.customers.selectors import customers_matching

    text = text.strip()
    if not text:
        return queryset
    try:
        return queryset.filter(lago_id=UUID(text))
    except ValueError:
        pass
    by_number = list(Invoice.objects.exclude(number="").filter(number__in={text, text.upper()})
                     .values_list("pk", flat=True))
    customers = customers_matching(text=text)
    customer_ids = list(customers.values_list("pk", flat=True)[: SEARCH_CUSTOMER_IDS_INLINE + 1])
    if len(customer_ids) > SEARCH_CUSTOMER_IDS_INLINE:
        by_customer = Q(customer__in=customers.values("pk"))
    else:
        by_customer = Q(customer_id__in=customer_ids)
    if customer_ids or by_number:
        return queryset.filter(by_customer | Q(pk__in=by_number))
    return queryset.filter(number__icontains=text)


def fee_list(*, service: Service, external_customer_id: str | None = None, external_subscription_id: str | None = None,
             fee_types: list[str] | None = None, billable_metric_code: str | None = None,
             payment_status: str | None = None, currency: str | None = None,
             created_at_from=None, created_at_to=None) -> QuerySet[Fee]:
    """The fees the service billed (Lago's GET /fees), newest first: never another service's line of a shared
    invoice, whose identifiers it must not see."""
    queryset = Fee.objects.filter(service=service).exclude(invoice__status=Invoice.Status.DELETED).select_related(
        "invoice", "service", "subscription__plan", "charge__billable_metric", "charge_filter")
    if external_customer_id:
        queryset = queryset.filter(invoice__customer__account_links__service=service,
                                   invoice__customer__account_links__external_id=external_customer_id,
                                   invoice__customer__account_links__deleted_at__isnull=True)
    if external_subscription_id:
        queryset = queryset.filter(subscription__external_id=external_subscription_id)
    if fee_types:
        queryset = queryset.filter(fee_type__in=fee_types)
    if billable_metric_code:
        queryset = queryset.filter(charge__billable_metric__code=billable_metric_code)
    if payment_status:
        queryset = queryset.filter(invoice__payment_status=payment_status)
    if currency:
        queryset = queryset.filter(currency=currency)
    if created_at_from is not None:
        queryset = queryset.filter(created_at__gte=created_at_from)
    if created_at_to is not None:
        queryset = queryset.filter(created_at__lte=created_at_to)
    return queryset.order_by("-created_at", "-id")


def fee_get(*, service: Service, lago_id: UUID | str) -> Fee:
    try:
        return fee_list(service=service).get(lago_id=lago_id)
    except (Fee.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("fee") from None


def past_usage_periods(*, service: Service, account_link: AccountLink, external_subscription_id: str,
                       periods_count: int | None = None):
    """The billing periods of the link's subscription(s) with that external id that finalized invoices closed,
    newest first (Lago's past usage); `periods_count`: only the latest so many."""
    periods = (InvoiceSubscription.objects
               .filter(subscription__service=service, subscription__account_link=account_link,
                       subscription__external_id=external_subscription_id,
                       invoice__status=Invoice.Status.FINALIZED)
               .select_related("invoice", "subscription__plan")
               .order_by("-charges_to_datetime", "-id"))
    if periods_count is not None:
        periods = periods.filter(pk__in=list(periods.values_list("pk", flat=True)[:periods_count]))
    return periods


def past_usage_fees(periods, *, billable_metric_code: str | None = None) -> dict[tuple[int, int], list[Fee]]:
    """{(invoice id, subscription id): its charge fees} for a page of `past_usage_periods`: one read."""
    pairs = {(period.invoice_id, period.subscription_id) for period in periods}
    fees = Fee.objects.filter(invoice_id__in={i for i, _ in pairs}, subscription_id__in={s for _, s in pairs},
                              fee_type=Fee.FeeType.CHARGE).select_related("charge__billable_metric", "charge_filter").order_by("id")
    if billable_metric_code:
        fees = fees.filter(charge__billable_metric__code=billable_metric_code)
    out: dict[tuple[int, int], list[Fee]] = {}
    for fee in fees:
        out.setdefault((fee.invoice_id, fee.subscription_id), []).append(fee)
    return out


PROGRESSIVE_FEE_PATTERN = "sub:%:progressive:%"


def progressive_billed(
    keys: list[tuple[int, object, object]],
) -> dict[tuple[int, int, int | None, object], tuple[int, Decimal]]:
    """Per (subscription id, charge id, charge filter id or None, pricing group (`group_canon`, "{}" for none),
    period start): (cents, precise) that progressive billing invoices (not voided) billed of that charge (that
    filter's and group's fee) in that period. `keys`: (subscription
    id, period start, period end) in UTC."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT v.id, f.charge_id, f.charge_filter_id, f.grouped_by, v.p_from, sum(f.amount_cents),
                   sum(f.precise_amount)
              -- From the batch's customers' progressive invoices (a partial index; usually none) to their fees: a
              -- plan that starts from the fees read every fee ever written, or scanned the fee table once per
              -- subscription when its statistics were stale during a large close.
              FROM invoicing_invoice i
              JOIN invoicing_fee f ON f.invoice_id = i.id
              JOIN unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, p_from, p_to)
                ON v.id = f.subscription_id
             WHERE i.invoice_type = 'progressive_billing' AND i.status <> %s
               AND i.customer_id IN (SELECT customer_id FROM subscriptions_subscription WHERE id = ANY(%s::bigint[]))
               AND f.from_datetime >= v.p_from AND f.to_datetime <= v.p_to
             GROUP BY v.id, f.charge_id, f.charge_filter_id, f.grouped_by, v.p_from
            """,
            [[key[0] for key in keys], [key[1] for key in keys], [key[2] for key in keys],
             Invoice.Status.VOIDED, [key[0] for key in keys]],
        )
        return {(sub_id, charge_id, filter_id, group_canon(_json_value(group) or {}), p_from): (int(cents), Decimal(precise))
                for sub_id, charge_id, filter_id, group, p_from, cents, precise in cursor}


def _json_value(raw):
    return json.loads(raw) if isinstance(raw, str) else raw


def group_canon(grouped_by: dict) -> str:
    """A fee's pricing group ({key: value}) as canonical JSON: how progressive billing and the close name it."""
    return json.dumps(grouped_by, sort_keys=True, separators=(",", ":"))


def group_key_part(grouped_by: dict) -> str:
    """The fee key's part naming a pricing group (after `:group:`): its canonical JSON (ASCII), or a digest of it
    when long (fee keys hold 255 characters) or when a key or value holds a colon (fee keys are matched by
    `:progressive:`-like segments: an event's value must never look like one)."""
    canon = group_canon(grouped_by)
    colon = any(":" in str(part) for item in grouped_by.items() for part in item if part is not None)
    return canon if len(canon) <= 120 and not colon else "sha256:" + hashlib.sha256(canon.encode()).hexdigest()

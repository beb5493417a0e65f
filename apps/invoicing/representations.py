"""Lago's bodies for invoices, fees, credit notes and current usage: plain functions of the models, used by the API
and by the webhooks' payloads (byte-identical in both)."""
from __future__ import annotations

from decimal import Decimal

from django.db.models import Prefetch, prefetch_related_objects

from apps.core.money import from_minor_units
from apps.core.representations import decimal_str, ts
from apps.customers.models import AccountLink, Service
from apps.customers.representations import customer_out

from .models import (
    CouponCredit, CreditApplication, CreditNote, Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription, Wallet,
    WalletTransaction,
)
from .selectors import invoice_payment_link

VERSION_NUMBER = 4  # Lago's invoice amount formulas (research/lago-api.md §2.7)


def _link_for(invoice_or_note, service: Service | None) -> AccountLink | None:
    links = AccountLink.objects.filter(customer_id=invoice_or_note.customer_id, deleted_at__isnull=True)
    if service is not None:
        links = links.filter(service=service)
    return links.order_by("id").first()


def _date(value) -> str | None:
    return value.isoformat() if value else None


def applied_tax_out(item: dict, *, fee: Fee | None = None) -> dict:
    return {
        "tax_code": item["code"],
        "tax_name": item["name"],
        "tax_rate": decimal_str(Decimal(item["rate"])),
        "amount_cents": item["amount_cents"],
        "amount_currency": fee.currency if fee else None,
        "lago_fee_id": str(fee.lago_id) if fee else None,
    }


OTHER_SERVICES = "Other services"
WALLET_FEE_PREFIX = "wallet_transaction:"  # fee_key of a top-up's fee: the wallet transaction's lago_id follows


def fee_out(fee: Fee, *, viewer: Service | None = None) -> dict:
    """Return Lago's Fee object. `viewer`: the service the body is for; a line another service billed (a customer
    linked across services gets one invoice) is shown without that service's identifiers (plan and metric codes,
    subscription and charge ids, its name), as an "Other services" line, so the invoice's totals still add up."""
    if viewer is not None and fee.service_id is not None and fee.service_id != viewer.pk:
        return _foreign_fee_out(fee)
    subscription, charge = fee.subscription, fee.charge
    item_id = str(charge.billable_metric.lago_id) if charge else None
    if fee.fee_type == Fee.FeeType.ADD_ON:
        item_code, item_type = fee.add_on_code, "AddOn"
    elif fee.fee_key.startswith(WALLET_FEE_PREFIX):  # a wallet top-up's purchased credits (Lago's credit fee)
        item_code, item_type, item_id = "credit", "WalletTransaction", fee.fee_key.removeprefix(WALLET_FEE_PREFIX)
    elif charge is not None:
        item_code, item_type = charge.billable_metric.code, "BillableMetric"
    else:
        item_code, item_type = (subscription.plan.code if subscription else ""), "Subscription"
    return {
        "lago_id": str(fee.lago_id),
        "lago_charge_id": str(charge.lago_id) if charge else None,
        "lago_invoice_id": str(fee.invoice.lago_id),
        "lago_subscription_id": str(subscription.lago_id) if subscription else None,
        "external_subscription_id": subscription.external_id if subscription else None,
        "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "item": {
            "type": fee.fee_type,
            "code": item_code,
            "name": fee.name,
            "invoice_display_name": fee.name,
            "description": fee.description or None,
            "lago_item_id": item_id,
            "item_type": item_type,
            "filters": None,
            "grouped_by": {},
        },
        "service_code": fee.service.code if fee.service_id else None,
        "pay_in_advance": bool(fee.amount_details.get("pay_in_advance", False)),
        "invoiceable": True,
        "amount_cents": fee.amount_cents,
        "amount_currency": fee.currency,
        "precise_amount": decimal_str(fee.precise_amount),
        "precise_unit_amount": decimal_str(fee.precise_unit_amount),
        "units": decimal_str(fee.units),
        "total_aggregated_units": decimal_str(fee.total_aggregated_units),
        "events_count": fee.events_count,
        "taxes_amount_cents": fee.taxes_amount_cents,
        "taxes_rate": decimal_str(fee.taxes_rate),
        "total_amount_cents": fee.amount_cents - fee.coupons_amount_cents + fee.taxes_amount_cents,
        "total_amount_currency": fee.currency,
        "sub_total_excluding_taxes_amount_cents": fee.amount_cents - fee.coupons_amount_cents,
        # Whole minor units here (the hub spreads each coupon in cents: apps/invoicing/discounts.py).
        "precise_coupons_amount_cents": decimal_str(Decimal(fee.coupons_amount_cents)),
        "amount_details": fee.amount_details,
        "is_adjustment": fee.is_adjustment,
        "payment_status": fee.invoice.payment_status,
        "from_date": ts(fee.from_datetime),
        "to_date": ts(fee.to_datetime),
        "created_at": ts(fee.created_at),
        "applied_taxes": [applied_tax_out(item, fee=fee) for item in fee.applied_taxes],
    }


def _foreign_fee_out(fee: Fee) -> dict:
    return {
        "lago_id": str(fee.lago_id),
        "lago_charge_id": None,
        "lago_invoice_id": str(fee.invoice.lago_id),
        "lago_subscription_id": None,
        "external_subscription_id": None,
        "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "item": {
            "type": fee.fee_type,
            "code": "other_services",
            "name": OTHER_SERVICES,
            "invoice_display_name": OTHER_SERVICES,
            "description": None,
            "lago_item_id": None,
            "item_type": "AddOn" if fee.fee_type == Fee.FeeType.ADD_ON else "Subscription",
            "filters": None,
            "grouped_by": {},
        },
        "service_code": None,
        "pay_in_advance": False,
        "invoiceable": True,
        "amount_cents": fee.amount_cents,
        "amount_currency": fee.currency,
        "precise_amount": decimal_str(fee.precise_amount),
        "precise_unit_amount": decimal_str(fee.precise_amount),
        "units": "1.0",
        "total_aggregated_units": "1.0",
        "events_count": 0,
        "taxes_amount_cents": fee.taxes_amount_cents,
        "taxes_rate": decimal_str(fee.taxes_rate),
        "total_amount_cents": fee.amount_cents - fee.coupons_amount_cents + fee.taxes_amount_cents,
        "total_amount_currency": fee.currency,
        "sub_total_excluding_taxes_amount_cents": fee.amount_cents - fee.coupons_amount_cents,
        "precise_coupons_amount_cents": decimal_str(Decimal(fee.coupons_amount_cents)),
        "amount_details": {},
        "is_adjustment": fee.is_adjustment,
        "payment_status": fee.invoice.payment_status,
        "from_date": ts(fee.from_datetime),
        "to_date": ts(fee.to_datetime),
        "created_at": ts(fee.created_at),
        "applied_taxes": [applied_tax_out(item, fee=fee) for item in fee.applied_taxes],
    }


_LOOK_UP = object()  # invoice_out's `link` when the caller did not pass one


def _prefetched(instance, name: str):
    """The related rows `prefetch_related(name)` loaded on `instance`, or None when it did not."""
    return getattr(instance, "_prefetched_objects_cache", {}).get(name)


def invoice_out(invoice: Invoice, *, service: Service | None = None, with_details: bool = True, file_url: str | None = None,
                link: AccountLink | None | object = _LOOK_UP) -> dict:
    """Return Lago's Invoice object; `service` picks the customer view (its account link) and filters nothing else.

    For many invoices at once (webhooks of a period close) pass `link` and invoices with `fees`, `billing_periods`
    and `applied_taxes` prefetched (`invoices_for_rendering`): then nothing is read per invoice.
    """
    body = {
        "lago_id": str(invoice.lago_id),
        "sequential_id": invoice.sequential_id,
        "number": invoice.number,
        "issuing_date": _date(invoice.issuing_date),
        "payment_due_date": _date(invoice.payment_due_date),
        "net_payment_term": invoice.net_payment_term,
        "invoice_type": invoice.invoice_type,
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "payment_overdue": invoice.payment_overdue,
        "payment_dispute_lost_at": None,
        "currency": invoice.currency,
        "version_number": VERSION_NUMBER,
        "fees_amount_cents": invoice.fees_amount_cents,
        "coupons_amount_cents": invoice.coupons_amount_cents,
        "credit_notes_amount_cents": invoice.credit_notes_amount_cents,
        "prepaid_credit_amount_cents": invoice.prepaid_credit_amount_cents,
        "progressive_billing_credit_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": invoice.sub_total_excluding_taxes_amount_cents,
        "taxes_amount_cents": invoice.taxes_amount_cents,
        "sub_total_including_taxes_amount_cents": invoice.sub_total_including_taxes_amount_cents,
        "total_amount_cents": invoice.total_amount_cents,
        "total_due_amount_cents": invoice.total_due_amount_cents,
        "total_paid_amount_cents": invoice.total_paid_amount_cents,
        "total_offsetted_credit_note_amount_cents": invoice.offset_amount_cents,
        "file_url": file_url,
        "payment_url": invoice_payment_link(invoice),  # Checkout link while payable (issue 6)
        "voided_at": ts(invoice.voided_at),
        "finalized_at": ts(invoice.finalized_at),
        "created_at": ts(invoice.created_at),
        "updated_at": ts(invoice.updated_at),
        "self_billed": False,
        "metadata": [],
        "error_details": [],
    }
    if with_details:
        if link is _LOOK_UP:
            link = _link_for(invoice, service)
        body["customer"] = customer_out(link) if link else None
        periods = _prefetched(invoice, "billing_periods")
        if periods is None:
            periods = list(invoice.billing_periods.select_related("subscription__plan").order_by("id"))
        body["billing_periods"] = [
            {
                "lago_subscription_id": str(row.subscription.lago_id),
                "external_subscription_id": row.subscription.external_id,
                "lago_plan_id": str(row.subscription.plan.lago_id),
                "subscription_from_datetime": ts(row.from_datetime),
                "subscription_to_datetime": ts(row.to_datetime),
                "charges_from_datetime": ts(row.charges_from_datetime),
                "charges_to_datetime": ts(row.charges_to_datetime),
                "invoicing_reason": row.invoicing_reason,
            }
            for row in periods
            if service is None or row.subscription.service_id == service.pk  # another service's: not shown
        ]
        fees = _prefetched(invoice, "fees")
        if fees is None:
            fees = invoice.fees.select_related("invoice", "service", "subscription__plan", "charge__billable_metric")
        body["fees"] = [fee_out(fee, viewer=service) for fee in fees]
        applications = _prefetched(invoice, "credit_applications")
        if applications is None:
            applications = invoice.credit_applications.select_related("credit_note").order_by("id")
        coupon_credits = _prefetched(invoice, "coupon_credits")
        if coupon_credits is None:  # no coupon, no read: most invoices
            coupon_credits = invoice.coupon_credits.select_related("applied_coupon__coupon").order_by("id") \
                if invoice.coupons_amount_cents else []
        body["credits"] = coupon_credits_out(invoice, coupon_credits, viewer=service) + credits_out(invoice, applications)
        body["applied_taxes"] = [
            {
                "lago_invoice_id": str(invoice.lago_id),
                "tax_code": tax.tax_code,
                "tax_name": tax.tax_name,
                "tax_rate": decimal_str(tax.tax_rate),
                "amount_cents": tax.amount_cents,
                "fees_amount_cents": tax.base_amount_cents,
                "amount_currency": invoice.currency,
            }
            for tax in (_prefetched(invoice, "applied_taxes") or invoice.applied_taxes.order_by("id"))
        ]
    return body


def coupon_credits_out(invoice: Invoice, coupon_credits, *, viewer: Service | None = None) -> list[dict]:
    """Lago's `credits[]` items of coupons (before tax); another service's coupon shows without its code or name."""
    out = []
    for credit in coupon_credits:
        coupon = credit.applied_coupon.coupon
        mine = viewer is None or coupon.service_id == viewer.pk
        out.append({
            "lago_id": str(credit.lago_id),
            "amount_cents": credit.amount_cents,
            "amount_currency": credit.currency,
            "before_taxes": True,  # coupons come off the fees, before tax
            "item": {
                "lago_item_id": str(credit.applied_coupon.lago_id) if mine else None,
                "type": "coupon",
                "code": coupon.code if mine else "other_services",
                "name": coupon.name if mine else OTHER_SERVICES,
            },
            "invoice": {"lago_id": str(invoice.lago_id), "payment_status": invoice.payment_status},
        })
    return out


def credits_out(invoice: Invoice, applications) -> list[dict]:
    """Lago's `credits[]`: the customer credit each source gave this invoice (net of what a void gave back)."""
    net: dict[int, list] = {}
    for application in applications:
        note = application.credit_note
        if note is None:
            continue
        entry = net.setdefault(note.pk, [note, 0, application])
        entry[1] += application.amount_cents
    return [
        {
            "lago_id": str(first.lago_id),
            "amount_cents": amount,
            "amount_currency": invoice.currency,
            "before_taxes": False,  # credit notes come off the total, after tax
            "item": {"lago_item_id": str(note.lago_id), "type": "credit_note", "code": note.number, "name": note.number},
            "invoice": {"lago_id": str(invoice.lago_id), "payment_status": invoice.payment_status},
        }
        for note, amount, first in net.values()
        if amount > 0
    ]


def invoices_for_rendering(invoice_ids: list[int]) -> list[Invoice]:
    """Invoices with what `invoice_out` reads prefetched: a handful of queries for any number of invoices."""
    # Timestamps the payload never shows are not loaded: parsing them was most of the read (≈115,000 per 1,000
    # invoices). A deferred field read later costs a query per row; tests hold the query count flat.
    unread = [f"{path}__{name}" for path in ("subscription", "subscription__plan") for name in ("created_at", "updated_at")]
    unread += [f"subscription__{name}" for name in ("subscription_at", "started_at", "ending_at", "terminated_at",
                                                    "canceled_at", "usage_billed_until")]
    fee_unread = ["updated_at", *unread, "service__created_at", "service__updated_at", "charge__created_at",
                  "charge__updated_at", "charge__billable_metric__created_at", "charge__billable_metric__updated_at"]
    invoices = list(
        Invoice.objects.filter(pk__in=invoice_ids).prefetch_related(
            Prefetch("fees", Fee.objects.select_related("service", "subscription__plan", "charge__billable_metric")
                     .defer(*fee_unread).order_by("id")),
            Prefetch("billing_periods", InvoiceSubscription.objects.select_related("subscription__plan")
                     .defer(*unread).order_by("id")),
            Prefetch("applied_taxes", InvoiceAppliedTax.objects.order_by("id")),
            Prefetch("credit_applications", CreditApplication.objects.select_related("credit_note").order_by("id")),
        ).order_by("id")
    )
    couponed = [invoice for invoice in invoices if invoice.coupons_amount_cents]
    if couponed:  # one more read, only when some invoice took a coupon
        prefetch_related_objects(couponed, Prefetch(
            "coupon_credits", CouponCredit.objects.select_related("applied_coupon__coupon").order_by("id")))
    return invoices


def credit_note_out(note: CreditNote, *, service: Service | None = None) -> dict:
    taxes_rate = max((fee_rate for fee_rate in note.items.values_list("fee__taxes_rate", flat=True)), default=0)
    link = _link_for(note, service)
    return {
        "lago_id": str(note.lago_id),
        "sequential_id": note.sequential_id,
        "number": note.number,
        "lago_invoice_id": str(note.invoice.lago_id),
        "invoice_number": note.invoice.number,
        "issuing_date": _date(note.issuing_date),
        "credit_status": note.credit_status or None,
        "refund_status": note.refund_status or None,
        "reason": note.reason,
        "description": note.description or None,
        "currency": note.currency,
        "total_amount_cents": note.total_amount_cents,
        "taxes_amount_cents": note.taxes_amount_cents,
        "taxes_rate": decimal_str(Decimal(taxes_rate)),
        "sub_total_excluding_taxes_amount_cents": note.sub_total_excluding_taxes_amount_cents,
        "balance_amount_cents": note.balance_amount_cents,
        "credit_amount_cents": note.credit_amount_cents,
        "refund_amount_cents": note.refund_amount_cents,
        "offset_amount_cents": note.offset_amount_cents,
        "coupons_adjustment_amount_cents": 0,
        "created_at": ts(note.created_at),
        "updated_at": ts(note.updated_at),
        "file_url": None,
        "self_billed": False,
        "customer": customer_out(link) if link else None,
        "items": [
            {
                "lago_id": str(item.lago_id),
                "amount_cents": item.amount_cents,
                "amount_currency": note.currency,
                "fee": fee_out(item.fee, viewer=service),
            }
            for item in note.items.select_related("fee__invoice", "fee__service", "fee__subscription__plan", "fee__charge__billable_metric")
        ],
        "applied_taxes": [],
        "metadata": None,  # the Lago client models credit-note metadata as a mapping
        "error_details": [],
    }


def customer_usage_out(*, subscription, p_from, p_to, period, lines, taxes_cents: int) -> dict:
    amount = sum(line.amount_cents for line in lines)
    return {
        "from_datetime": ts(p_from),
        "to_datetime": ts(p_to),
        "issuing_date": period.end.isoformat(),
        "lago_invoice_id": None,
        "currency": subscription.plan.amount_currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes_cents,
        "total_amount_cents": amount + taxes_cents,
        "charges_usage": [
            {
                "units": decimal_str(line.units),
                "total_aggregated_units": decimal_str(line.total_aggregated_units),
                "events_count": line.events_count,
                "amount_cents": line.amount_cents,
                "amount_currency": line.currency,
                "charge": {
                    "lago_id": str(line.charge.lago_id),
                    "charge_model": line.charge.charge_model,
                    "invoice_display_name": line.charge.invoice_display_name or None,
                },
                "billable_metric": {
                    "lago_id": str(line.charge.billable_metric.lago_id),
                    "name": line.charge.billable_metric.name,
                    "code": line.charge.billable_metric.code,
                    "aggregation_type": line.charge.billable_metric.aggregation_type,
                },
                "filters": [],
                "grouped_usage": [],
            }
            for line in lines
            if line.charge is not None and line.fee_type == "charge"
        ],
    }


def wallet_out(wallet: Wallet) -> dict:
    """Lago's Wallet, as its service addresses the customer. Credits are money / rate_amount (5 decimals).

    `ongoing_usage_balance_cents` is what the wallet's service bills on the customer's draft invoices (tax
    included) in the wallet's currency: what the next finalizations will take from the balance.
    """
    from .selectors import wallet_ongoing_usage_cents

    credits_of = wallet.credits_of
    link = wallet.account_link
    usage = wallet_ongoing_usage_cents(wallet) if wallet.status == Wallet.Status.ACTIVE else 0
    ongoing = wallet.balance_amount_cents - usage
    return {
        "lago_id": str(wallet.lago_id),
        "lago_customer_id": str(link.lago_id),
        "external_customer_id": link.external_id,
        "status": wallet.status,
        "currency": wallet.currency,
        "name": wallet.name or None,
        "code": wallet.code or None,
        "priority": wallet.priority,
        "rate_amount": decimal_str(wallet.rate_amount),
        "credits_balance": decimal_str(credits_of(wallet.balance_amount_cents)),
        "balance_cents": wallet.balance_amount_cents,
        "consumed_credits": decimal_str(credits_of(wallet.consumed_amount_cents)),
        "consumed_amount_cents": wallet.consumed_amount_cents,
        "ongoing_balance_cents": ongoing,
        "ongoing_usage_balance_cents": usage,
        "credits_ongoing_balance": decimal_str(credits_of(ongoing)),
        "credits_ongoing_usage_balance": decimal_str(credits_of(usage)),
        "created_at": ts(wallet.created_at),
        "expiration_at": ts(wallet.expiration_at),
        "last_balance_sync_at": ts(wallet.last_balance_sync_at),
        "last_consumed_credit_at": ts(wallet.last_consumed_credit_at),
        "terminated_at": ts(wallet.terminated_at),
        "invoice_requires_successful_payment": wallet.invoice_requires_successful_payment,
        "recurring_transaction_rules": [],
        "applies_to": {"fee_types": [], "billable_metric_codes": []},
    }


def wallet_transaction_out(row: WalletTransaction) -> dict:
    """Lago's WalletTransaction: `amount` in major units of the wallet's currency, `credit_amount` in credits."""
    wallet = row.wallet
    return {
        "lago_id": str(row.lago_id),
        "lago_wallet_id": str(wallet.lago_id),
        "lago_invoice_id": str(row.invoice.lago_id) if row.invoice_id else None,
        "status": row.status,
        "source": row.source,
        "transaction_status": row.transaction_status,
        "transaction_type": row.transaction_type,
        "amount": decimal_str(from_minor_units(row.amount_cents, wallet.currency)),
        "credit_amount": decimal_str(row.credit_amount),
        "name": row.name or None,
        "metadata": row.metadata or [],
        "invoice_requires_successful_payment": wallet.invoice_requires_successful_payment,
        "settled_at": ts(row.settled_at),
        "failed_at": ts(row.failed_at),
        "created_at": ts(row.created_at),
    }

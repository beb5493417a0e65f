"""Lago's bodies for invoices, fees, credit notes and current usage: plain functions of the models, used by the API
and by the webhooks' payloads (byte-identical in both)."""
from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db.models import Prefetch, prefetch_related_objects

from apps.catalog.models import Tax
from apps.catalog.taxes import credited_item_taxes
from apps.core.keys import WALLET_FEE_PREFIX
from apps.core.money import currency_exponent, from_minor_units
from apps.core.representations import decimal_str, ts
from apps.customers.models import AccountLink, Service
from apps.customers.representations import customer_out

from .models import (
    CouponCredit, CreditApplication, CreditNote, Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription, Wallet,
    WalletTransaction,
)
from .selectors import group_canon, invoice_payment_link

VERSION_NUMBER = 4  # Lago's invoice amount formulas (research/lago-api.md §2.7)


def _link_for(invoice_or_note, service: Service | None) -> AccountLink | None:
    """The customer as `service` knows it; once the service deleted the customer, as it was then (Lago still
    shows a deleted customer on its invoices, and its schema has no invoice without one)."""
    links = AccountLink.objects.filter(customer_id=invoice_or_note.customer_id)
    if service is not None:
        links = links.filter(service=service)
    live = links.filter(deleted_at__isnull=True).order_by("id").first()
    return live or links.order_by("-deleted_at", "-id").first()


def _date(value) -> str | None:
    return value.isoformat() if value else None


# Applied taxes are JSON on their fee (and rows per invoice without a uuid): their Lago ids are derived from
# what makes them unique, so every rendering of one gives the same id.
_APPLIED_TAX_NS = uuid.UUID("5b0f6c1e-2d0a-4c55-9a55-6c1d0e7d4a21")


def applied_tax_id(owner_lago_id, tax_code: str) -> str:
    return str(uuid.uuid5(_APPLIED_TAX_NS, f"{owner_lago_id}:{tax_code}"))


def tax_refs(codes) -> dict[str, tuple[str, str | None]]:
    """{tax code: (the tax's lago_id, its description or None)}: one read for all the codes of a body."""
    codes = set(codes)
    if not codes:
        return {}
    return {code: (str(lago_id), description or None)
            for code, lago_id, description in Tax.objects.filter(code__in=codes).values_list("code", "lago_id", "description")}


def _rate(value) -> float:
    # A percentage, not money: Lago sends it as a JSON number (13.0); numeric(9,5) is exact in a double.
    return float(Decimal(value))


def base_applied_tax(*, lago_id: str, code: str, name: str, rate, amount_cents: int, currency: str | None,
                     created_at, refs: dict) -> dict:
    """Lago's BaseAppliedTax: every applied tax (fee, invoice, credit note) starts with these."""
    lago_tax_id, description = refs.get(code, (None, None))
    return {
        "lago_id": lago_id,
        "lago_tax_id": lago_tax_id,
        "tax_code": code,
        "tax_name": name,
        "tax_rate": _rate(rate),
        "tax_description": description,
        "amount_cents": amount_cents,
        "amount_currency": currency,
        "created_at": ts(created_at),
    }


def applied_tax_out(item: dict, *, fee: Fee, refs: dict) -> dict:
    return {
        **base_applied_tax(lago_id=applied_tax_id(fee.lago_id, item["code"]), code=item["code"], name=item["name"],
                           rate=item["rate"], amount_cents=item["amount_cents"], currency=fee.currency,
                           created_at=fee.created_at, refs=refs),
        "lago_fee_id": str(fee.lago_id),
    }


def _precise_sub_total(fee: Fee) -> str:
    """Lago's unrounded amount in cents less the coupons (whole cents in the hub: apps/invoicing/discounts.py)."""
    return decimal_str(fee.precise_amount.scaleb(currency_exponent(fee.currency)) - fee.coupons_amount_cents)


def _whole(value):
    """A tier bound as Lago's integer (the hub's are whole numbers of units; a fractional one stays a number)."""
    if value is None:
        return None
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else float(number)


def _amount(value) -> str:
    return decimal_str(Decimal(str(value)))


def lago_amount_details(details: dict, units) -> dict:
    """Lago's FeeAmountDetails from what the rating stored (apps/invoicing/rating.py): the same figures, Lago's names.

    Graduated tiers and volume and package details rated before their prices were stored (issue 21) carry no
    per-unit price: their tier total shows as the per-unit total, with no flat amount."""
    if not details:
        return {}
    out = {key: value for key, value in details.items()
           if key not in ("graduated_ranges", "graduated_percentage_ranges", "lower_bound", "from_value", "to_value",
                          "flat_amount", "packages", "package_size", "package_amount")}
    if "graduated_ranges" in details:
        tiers = []
        for tier in details["graduated_ranges"]:
            tier_units, total = Decimal(str(tier["units"])), Decimal(str(tier["amount"]))
            if "per_unit_amount" in tier:
                per_unit, flat = Decimal(str(tier["per_unit_amount"])), Decimal(str(tier["flat_amount"]))
            else:
                per_unit, flat = (total / tier_units if tier_units else Decimal(0)), Decimal(0)
            tiers.append({
                "units": decimal_str(tier_units), "from_value": _whole(tier["from_value"]),
                "to_value": _whole(tier["to_value"]), "flat_unit_amount": decimal_str(flat),
                "per_unit_amount": decimal_str(per_unit), "per_unit_total_amount": decimal_str(total - flat),
                "total_with_flat_amount": decimal_str(total),
            })
        out["graduated_ranges"] = tiers
    elif "graduated_percentage_ranges" in details:
        out["graduated_percentage_ranges"] = [
            {"units": _amount(tier["units"]), "from_value": _whole(tier["from_value"]),
             "to_value": _whole(tier["to_value"]), "flat_unit_amount": _amount(tier["flat_amount"]),
             "rate": _amount(tier["rate"]), "per_unit_total_amount": _amount(tier["per_unit_total_amount"]),
             "total_with_flat_amount": _amount(tier["amount"])}
            for tier in details["graduated_percentage_ranges"]
        ]
    elif "lower_bound" in details and "per_unit_amount" in details:  # volume
        per_unit = Decimal(str(details["per_unit_amount"]))
        out.update(flat_unit_amount=_amount(details["flat_amount"]), per_unit_amount=decimal_str(per_unit),
                   per_unit_total_amount=decimal_str(per_unit * Decimal(str(units))))
    elif "packages" in details:
        out.update(free_units=_amount(details["free_units"]), paid_units=_amount(details["paid_units"]))
        if "package_size" in details:
            out.update(per_package_size=int(details["package_size"]),
                       per_package_unit_amount=_amount(details["package_amount"]))
    return out


def _fee_tax_refs(fees) -> dict:
    return tax_refs(item["code"] for fee in fees for item in fee.applied_taxes or ())


def billing_entity_code() -> str:
    """The hub bills as one entity (Nexa Systems Inc.); Lago's `billing_entity_code` on invoices and credit notes."""
    return settings.BILLING_ENTITY_CODE


OTHER_SERVICES = "Other services"


def fee_out(fee: Fee, *, viewer: Service | None = None, refs: dict | None = None) -> dict:
    """Return Lago's Fee object. `viewer`: the service the body is for; a line another service billed (a customer
    linked across services gets one invoice) is shown without that service's identifiers (plan and metric codes,
    subscription and charge ids, its name), as an "Other services" line, so the invoice's totals still add up."""
    if refs is None:
        refs = _fee_tax_refs([fee])
    if viewer is not None and fee.service_id is not None and fee.service_id != viewer.pk:
        return _foreign_fee_out(fee, refs)
    subscription, charge = fee.subscription, fee.charge
    # Lago's item id is the add-on's, the metric's or the subscription's; a one-off line of an add-on the hub
    # no longer has, or a line of no subscription, is identified by the fee itself (Lago never sends null).
    if fee.fee_type == Fee.FeeType.ADD_ON:
        item_code, item_type, item_id = fee.add_on_code, "AddOn", fee.lago_id
    elif fee.fee_key.startswith(WALLET_FEE_PREFIX):  # a wallet top-up's purchased credits (Lago's credit fee)
        item_code, item_type, item_id = "credit", "WalletTransaction", fee.fee_key.removeprefix(WALLET_FEE_PREFIX)
    elif charge is not None:
        item_code, item_type, item_id = charge.billable_metric.code, "BillableMetric", charge.billable_metric.lago_id
    else:
        item_code, item_type = (subscription.plan.code if subscription else ""), "Subscription"
        item_id = subscription.lago_id if subscription else fee.lago_id
    charge_filter = fee.charge_filter if fee.charge_filter_id is not None else None
    return {
        "lago_id": str(fee.lago_id),
        "lago_charge_id": str(charge.lago_id) if charge else None,
        "lago_charge_filter_id": str(charge_filter.lago_id) if charge_filter else None,
        "lago_invoice_id": str(fee.invoice.lago_id),
        "lago_subscription_id": str(subscription.lago_id) if subscription else None,
        "external_subscription_id": subscription.external_id if subscription else None,
        "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "self_billed": False,
        "item": {
            "type": fee.fee_type,
            "code": item_code,
            "name": fee.name,
            "invoice_display_name": fee.name,
            "description": fee.description or None,
            "lago_item_id": str(item_id),
            "item_type": item_type,
            "filters": charge_filter.values if charge_filter else None,
            "filter_invoice_display_name": charge_filter.display_name if charge_filter else None,
            "grouped_by": fee.grouped_by or {},
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
        "taxes_rate": _rate(fee.taxes_rate),
        "total_amount_cents": fee.amount_cents - fee.coupons_amount_cents + fee.taxes_amount_cents,
        "total_amount_currency": fee.currency,
        "sub_total_excluding_taxes_amount_cents": fee.amount_cents - fee.coupons_amount_cents,
        "sub_total_excluding_taxes_precise_amount_cents": _precise_sub_total(fee),
        # Whole minor units here (the hub spreads each coupon in cents: apps/invoicing/discounts.py).
        "precise_coupons_amount_cents": decimal_str(Decimal(fee.coupons_amount_cents)),
        "amount_details": lago_amount_details(fee.amount_details, fee.units),
        "is_adjustment": fee.is_adjustment,
        "payment_status": fee.invoice.payment_status,
        "from_date": ts(fee.from_datetime),
        "to_date": ts(fee.to_datetime),
        "created_at": ts(fee.created_at),
        "applied_taxes": [applied_tax_out(item, fee=fee, refs=refs) for item in fee.applied_taxes],
    }


def _foreign_fee_out(fee: Fee, refs: dict) -> dict:
    return {
        "lago_id": str(fee.lago_id),
        "lago_charge_id": None,
        "lago_charge_filter_id": None,
        "lago_invoice_id": str(fee.invoice.lago_id),
        "lago_subscription_id": None,
        "external_subscription_id": None,
        "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "self_billed": False,
        "item": {
            "type": fee.fee_type,
            "code": "other_services",
            "name": OTHER_SERVICES,
            "invoice_display_name": OTHER_SERVICES,
            "description": None,
            "lago_item_id": str(fee.lago_id),  # not the other service's object
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
        "taxes_rate": _rate(fee.taxes_rate),
        "total_amount_cents": fee.amount_cents - fee.coupons_amount_cents + fee.taxes_amount_cents,
        "total_amount_currency": fee.currency,
        "sub_total_excluding_taxes_amount_cents": fee.amount_cents - fee.coupons_amount_cents,
        "sub_total_excluding_taxes_precise_amount_cents": _precise_sub_total(fee),
        "precise_coupons_amount_cents": decimal_str(Decimal(fee.coupons_amount_cents)),
        "amount_details": {},
        "is_adjustment": fee.is_adjustment,
        "payment_status": fee.invoice.payment_status,
        "from_date": ts(fee.from_datetime),
        "to_date": ts(fee.to_datetime),
        "created_at": ts(fee.created_at),
        "applied_taxes": [applied_tax_out(item, fee=fee, refs=refs) for item in fee.applied_taxes],
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
        "billing_entity_code": billing_entity_code(),
        "sequential_id": invoice.sequential_id,
        "number": invoice.number,
        "issuing_date": _date(invoice.issuing_date),
        "payment_due_date": _date(invoice.payment_due_date),
        "net_payment_term": invoice.net_payment_term,
        "invoice_type": invoice.invoice_type,
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "payment_overdue": invoice.payment_overdue,
        "payment_dispute_lost_at": ts(invoice.payment_dispute_lost_at),
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
        "metadata": [dict(item) for item in invoice.metadata or []],
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
            fees = invoice.fees.select_related("invoice", "service", "subscription__plan", "charge__billable_metric", "charge_filter")
        fees = list(fees)
        invoice_taxes = _prefetched(invoice, "applied_taxes")
        if invoice_taxes is None:
            invoice_taxes = list(invoice.applied_taxes.order_by("id"))
        refs = getattr(invoice, "tax_refs", None)  # invoices_for_rendering: read once for all the invoices
        if refs is None:
            refs = tax_refs([*(item["code"] for fee in fees for item in fee.applied_taxes or ()),
                             *(tax.tax_code for tax in invoice_taxes)])
        body["fees"] = [fee_out(fee, viewer=service, refs=refs) for fee in fees]
        applications = _prefetched(invoice, "credit_applications")
        if applications is None:
            applications = invoice.credit_applications.select_related("credit_note").order_by("id")
        coupon_credits = _prefetched(invoice, "coupon_credits")
        if coupon_credits is None:  # no coupon, no read: most invoices
            coupon_credits = invoice.coupon_credits.select_related("applied_coupon__coupon").order_by("id") \
                if invoice.coupons_amount_cents else []
        body["credits"] = coupon_credits_out(invoice, coupon_credits, viewer=service) + credits_out(invoice, applications)
        if invoice.invoice_type == Invoice.InvoiceType.PROGRESSIVE_BILLING:
            body["applied_usage_thresholds"] = [
                {
                    "lifetime_usage_amount_cents": row.lifetime_usage_amount_cents,
                    "created_at": ts(row.created_at),
                    "usage_threshold": {
                        "lago_id": str(row.threshold_lago_id),
                        "threshold_display_name": row.threshold_display_name or None,
                        "amount_cents": row.amount_cents,
                        "recurring": row.recurring,
                        "created_at": ts(row.created_at),
                        "updated_at": ts(row.created_at),
                    },
                }
                for row in invoice.applied_usage_thresholds.all()
            ]
        body["applied_taxes"] = [
            {
                **base_applied_tax(lago_id=applied_tax_id(invoice.lago_id, tax.tax_code), code=tax.tax_code,
                                   name=tax.tax_name, rate=tax.tax_rate, amount_cents=tax.amount_cents,
                                   currency=invoice.currency, created_at=invoice.created_at, refs=refs),
                "lago_invoice_id": str(invoice.lago_id),
                "fees_amount_cents": tax.base_amount_cents,
            }
            for tax in invoice_taxes
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
                "lago_item_id": str(credit.applied_coupon.lago_id if mine else credit.lago_id),
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
            Prefetch("fees", Fee.objects.select_related("service", "subscription__plan", "charge__billable_metric", "charge_filter")
                     .defer(*fee_unread).order_by("id")),
            Prefetch("billing_periods", InvoiceSubscription.objects.select_related("subscription__plan")
                     .defer(*unread).order_by("id")),
            Prefetch("applied_taxes", InvoiceAppliedTax.objects.order_by("id")),
            Prefetch("credit_applications", CreditApplication.objects.select_related("credit_note").order_by("id")),
        ).order_by("id")
    )
    refs = tax_refs([*(item["code"] for invoice in invoices for fee in invoice.fees.all() for item in fee.applied_taxes or ()),
                     *(tax.tax_code for invoice in invoices for tax in invoice.applied_taxes.all())])
    for invoice in invoices:
        invoice.tax_refs = refs
    couponed = [invoice for invoice in invoices if invoice.coupons_amount_cents]
    if couponed:  # one more read, only when some invoice took a coupon
        prefetch_related_objects(couponed, Prefetch(
            "coupon_credits", CouponCredit.objects.select_related("applied_coupon__coupon").order_by("id")))
    return invoices


def credit_note_taxes(lines) -> list[dict]:
    """Per tax of a credit note, from its lines [(amount_cents, [{"code", "name", "rate", "amount_cents"}])]:
    the tax credited and the amount it was credited on (Lago's `base_amount_cents`), in the order first met."""
    out: dict[str, dict] = {}
    for amount_cents, applied in lines:
        for item in applied:
            entry = out.setdefault(item["code"], {"code": item["code"], "name": item["name"], "rate": item["rate"],
                                                  "amount_cents": 0, "base_amount_cents": 0})
            entry["amount_cents"] += int(item["amount_cents"])
            entry["base_amount_cents"] += amount_cents
    return list(out.values())


def credit_note_taxes_rate(applied: list[dict]) -> float:
    """Lago's credit-note `taxes_rate`: the rates it credits, summed (13 for HST; 5 + 9.975 in Quebec)."""
    return _rate(sum((Decimal(item["rate"]) for item in applied), Decimal(0)))


def _item_applied(item) -> list[dict]:
    """A stored item's per-rate taxes; for items written before they were stored, recomputed by the rule they used."""
    if item.applied_taxes:
        return item.applied_taxes
    by_code = credited_item_taxes(item.amount_cents, item.applied_taxes, item.fee.applied_taxes)
    return [{**tax, "amount_cents": by_code.get(tax["code"], 0)} for tax in item.fee.applied_taxes or ()]


def credit_note_out(note: CreditNote, *, service: Service | None = None, file_url: str | None = None) -> dict:
    link = _link_for(note, service)
    items = list(note.items.select_related("fee__invoice", "fee__service", "fee__subscription__plan",
                                           "fee__charge__billable_metric").order_by("id"))
    taxes = credit_note_taxes([(item.amount_cents, _item_applied(item)) for item in items])
    refs = tax_refs([*(tax["code"] for tax in taxes), *(t["code"] for item in items for t in item.fee.applied_taxes or ())])
    return {
        "lago_id": str(note.lago_id),
        "billing_entity_code": billing_entity_code(),
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
        "taxes_rate": credit_note_taxes_rate(taxes),
        "sub_total_excluding_taxes_amount_cents": note.sub_total_excluding_taxes_amount_cents,
        "balance_amount_cents": note.balance_amount_cents,
        "credit_amount_cents": note.credit_amount_cents,
        "refund_amount_cents": note.refund_amount_cents,
        "offset_amount_cents": note.offset_amount_cents,
        "coupons_adjustment_amount_cents": 0,
        "created_at": ts(note.created_at),
        "updated_at": ts(note.updated_at),
        "file_url": file_url,
        "self_billed": False,
        "customer": customer_out(link) if link else None,
        "items": [
            {
                "lago_id": str(item.lago_id),
                "amount_cents": item.amount_cents,
                "amount_currency": note.currency,
                "fee": fee_out(item.fee, viewer=service, refs=refs),
            }
            for item in items
        ],
        "applied_taxes": [
            {
                **base_applied_tax(lago_id=applied_tax_id(note.lago_id, tax["code"]), code=tax["code"], name=tax["name"],
                                   rate=tax["rate"], amount_cents=tax["amount_cents"], currency=note.currency,
                                   created_at=note.created_at, refs=refs),
                "lago_credit_note_id": str(note.lago_id),
                "base_amount_cents": tax["base_amount_cents"],
            }
            for tax in taxes
        ],
        "metadata": dict(note.metadata or {}),  # Lago's key-value object (the Lago client reads a mapping)
        "error_details": [],
    }


def _charge_ref(charge) -> dict:
    return {"lago_id": str(charge.lago_id), "charge_model": charge.charge_model,
            "invoice_display_name": charge.invoice_display_name or None}


def _metric_ref(metric) -> dict:
    return {"lago_id": str(metric.lago_id), "name": metric.name, "code": metric.code,
            "aggregation_type": metric.aggregation_type}


def _filter_usage(charge_filter) -> dict:
    """A filter's own fields in Lago's usage `filters` entries: null for the charge's own price (Lago's unsaved
    default filter)."""
    if charge_filter is None:
        return {"invoice_display_name": None, "values": None}
    return {"invoice_display_name": charge_filter.invoice_display_name or None, "values": charge_filter.values}


def _line_sums(lines) -> dict:
    """Usage totals of lines or fees (one charge's, one filter's or one group's), as Lago sums its fees."""
    return {
        "units": decimal_str(sum((line.units for line in lines), Decimal(0))),
        "total_aggregated_units": decimal_str(sum((line.total_aggregated_units for line in lines), Decimal(0))),
        "events_count": sum(line.events_count for line in lines),
        "amount_cents": sum(line.amount_cents for line in lines),
    }


def _by_filter(items: list, line_of) -> list[tuple]:
    """(filter or None, items) per charge filter of `items`, in first-seen order."""
    found: dict = {}
    for item in items:
        charge_filter = line_of(item).charge_filter
        found.setdefault(charge_filter.pk if charge_filter is not None else None, (charge_filter, []))[1].append(item)
    return list(found.values())


def usage_filters_and_groups(items: list, *, sums, line_of=lambda item: item) -> tuple[list, list]:
    """(`filters`, `grouped_usage`) of one charge's usage in Lago's ChargeUsageSerializer: per filter (the charge's
    own price as a filter with null values) if the charge has filters; per pricing group (each with its own
    per-filter usage) if any line is grouped. `items`: lines, fees or projections (`line_of` gives the line)."""
    charge = line_of(items[0]).charge
    filtered = bool(charge.live_filters)

    def filters_of(group: list) -> list:
        if not filtered:
            return []
        return [{**sums(mine), **_filter_usage(charge_filter)} for charge_filter, mine in _by_filter(group, line_of)]

    grouped: dict[str, tuple[dict, list]] = {}
    for item in items:
        group = line_of(item).grouped_by
        if group:
            grouped.setdefault(group_canon(group), (group, []))[1].append(item)
    # Ungrouped usage of a grouped charge (a late adjustment of before the keys were set) under {} as Lago does.
    if grouped:
        for item in items:
            if not line_of(item).grouped_by:
                grouped.setdefault(group_canon({}), ({}, []))[1].append(item)
    return filters_of(items), [
        {**sums(mine), "grouped_by": group, "filters": filters_of(mine)} for group, mine in grouped.values()
    ]


def customer_usage_out(*, subscription, p_from, p_to, period, lines, taxes_cents: int) -> dict:
    """Lago's CustomerUsage: one entry per charge, its filters' usage listed in `filters` (Lago's
    ChargeUsageSerializer: the charge's own price as a filter with null values)."""
    lines = [line for line in lines if line.charge is not None and line.fee_type == "charge"]
    amount = sum(line.amount_cents for line in lines)
    by_charge: dict[int, list] = {}
    for line in lines:
        by_charge.setdefault(line.charge.pk, []).append(line)
    charges = []
    for mine in by_charge.values():
        charge = mine[0].charge
        filters, grouped = usage_filters_and_groups(mine, sums=_line_sums)
        charges.append({
            **_line_sums(mine),
            "amount_currency": mine[0].currency,
            "charge": _charge_ref(charge),
            "billable_metric": _metric_ref(charge.billable_metric),
            "filters": filters,
            "grouped_usage": grouped,
        })
    return {
        "from_datetime": ts(p_from),
        "to_datetime": ts(p_to),
        "issuing_date": period.end.isoformat(),
        "lago_invoice_id": None,
        "currency": subscription.plan.amount_currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes_cents,
        "total_amount_cents": amount + taxes_cents,
        "charges_usage": charges,
    }


def wallet_out(wallet: Wallet, *, usage_cents: int) -> dict:
    """Lago's Wallet, as its service addresses the customer. Credits are money / rate_amount (5 decimals).

    `usage_cents` is the wallet's ongoing usage (`close.ongoing.wallets_ongoing_usage`: its share of the customer's
    current usage and draft invoices, tax included): what the next finalizations will take from the balance.
    """
    from .recurring import recurring_rules_of

    credits_of = wallet.credits_of
    link = wallet.account_link
    usage = usage_cents if wallet.status == Wallet.Status.ACTIVE else 0
    ongoing = wallet.balance_amount_cents - usage
    body = {
        "lago_id": str(wallet.lago_id),
        "lago_customer_id": str(link.lago_id),
        "external_customer_id": link.external_id,
        "status": wallet.status,
        "currency": wallet.currency,
        "name": wallet.name or None,
        "code": wallet.code or None,
        "priority": wallet.priority,
        "rate_amount": decimal_str(wallet.rate_amount),
        # Lago's deprecated `balance` (the balance in the currency's units), still in its schema's required list.
        "balance": decimal_str(from_minor_units(wallet.balance_amount_cents, wallet.currency)),
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
        "recurring_transaction_rules": [recurring_rule_out(rule) for rule in recurring_rules_of(wallet)],
        "applies_to": {"fee_types": wallet.allowed_fee_types or [],
                       "billable_metric_codes": wallet.billable_metric_codes or []},
    }
    if wallet.metadata is not None:  # Lago adds it only once set
        body["metadata"] = wallet.metadata
    return body


def wallet_alert_out(alert) -> dict:
    """Lago's WalletAlertObject (its AlertSerializer on a wallet alert)."""
    wallet = alert.wallet
    return {
        "lago_id": str(alert.lago_id),
        "lago_organization_id": str(wallet.service.lago_id),  # the hub's organization is the calling service
        "external_subscription_id": None,
        "lago_wallet_id": str(wallet.lago_id),
        "wallet_code": wallet.code or None,
        "billable_metric": None,
        "alert_type": alert.alert_type,
        "code": alert.code,
        "name": alert.name or None,
        "direction": alert.direction,
        "previous_value": float(alert.previous_value) if alert.previous_value != alert.previous_value.to_integral()
        else int(alert.previous_value),  # Lago's schema: a JSON number
        "last_processed_at": ts(alert.last_processed_at),
        "thresholds": [{"code": t.get("code"), "value": t["value"], "recurring": t["recurring"]}
                       for t in alert.thresholds],
        "created_at": ts(alert.created_at),
    }


def wallet_triggered_alert_out(alert, *, lago_id, current, crossed, at) -> dict:
    """Lago's TriggeredAlert body (webhook `alert.triggered`) for a wallet alert."""
    wallet = alert.wallet
    return {
        "lago_id": str(lago_id),
        "lago_organization_id": str(wallet.service.lago_id),
        "lago_alert_id": str(alert.lago_id),
        "lago_subscription_id": None,
        "external_subscription_id": None,
        "lago_wallet_id": str(wallet.lago_id),
        "external_customer_id": wallet.account_link.external_id,
        "billable_metric_code": None,
        "alert_name": alert.name or None,
        "alert_code": alert.code,
        "alert_type": alert.alert_type,
        "current_value": decimal_str(current),
        "previous_value": decimal_str(alert.previous_value),
        "crossed_thresholds": [
            {"code": next((t.get("code") for t in alert.thresholds
                           if not t["recurring"] and Decimal(t["value"]) == value), None)
             or next((t.get("code") for t in alert.thresholds if t["recurring"]), None),
             "value": decimal_str(value),
             "recurring": not any(not t["recurring"] and Decimal(t["value"]) == value for t in alert.thresholds)}
            for value in crossed],
        "triggered_at": ts(at),
    }


def recurring_rule_out(rule) -> dict:
    """Lago's WalletRecurringTransactionRule (credits as decimal strings)."""
    return {
        "lago_id": str(rule.lago_id),
        "trigger": rule.trigger,
        "method": rule.method,
        # Lago's enum column defaults to weekly, which it shows on threshold rules too.
        "interval": rule.interval or "weekly",
        "status": rule.status,
        "threshold_credits": decimal_str(rule.threshold_credits),
        "paid_credits": decimal_str(rule.paid_credits),
        "granted_credits": decimal_str(rule.granted_credits),
        "grants_target_top_up": rule.grants_target_top_up,
        "target_ongoing_balance": decimal_str(rule.target_ongoing_balance)
        if rule.target_ongoing_balance is not None else None,
        "started_at": ts(rule.started_at),
        "expiration_at": ts(rule.expiration_at),
        "created_at": ts(rule.created_at),
        "invoice_requires_successful_payment": rule.invoice_requires_successful_payment,
        "transaction_metadata": rule.transaction_metadata or [],
        "transaction_name": rule.transaction_name or None,
        "ignore_paid_top_up_limits": False,
        "purchase_order_number": None,
        "applied_invoice_custom_sections": [],
        "payment_method": {"payment_method_type": "provider"},
    }


def wallet_transaction_out(row: WalletTransaction) -> dict:
    """Lago's WalletTransaction: `amount` in major units of the wallet's currency, `credit_amount` in credits."""
    wallet = row.wallet
    return {
        "lago_id": str(row.lago_id),
        "lago_wallet_id": str(wallet.lago_id),
        "lago_invoice_id": str(row.invoice.lago_id) if row.invoice_id else None,
        # Not built: top-ups refunded by credit note, voided wallet invoices, traceable wallets (what is left of
        # each inbound transaction), per-transaction payment methods: Lago's null and defaults.
        "lago_credit_note_id": None,
        "lago_voided_invoice_id": None,
        "remaining_amount_cents": None,
        "remaining_credit_amount": None,
        "priority": 50,
        "payment_method": {"payment_method_type": "provider"},
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


def fees_out(fees, *, viewer: Service | None = None) -> list[dict]:
    """Lago's Fee for each of `fees`, the taxes' ids read once for all of them."""
    fees = list(fees)
    refs = _fee_tax_refs(fees)
    return [fee_out(fee, viewer=viewer, refs=refs) for fee in fees]


def _usage_sums() -> dict:
    return {"units": Decimal(0), "total_aggregated_units": Decimal(0), "events_count": 0, "amount_cents": 0}


def _usage_add(entry: dict, fee: Fee) -> None:
    entry["units"] += fee.units
    entry["total_aggregated_units"] += fee.total_aggregated_units
    entry["events_count"] += fee.events_count
    entry["amount_cents"] += fee.amount_cents


def _usage_strs(entry: dict) -> dict:
    return {**entry, "units": decimal_str(entry["units"]),
            "total_aggregated_units": decimal_str(entry["total_aggregated_units"])}


def past_usage_out(period: InvoiceSubscription, fees: list[Fee]) -> dict:
    """Lago's CustomerUsage for a billed period: its charges as the invoice billed them (late-usage adjustments
    of the same charge added in), per charge in the order first billed."""
    invoice = period.invoice
    by_charge: dict[int, dict] = {}
    for fee in fees:
        charge = fee.charge
        entry = by_charge.get(charge.pk)
        if entry is None:
            entry = by_charge[charge.pk] = {
                **_usage_sums(), "amount_currency": fee.currency, "charge": _charge_ref(charge),
                "billable_metric": _metric_ref(charge.billable_metric), "filters": {}, "grouped_usage": [],
                "taxes_amount_cents": 0, "fees": [],
            }
        entry["fees"].append(fee)
        entry["taxes_amount_cents"] += fee.taxes_amount_cents
        _usage_add(entry, fee)
        # Per filter (late-usage adjustments of the same filter added in); the charge's own price under None.
        charge_filter = fee.charge_filter if fee.charge_filter_id is not None else None
        found = entry["filters"].get(fee.charge_filter_id)
        if found is None:
            found = entry["filters"][fee.charge_filter_id] = {**_usage_sums(), **_filter_usage(charge_filter)}
        _usage_add(found, fee)
    charges = []
    for entry in by_charge.values():
        filters = list(entry.pop("filters").values())
        entry["filters"] = [_usage_strs(item) for item in filters] if any(item["values"] for item in filters) else []
        entry["grouped_usage"] = usage_filters_and_groups(entry.pop("fees"), sums=_line_sums)[1]
        charges.append(_usage_strs(entry))
    amount = sum(entry["amount_cents"] for entry in charges)
    taxes = sum(entry.pop("taxes_amount_cents") for entry in charges)
    return {
        "from_datetime": ts(period.charges_from_datetime),
        "to_datetime": ts(period.charges_to_datetime),
        "issuing_date": _date(invoice.issuing_date),
        "lago_invoice_id": str(invoice.lago_id),
        "currency": invoice.currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes,
        "total_amount_cents": amount + taxes,
        "charges_usage": charges,
    }


def projected_usage_out(*, subscription, p_from, p_to, period, projected, taxes_cents: int) -> dict:
    """Lago's CustomerProjectedUsage: current usage (`customer_usage_out`) with each charge carried to the period's
    end (apps/invoicing/projection.py), its filters' usage listed in `filters`."""
    amount = sum(item.line.amount_cents for item in projected)
    by_charge: dict[int, list] = {}
    for item in projected:
        by_charge.setdefault(item.line.charge.pk, []).append(item)
    def projected_sums(items: list) -> dict:
        return {
            "units": decimal_str(sum((item.line.units for item in items), Decimal(0))),
            "projected_units": decimal_str(sum((item.projected_units for item in items), Decimal(0))),
            "events_count": sum(item.line.events_count for item in items),
            "amount_cents": sum(item.line.amount_cents for item in items),
            "projected_amount_cents": sum(item.projected_amount_cents for item in items),
        }

    charges = []
    for mine in by_charge.values():
        charge = mine[0].line.charge
        filters, grouped = usage_filters_and_groups(mine, sums=projected_sums, line_of=lambda item: item.line)
        charges.append({
            "units": decimal_str(sum((item.line.units for item in mine), Decimal(0))),
            "projected_units": decimal_str(sum((item.projected_units for item in mine), Decimal(0))),
            "events_count": sum(item.line.events_count for item in mine),
            "amount_cents": sum(item.line.amount_cents for item in mine),
            "projected_amount_cents": sum(item.projected_amount_cents for item in mine),
            "amount_currency": mine[0].line.currency,
            "charge": _charge_ref(charge),
            "billable_metric": _metric_ref(charge.billable_metric),
            "filters": filters,
            "grouped_usage": grouped,
            "groups": [],
        })
    return {
        "from_datetime": ts(p_from),
        "to_datetime": ts(p_to),
        "issuing_date": period.end.isoformat(),
        "lago_invoice_id": None,
        "currency": subscription.plan.amount_currency,
        "amount_cents": amount,
        "projected_amount_cents": sum(item.projected_amount_cents for item in projected),
        "taxes_amount_cents": taxes_cents,
        "total_amount_cents": amount + taxes_cents,
        "charges_usage": charges,
    }


def threshold_completion(
    thresholds: list, *, total_cents: int
) -> list[dict]:
    """Lago's lifetime usage `usage_thresholds`: each fixed threshold's completion ratio (reached_at is not kept)."""
    out = []
    previous = 0
    for threshold in sorted((t for t in thresholds if not t.recurring), key=lambda t: t.amount_cents):
        span = threshold.amount_cents - previous
        done = min(max(total_cents - previous, 0), span)
        out.append({"amount_cents": threshold.amount_cents,
                    "completion_ratio": float(Decimal(done) / Decimal(span)) if span else 1.0})
        previous = threshold.amount_cents
    return out


def lifetime_usage_out(state, *, thresholds: list, now) -> dict:
    """Lago's LifetimeUsage from `progressive.lifetime_usage_state` (its `record` set)."""
    subscription = state.subscription
    return {
        "lago_id": str(state.record.lago_id),
        "lago_subscription_id": str(subscription.lago_id),
        "external_subscription_id": subscription.external_id,
        "external_historical_usage_amount_cents": state.historical_cents,
        "invoiced_usage_amount_cents": state.invoiced_cents,
        "current_usage_amount_cents": state.current_cents,
        "from_datetime": ts(subscription.started_at or subscription.subscription_at),
        "to_datetime": ts(now),
        "usage_thresholds": [
            {**item, "reached_at": None} for item in threshold_completion(thresholds, total_cents=state.total_cents)
        ],
    }


def alert_out(alert) -> dict:
    """Lago's AlertObject (a subscription usage alert)."""
    from apps.catalog.representations import billable_metric_out

    return {
        "lago_id": str(alert.lago_id),
        "lago_organization_id": str(alert.service.lago_id),
        "external_subscription_id": alert.subscription_external_id,
        "subscription_external_id": alert.subscription_external_id,  # Lago's deprecated name, still sent
        "lago_wallet_id": None,
        "wallet_code": None,
        "billable_metric": billable_metric_out(alert.billable_metric) if alert.billable_metric_id else None,
        "alert_type": alert.alert_type,
        "code": alert.code,
        "name": alert.name or None,
        "direction": "increasing",
        "previous_value": _number(alert.previous_value),
        "last_processed_at": ts(alert.last_processed_at),
        "thresholds": [{"code": t.code or None, "value": decimal_str(t.value), "recurring": t.recurring}
                       for t in alert.thresholds.all()],
        "created_at": ts(alert.created_at),
    }


def triggered_alert_out(row, subscription) -> dict:
    """Lago's TriggeredAlertObject, the `alert.triggered` webhook's body."""
    alert = row.alert
    return {
        "lago_id": str(row.lago_id),
        "lago_organization_id": str(subscription.service.lago_id),
        "lago_alert_id": str(alert.lago_id),
        "lago_subscription_id": str(subscription.lago_id),
        "external_subscription_id": subscription.external_id,
        "external_customer_id": subscription.account_link.external_id,
        "billable_metric_code": alert.billable_metric.code if alert.billable_metric_id else None,
        "alert_type": alert.alert_type,
        "alert_code": alert.code,
        "alert_name": alert.name or None,
        "current_value": _number(row.current_value),
        "previous_value": _number(row.previous_value),
        "triggered_at": ts(row.triggered_at),
        "crossed_thresholds": row.crossed_thresholds,
    }


def _number(value: Decimal):
    """A JSON number as Lago sends alert values (decimal(30,5) rendered by Rails): exact for whole values."""
    return int(value) if value == value.to_integral_value() else float(value)

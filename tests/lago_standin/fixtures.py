"""A NexaCloud organisation as Lago serves it (shapes per shared/research/lago-api.md §2), for the stand-in.

Builders return fresh dicts: tests change a copy (a planted conflict, a price that differs) without touching
others. Ids are uuid5 of a readable key, so a rerun sees the same `lago_id`s, as a real organisation would.
"""
from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

_NS = uuid.UUID("6f1d3c2e-9a53-4c1e-8d0e-4c6167f0a001")
CREATED = "2025-06-01T12:00:00Z"


def lago_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{key}"))


def tax(code: str, name: str, rate: str) -> dict:
    return {
        "lago_id": lago_id("tax", code), "name": name, "code": code, "rate": float(rate) if "." in rate else int(rate),
        "description": None, "applied_to_organization": False, "add_ons_count": 0, "charges_count": 0,
        "customers_count": 0, "plans_count": 0, "created_at": CREATED,
    }


def metric(code: str, name: str, aggregation_type: str, field_name: str | None = None,
           filters: list[dict] | None = None, recurring: bool = False) -> dict:
    return {
        "lago_id": lago_id("metric", code), "name": name, "code": code, "description": None,
        "aggregation_type": aggregation_type, "weighted_interval": None, "recurring": recurring,
        "rounding_function": None, "rounding_precision": None, "created_at": CREATED,
        "field_name": field_name, "expression": None, "filters": filters or [],
        "active_subscriptions_count": 0, "draft_invoices_count": 0, "plans_count": 0,
    }


def charge(plan_code: str, metric_code: str, charge_model: str, properties: dict, *, code: str | None = None,
           filters: list[dict] | None = None, pay_in_advance: bool = False, min_amount_cents: int = 0) -> dict:
    code = code or metric_code
    return {
        "lago_id": lago_id("charge", f"{plan_code}/{code}"), "lago_billable_metric_id": lago_id("metric", metric_code),
        "billable_metric_code": metric_code, "code": code, "invoice_display_name": None, "created_at": CREATED,
        "charge_model": charge_model, "invoiceable": True, "regroup_paid_fees": None, "pay_in_advance": pay_in_advance,
        "prorated": False, "min_amount_cents": min_amount_cents, "properties": properties, "filters": filters or [],
        "taxes": [],
    }


def plan(code: str, name: str, amount_cents: int, charges: list[dict], *, interval: str = "monthly",
         pay_in_advance: bool = False, trial_period: float = 0.0) -> dict:
    return {
        "lago_id": lago_id("plan", code), "name": name, "invoice_display_name": None, "created_at": CREATED,
        "code": code, "interval": interval, "description": None, "amount_cents": amount_cents,
        "amount_currency": "CAD", "trial_period": trial_period, "pay_in_advance": pay_in_advance,
        "bill_charges_monthly": None, "active_subscriptions_count": 0, "draft_invoices_count": 0,
        "minimum_commitment": None, "charges": charges, "taxes": [], "usage_thresholds": [],
    }


def customer(external_id: str, name: str, *, city: str, state: str, zipcode: str, timezone: str,
             provider_customer_id: str | None, sequential_id: int, net_payment_term: int = 30) -> dict:
    return {
        "lago_id": lago_id("customer", external_id), "sequential_id": sequential_id,
        "slug": f"NXC-{sequential_id:03d}", "external_id": external_id, "account_type": "customer",
        "address_line1": f"{sequential_id} Main Street", "address_line2": None, "applicable_timezone": timezone,
        "city": city, "country": "CA", "currency": "CAD", "email": f"billing@{external_id}.test",
        "legal_name": f"{name} Inc.", "legal_number": None, "logo_url": None, "name": name, "firstname": None,
        "lastname": None, "customer_type": "company", "phone": None, "state": state,
        "tax_identification_number": None, "timezone": timezone, "url": None, "zipcode": zipcode,
        "net_payment_term": net_payment_term, "created_at": CREATED, "updated_at": CREATED,
        "finalize_zero_amount_invoice": "inherit",
        "billing_configuration": {
            "invoice_grace_period": 0,
            "payment_provider": "stripe" if provider_customer_id else None,
            "payment_provider_code": "stripe_nexa" if provider_customer_id else None,
            "provider_customer_id": provider_customer_id,
            "sync": bool(provider_customer_id), "sync_with_provider": bool(provider_customer_id),
            "document_locale": "en", "provider_payment_methods": ["card"] if provider_customer_id else [],
        },
        "shipping_address": {"address_line1": None, "address_line2": None, "city": None, "country": None,
                             "state": None, "zipcode": None},
        "metadata": [], "integration_customers": [], "taxes": [],
    }


def subscription(external_id: str, customer_external_id: str, plan_code: str, *, status: str, subscription_at: str,
                 billing_time: str = "calendar", started_at: str | None = None, next_plan_code: str | None = None,
                 downgrade_plan_date: str | None = None, previous_plan_code: str | None = None,
                 ending_at: str | None = None, amount_cents: int = 0) -> dict:
    key = f"{external_id}/{status}/{plan_code}"
    return {
        "lago_id": lago_id("subscription", key), "lago_customer_id": lago_id("customer", customer_external_id),
        "external_customer_id": customer_external_id, "external_id": external_id, "billing_time": billing_time,
        "name": None, "plan_code": plan_code, "plan_amount_cents": amount_cents, "plan_amount_currency": "CAD",
        "status": status, "created_at": subscription_at, "canceled_at": None,
        "started_at": started_at if started_at is not None else (subscription_at if status == "active" else None),
        "pending_start_date": subscription_at[:10] if status == "pending" else None,
        "subscription_at": subscription_at, "terminated_at": None, "ending_at": ending_at, "trial_ended_at": None,
        "previous_plan_code": previous_plan_code, "next_plan_code": next_plan_code,
        "downgrade_plan_date": downgrade_plan_date, "current_billing_period_started_at": None,
        "current_billing_period_ending_at": None, "on_termination_credit_note": None,
        "on_termination_invoice": "generate",
    }


def _tax_cents(amount_cents: int, rate: Decimal) -> Decimal:
    return Decimal(amount_cents) * rate / 100


def fee(*, invoice_key: str, index: int, kind: str, code: str, name: str, units: str, amount_cents: int,
        subscription_external_id: str, customer_external_id: str, taxes: list[tuple[str, str, str]],
        from_date: str, to_date: str, charge_lago_id: str | None = None, events_count: int = 0) -> dict:
    """One fee; `taxes` is [(code, name, rate percent)], each rounded half-up on this fee (Lago's per-fee tax)."""
    fee_id = lago_id("fee", f"{invoice_key}/{index}")
    applied = []
    for code_, name_, rate in taxes:
        cents = int(_tax_cents(amount_cents, Decimal(rate)).quantize(Decimal(1), ROUND_HALF_UP))
        applied.append({
            "lago_id": lago_id("fee_tax", f"{invoice_key}/{index}/{code_}"), "lago_fee_id": fee_id,
            "lago_tax_id": lago_id("tax", code_), "tax_name": name_, "tax_code": code_, "tax_rate": float(rate),
            "tax_description": None, "amount_cents": cents, "amount_currency": "CAD", "created_at": CREATED,
        })
    taxes_cents = sum(item["amount_cents"] for item in applied)
    return {
        "lago_id": fee_id, "lago_charge_id": charge_lago_id, "lago_charge_filter_id": None,
        "lago_invoice_id": lago_id("invoice", invoice_key), "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "lago_subscription_id": None, "external_subscription_id": subscription_external_id,
        "lago_customer_id": lago_id("customer", customer_external_id), "external_customer_id": customer_external_id,
        "item": {
            "type": kind, "code": code, "name": name, "description": None, "invoice_display_name": name,
            "filter_invoice_display_name": None, "filters": None,
            "lago_item_id": lago_id("metric" if kind == "charge" else "plan", code),
            "item_type": "BillableMetric" if kind == "charge" else "Subscription", "grouped_by": {},
        },
        "pay_in_advance": False, "invoiceable": True, "amount_cents": amount_cents, "amount_currency": "CAD",
        "precise_amount": str(Decimal(amount_cents) / 100), "precise_total_amount": None,
        "taxes_amount_cents": taxes_cents, "taxes_precise_amount": str(Decimal(taxes_cents) / 100),
        "taxes_rate": float(sum(Decimal(rate) for _, _, rate in taxes)),
        "total_amount_cents": amount_cents + taxes_cents, "total_amount_currency": "CAD", "units": units,
        "description": None, "precise_unit_amount": "0.0", "precise_coupons_amount_cents": "0.0",
        "events_count": events_count, "payment_status": "pending", "created_at": CREATED, "succeeded_at": None,
        "failed_at": None, "refunded_at": None, "from_date": from_date, "to_date": to_date, "amount_details": {},
        "self_billed": False, "applied_taxes": applied,
    }


def invoice(key: str, *, number: str, customer_obj: dict, issuing_date: str, fees: list[dict],
            billing_periods: list[dict], payment_status: str = "succeeded", status: str = "finalized") -> dict:
    """A finalized subscription invoice; totals and per-rate taxes are derived from `fees` as Lago sums them."""
    fees_cents = sum(item["amount_cents"] for item in fees)
    per_tax: dict[str, dict] = {}
    for item in fees:
        for applied in item["applied_taxes"]:
            entry = per_tax.setdefault(applied["tax_code"], {
                "lago_id": lago_id("invoice_tax", f"{key}/{applied['tax_code']}"),
                "lago_invoice_id": lago_id("invoice", key), "lago_tax_id": applied["lago_tax_id"],
                "tax_name": applied["tax_name"], "tax_code": applied["tax_code"], "tax_rate": applied["tax_rate"],
                "tax_description": None, "amount_cents": 0, "amount_currency": "CAD", "fees_amount_cents": 0,
                "created_at": CREATED,
            })
            entry["amount_cents"] += applied["amount_cents"]
            entry["fees_amount_cents"] += item["amount_cents"]
    taxes_cents = sum(entry["amount_cents"] for entry in per_tax.values())
    total = fees_cents + taxes_cents
    return {
        "lago_id": lago_id("invoice", key), "billing_entity_code": "nexa", "sequential_id": int(number[-3:]),
        "number": number, "issuing_date": issuing_date, "payment_due_date": issuing_date,
        "payment_dispute_lost_at": None, "payment_overdue": False, "net_payment_term": 0,
        "invoice_type": "subscription", "status": status, "payment_status": payment_status, "currency": "CAD",
        "version_number": 4, "fees_amount_cents": fees_cents, "coupons_amount_cents": 0,
        "credit_notes_amount_cents": 0, "prepaid_credit_amount_cents": 0,
        "progressive_billing_credit_amount_cents": 0, "sub_total_excluding_taxes_amount_cents": fees_cents,
        "taxes_amount_cents": taxes_cents, "sub_total_including_taxes_amount_cents": total,
        "total_amount_cents": total, "total_due_amount_cents": 0 if payment_status == "succeeded" else total,
        "total_paid_amount_cents": total if payment_status == "succeeded" else 0,
        "file_url": None, "xml_url": None, "self_billed": False, "voided_at": None,
        "created_at": f"{issuing_date}T06:00:00Z", "updated_at": f"{issuing_date}T06:00:00Z",
        "customer": customer_obj, "subscriptions": [], "fees": fees, "credits": [],
        "applied_taxes": list(per_tax.values()), "billing_periods": billing_periods, "metadata": [],
        "error_details": [],
    }


def billing_period(subscription_external_id: str, plan_code: str, start: str, end_inclusive: str) -> dict:
    """Lago's billing period: its `*_to_datetime` are inclusive (the period's last second)."""
    return {
        "lago_subscription_id": None, "external_subscription_id": subscription_external_id,
        "lago_plan_id": lago_id("plan", plan_code), "subscription_from_datetime": start,
        "subscription_to_datetime": end_inclusive, "charges_from_datetime": start,
        "charges_to_datetime": end_inclusive, "invoicing_reason": "subscription_periodic",
    }


HST = ("hst_on", "HST Ontario", "13.0")
GST = ("gst_ca", "GST", "5.0")
QST = ("qst_qc", "QST Quebec", "9.975")


def acme_customer() -> dict:
    return customer("acme", "Acme Robotics", city="Toronto", state="ON", zipcode="M5X 1A9",
                    timezone="America/Toronto", provider_customer_id="cus_AcmeLago001", sequential_id=1)


def acme_invoice(key: str, number: str, issued: str, start: str, end: str, hours: str, hours_cents: int,
                 calls: str, calls_cents: int, *, base_cents: int = 4900) -> dict:
    """Acme's monthly Cloud Pro invoice (Ontario HST) for the period [start, end] (Lago's inclusive end)."""
    common = {"invoice_key": key, "subscription_external_id": "sub-acme-1", "customer_external_id": "acme",
              "taxes": [HST], "from_date": start, "to_date": end}
    fees = [
        fee(index=0, kind="subscription", code="cloud_pro", name="Cloud Pro", units="1.0", amount_cents=base_cents,
            **common),
        fee(index=1, kind="charge", code="compute_hours", name="Compute hours", units=hours,
            amount_cents=hours_cents, charge_lago_id=lago_id("charge", "cloud_pro/compute_hours"), **common),
        fee(index=2, kind="charge", code="api_calls", name="API calls", units=calls, amount_cents=calls_cents,
            charge_lago_id=lago_id("charge", "cloud_pro/api_calls"), **common),
    ]
    return invoice(key, number=number, customer_obj=acme_customer(), issuing_date=issued, fees=fees,
                   billing_periods=[billing_period("sub-acme-1", "cloud_pro", start, end)])


def nexacloud_org() -> dict[str, list[dict]]:
    """NexaCloud on Lago: 4 taxes, 3 metrics (one with filters), 3 plans, 3 customers (2 with a Stripe customer),
    active, downgrading and pending subscriptions, 3 finalized invoices."""
    taxes = [tax("hst_on", "HST Ontario", "13.0"), tax("gst_ca", "GST", "5.0"), tax("qst_qc", "QST Quebec", "9.975"),
             tax("pst_bc", "PST British Columbia", "7.0")]
    metrics = [
        metric("compute_hours", "Compute hours", "sum_agg", "hours",
               filters=[{"key": "region", "values": ["ca-east", "ca-west"]}]),
        metric("api_calls", "API calls", "count_agg"),
        metric("storage_gb", "Storage", "max_agg", "gb"),
    ]
    graduated = {"graduated_ranges": [
        {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "0"},
        {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"},
    ]}
    plans = [
        plan("cloud_pro", "Cloud Pro", 4900, [
            charge("cloud_pro", "compute_hours", "graduated", graduated),
            charge("cloud_pro", "api_calls", "package", {"amount": "5", "package_size": 1000, "free_units": 100}),
        ]),
        plan("cloud_basic", "Cloud Basic", 1900, [charge("cloud_basic", "api_calls", "standard", {"amount": "0.01"})]),
        plan("cloud_starter", "Cloud Starter", 0, [charge("cloud_starter", "storage_gb", "standard", {"amount": "0.25"})]),
    ]
    acme = acme_customer()
    globex = customer("globex", "Globex", city="Montreal", state="QC", zipcode="H2Y 1C6",
                      timezone="America/Toronto", provider_customer_id="cus_GlobexLago002", sequential_id=2)
    initech = customer("initech", "Initech", city="Vancouver", state="BC", zipcode="V6B 1A1",
                       timezone="America/Vancouver", provider_customer_id=None, sequential_id=3)
    subscriptions = [
        subscription("sub-acme-1", "acme", "cloud_pro", status="active", subscription_at="2026-01-15T05:00:00Z",
                     amount_cents=4900),
        subscription("sub-globex-1", "globex", "cloud_pro", status="active", subscription_at="2026-03-10T05:00:00Z",
                     billing_time="anniversary", next_plan_code="cloud_basic", downgrade_plan_date="2026-12-10",
                     amount_cents=4900),
        subscription("sub-globex-1", "globex", "cloud_basic", status="pending", subscription_at="2026-12-10T05:00:00Z",
                     billing_time="anniversary", previous_plan_code="cloud_pro", amount_cents=1900),
        subscription("sub-initech-1", "initech", "cloud_starter", status="pending",
                     subscription_at="2026-12-01T08:00:00Z"),
    ]

    invoices = [
        acme_invoice("acme-2026-09", "NXC-001-009", "2026-10-01", "2026-09-01T04:00:00Z", "2026-10-01T03:59:59Z",
                     "80.0", 800, "1100.0", 500),
        acme_invoice("acme-2026-10", "NXC-001-010", "2026-11-01", "2026-10-01T04:00:00Z", "2026-11-01T03:59:59Z",
                     "150.0", 1250, "2100.0", 1000),
    ]
    globex_common = {"invoice_key": "globex-2026-10", "subscription_external_id": "sub-globex-1",
                     "customer_external_id": "globex", "taxes": [GST, QST], "from_date": "2026-10-10T04:00:00Z",
                     "to_date": "2026-11-10T04:59:59Z"}
    invoices.append(invoice(
        "globex-2026-10", number="NXC-002-008", customer_obj=globex, issuing_date="2026-11-10",
        fees=[fee(index=0, kind="subscription", code="cloud_pro", name="Cloud Pro", units="1.0", amount_cents=4900,
                  **globex_common)],
        billing_periods=[billing_period("sub-globex-1", "cloud_pro", "2026-10-10T04:00:00Z", "2026-11-10T04:59:59Z")],
        payment_status="pending",
    ))
    return {"taxes": taxes, "billable_metrics": metrics, "plans": plans, "customers": [acme, globex, initech],
            "subscriptions": subscriptions, "invoices": invoices}

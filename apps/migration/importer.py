"""Import a Lago organisation into the hub for one service: catalog, customers, subscriptions, invoice history.

Upserts by the natural keys apps use (codes, external ids, invoice numbers), so a rerun changes nothing and
says so. Pricing is never overwritten: a metric whose aggregation differs, or a plan whose base fee or charges
differ, is reported as a conflict and left as the hub has it. Each page of each resource commits with its
checkpoint (`ImportCheckpoint`): after a crash the next run resumes the same `ImportRun` after the last page it
committed, and ends with the same rows as one clean import.

Imported rows are history, not events: no webhook, ledger posting or payment is written for them (the
subscriptions and invoices are inserted here rather than through the services that announce them).
"""
from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.catalog.models import BillableMetric, Charge, Plan, Tax
from apps.catalog.services import (
    billable_metric_create,
    billable_metric_update,
    plan_create,
    plan_update,
    tax_create,
    tax_update,
)
from apps.core.exceptions import BillingError
from apps.customers.models import CANADIAN_PROVINCES, AccountLink, Customer, Service
from apps.customers.services import customer_upsert
from apps.invoicing.models import Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription
from apps.invoicing.numbering import invoice_numbers_take
from apps.invoicing.rating import validate_properties
from apps.invoicing.selectors import group_key_part
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import local_date, local_midnight_utc, period_containing

from .lago_client import LagoClient, LagoUnavailable
from .models import ImportCheckpoint, ImportIssue, ImportRun, LagoObject, ServicePhase

logger = logging.getLogger(__name__)

# Order matters: charges need metrics, subscriptions customers and plans, pending subscriptions the active ones
# they follow, invoices the subscriptions and charges their fees map to.
RESOURCES = ("taxes", "billable_metrics", "plans", "customers", "subscriptions_active", "subscriptions_pending",
             "invoices")
_LISTS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "taxes": ("taxes", []),
    "billable_metrics": ("billable_metrics", []),
    "plans": ("plans", []),
    "customers": ("customers", []),
    "subscriptions_active": ("subscriptions", [("status[]", "active")]),
    "subscriptions_pending": ("subscriptions", [("status[]", "pending")]),
    "invoices": ("invoices", [("statuses[]", "finalized")]),
}
OUTCOMES = ("created", "updated", "unchanged", "skipped", "conflict")
# Session advisory lock namespace: one import per service at a time.
_IMPORT_LOCK = 0x6C61676F  # "lago"
PAGE_RETRIES = 3

_PRICING_METRIC_FIELDS = ("aggregation_type", "field_name", "recurring", "weighted_interval", "rounding_function",
                          "rounding_precision")
_PLAN_PRICING_FIELDS = ("interval", "amount_cents", "amount_currency", "pay_in_advance", "trial_period")
_CHARGE_PRICING_FIELDS = ("charge_model", "properties", "pay_in_advance", "invoiceable", "prorated",
                          "min_amount_cents")


class ImportRefused(BillingError):
    code = "import_refused"


@dataclass
class Outcome:
    result: str  # one of OUTCOMES
    key: str
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


class _DryRun(Exception):
    """Raised to roll a dry run's writes back."""


def _plain(value: Any) -> Any:
    """JSON-safe copy for JSONField: Lago's numbers are parsed as Decimal (no floats); store them as strings."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _until(value: Any) -> datetime | None:
    """An end instant made exclusive: Lago's billing periods end on their last second (`…23:59:59`), the hub's on
    the next period's first instant."""
    moment = _when(value)
    if moment is None:
        return None
    if moment.microsecond or moment.second == 59:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _decimal(value: Any, default: str = "0") -> Decimal:
    if value is None or value == "":
        return Decimal(default)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


class Importer:
    """One run over the resources; `on_page(resource, page)` is called after each page commits."""

    def __init__(self, *, service: Service, client: LagoClient, run: ImportRun, per_page: int = 100,
                 progress: Callable[[str], None] | None = None, on_page: Callable[[str, int], None] | None = None):
        self.service, self.client, self.run, self.per_page = service, client, run, per_page
        self.progress = progress or (lambda message: None)
        self.on_page = on_page
        self.counts: dict[str, dict[str, int]] = {}
        self.issues: list[tuple[str, str, str, str]] = []  # (resource, key, outcome, reason), dry runs keep them here
        self._refused_keys: dict[str, set[str]] = {}

    # -- the loop -------------------------------------------------------------------------------
    def run_all(self) -> None:
        for resource in RESOURCES:
            self._run_resource(resource)

    def _fetch(self, resource: str, page: int):
        name, params = _LISTS[resource]
        for attempt in range(1, PAGE_RETRIES + 1):
            try:
                return self.client.list_page(name, page=page, per_page=self.per_page, params=params)
            except LagoUnavailable:
                if attempt == PAGE_RETRIES:
                    raise
                time.sleep(attempt)  # a blip: the run is resumable anyway, so a few short waits only
        raise AssertionError("unreachable")

    def _run_resource(self, resource: str) -> None:
        checkpoint = None
        if not self.run.dry_run:
            checkpoint, _ = ImportCheckpoint.objects.get_or_create(run=self.run, resource=resource)
            self.counts[resource] = dict(checkpoint.counts) or {outcome: 0 for outcome in OUTCOMES}
            if checkpoint.done:
                self.progress(f"{resource}: done in an earlier attempt of this run")
                return
        else:
            self.counts[resource] = {outcome: 0 for outcome in OUTCOMES}
        page = (checkpoint.page if checkpoint else 0) + 1
        handler = getattr(self, f"_import_{resource}")
        while True:
            listing = self._fetch(resource, page)
            with transaction.atomic():
                for item in listing.items:
                    with transaction.atomic():  # one object's failure is its own, not the page's
                        try:
                            outcome = handler(item)
                        except (BillingError, ValueError, KeyError, TypeError, IntegrityError) as exc:
                            outcome = Outcome("skipped", _key(resource, item), f"{type(exc).__name__}: {exc}")
                    self._record(resource, outcome)
                if checkpoint is not None:
                    checkpoint.page, checkpoint.total_pages = page, listing.total_pages
                    checkpoint.done = listing.next_page is None
                    checkpoint.counts = self.counts[resource]
                    checkpoint.save()
                    ImportRun.objects.filter(pk=self.run.pk).update(counts={**self.run.counts, **self.counts})
            total = max(listing.total_pages, page if listing.items else 0)
            self.progress(f"{resource}: page {page}/{total} " + _summary(self.counts[resource]))
            if self.on_page is not None:
                self.on_page(resource, page)
            if listing.next_page is None:
                return
            page = int(listing.next_page)

    def _record(self, resource: str, outcome: Outcome) -> None:
        self.counts[resource][outcome.result] = self.counts[resource].get(outcome.result, 0) + 1
        rows = []
        if outcome.result in ("skipped", "conflict"):
            rows.append((resource, outcome.key, outcome.result, outcome.reason))
        rows.extend((resource, outcome.key, "warning", warning) for warning in outcome.warnings)
        if self.run.dry_run:
            self.issues.extend(rows)
        elif rows:
            # A page commits once with its checkpoint, so an object's issues are never written twice.
            ImportIssue.objects.bulk_create(
                ImportIssue(run=self.run, resource=r, key=k[:255], outcome=o, reason=why) for r, k, o, why in rows)

    def _map(self, kind: str, lago_id: Any, hub_id: int) -> None:
        if lago_id:
            LagoObject.objects.update_or_create(service=self.service, kind=kind, lago_id=str(lago_id),
                                                defaults={"hub_id": hub_id})

    def _mapped(self, kind: str, lago_id: Any) -> int | None:
        if not lago_id:
            return None
        return LagoObject.objects.filter(service=self.service, kind=kind, lago_id=str(lago_id)).values_list(
            "hub_id", flat=True).first()

    # -- taxes ----------------------------------------------------------------------------------
    def _import_taxes(self, item: dict) -> Outcome:
        code = item["code"]
        rate = _decimal(item["rate"])
        tax = Tax.objects.filter(code=code).first()
        if tax is None:
            tax = tax_create(service=self.service, values={
                "code": code, "name": _str(item.get("name")) or code, "rate": rate,
                "description": _str(item.get("description"))})
            self._map("tax", item.get("lago_id"), tax.pk)
            return Outcome("created", code)
        self._map("tax", item.get("lago_id"), tax.pk)
        if tax.rate != rate:
            return Outcome("conflict", code, f"rate {tax.rate.normalize()}% on the hub, {rate.normalize()}% on Lago; "
                                             "the hub's rate is kept")
        if tax.service_id == self.service.pk:
            changed = {f: v for f, v in (("name", _str(item.get("name")) or code),
                                         ("description", _str(item.get("description")))) if getattr(tax, f) != v}
            if changed:
                tax_update(tax=tax, values=changed)
                return Outcome("updated", code)
        return Outcome("unchanged", code)

    # -- billable metrics -----------------------------------------------------------------------
    def _import_billable_metrics(self, item: dict) -> Outcome:
        code = item["code"]
        if item["aggregation_type"] not in BillableMetric.Aggregation.values:
            return Outcome("skipped", code, f"aggregation {item['aggregation_type']} is not supported by the hub")
        if item.get("expression"):
            return Outcome("skipped", code, "metrics with an expression are not supported by the hub")
        values = {
            "code": code, "name": _str(item.get("name")) or code, "description": _str(item.get("description")),
            "aggregation_type": item["aggregation_type"], "field_name": _str(item.get("field_name")),
            "recurring": bool(item.get("recurring")), "weighted_interval": _str(item.get("weighted_interval")),
            "rounding_function": _str(item.get("rounding_function")),
            "rounding_precision": item.get("rounding_precision"),
            "filters": [{"key": f["key"], "values": list(f["values"])} for f in item.get("filters") or []],
        }
        metric = BillableMetric.objects.filter(service=self.service, code=code, deleted_at__isnull=True).first()
        if metric is None:
            metric = billable_metric_create(service=self.service, values=values)
            self._map("metric", item.get("lago_id"), metric.pk)
            return Outcome("created", code)
        self._map("metric", item.get("lago_id"), metric.pk)
        differ = [f for f in _PRICING_METRIC_FIELDS if getattr(metric, f) != values[f]]
        if differ:
            detail = ", ".join(f"{f} {getattr(metric, f)!r} on the hub, {values[f]!r} on Lago" for f in differ)
            return Outcome("conflict", code, f"{detail}; the hub's metric is kept")
        changed = {f: values[f] for f in ("name", "description", "filters") if getattr(metric, f) != values[f]}
        if changed:
            billable_metric_update(metric=metric, values=changed)
            return Outcome("updated", code)
        return Outcome("unchanged", code)

    # -- plans ----------------------------------------------------------------------------------
    def _lago_charges(self, item: dict) -> tuple[list[dict], str]:
        """Lago's charges as hub charge values (with `metric`), or ([], reason to skip the plan)."""
        charges, seen = [], set()
        for index, charge in enumerate(item.get("charges") or []):
            metric_code = charge.get("billable_metric_code")
            metric = BillableMetric.objects.filter(service=self.service, code=metric_code, deleted_at__isnull=True).first()
            if metric is None:
                return [], f"metric {metric_code} is not on the hub (skipped or not imported)"
            if metric_code in self._refused("billable_metrics"):
                return [], f"metric {metric_code} was not imported (conflict or skipped)"
            if charge["charge_model"] not in Charge.ChargeModel.values:
                return [], f"charge model {charge['charge_model']} is not supported by the hub"
            if charge.get("filters"):
                # The hub prices filters (issue 21); the import does not carry them over yet.
                return [], f"charge {charge.get('code') or metric_code} prices filters, which the import does not copy"
            properties = _plain(charge.get("properties") or {})
            problems = validate_properties(charge["charge_model"], properties)
            if problems:
                return [], f"charge {charge.get('code') or metric_code} properties refused: {problems}"
            code = charge.get("code") or (metric_code if metric_code not in seen else f"{metric_code}_{index}")
            seen.add(code)
            charges.append({
                "metric": metric, "lago_id": charge.get("lago_id"), "code": code,
                "invoice_display_name": _str(charge.get("invoice_display_name")),
                "charge_model": charge["charge_model"], "properties": properties,
                "pay_in_advance": bool(charge.get("pay_in_advance")),
                "invoiceable": charge.get("invoiceable", True) is not False,
                "prorated": bool(charge.get("prorated")), "min_amount_cents": int(charge.get("min_amount_cents") or 0),
                "filters": [],
            })
        return charges, ""

    def _import_plans(self, item: dict) -> Outcome:
        code = item["code"]
        if item["interval"] not in Plan.Interval.values:
            return Outcome("skipped", code, f"interval {item['interval']} is not supported by the hub")
        for unsupported in ("minimum_commitment", "usage_thresholds", "fixed_charges"):
            if item.get(unsupported):
                return Outcome("skipped", code, f"{unsupported} is not supported by the hub")
        charges, reason = self._lago_charges(item)
        if reason:
            return Outcome("skipped", code, reason)
        trial = _decimal(item.get("trial_period"))
        if trial != trial.to_integral_value():
            return Outcome("skipped", code, f"trial period {trial} days is not a whole number of days")
        values = {
            "code": code, "name": _str(item.get("name")) or code, "description": _str(item.get("description")),
            "invoice_display_name": _str(item.get("invoice_display_name")), "interval": item["interval"],
            "amount_cents": int(item["amount_cents"]), "amount_currency": item["amount_currency"],
            "pay_in_advance": bool(item.get("pay_in_advance")), "trial_period": int(trial),
        }
        plan = Plan.objects.filter(service=self.service, code=code, deleted_at__isnull=True).first()
        if plan is None:
            plan = plan_create(service=self.service, values=values, charges=[
                {**{k: v for k, v in charge.items() if k not in ("metric", "lago_id")},
                 "billable_metric_id": charge["metric"].lago_id}
                for charge in charges
            ])
            self._map_plan(item, plan, charges)
            return Outcome("created", code)
        self._map_plan(item, plan, charges)
        differences = [f"{f} {getattr(plan, f)!r} on the hub, {values[f]!r} on Lago"
                       for f in _PLAN_PRICING_FIELDS if getattr(plan, f) != values[f]]
        differences.extend(self._charge_differences(plan, charges))
        if differences:
            return Outcome("conflict", code, "; ".join(differences) + "; the hub's plan is kept")
        changed = {f: values[f] for f in ("name", "description", "invoice_display_name") if getattr(plan, f) != values[f]}
        if changed:
            plan_update(plan=plan, values=changed, charges=None)
            return Outcome("updated", code)
        return Outcome("unchanged", code)

    def _charge_differences(self, plan: Plan, charges: list[dict]) -> list[str]:
        hub = {charge.code: charge for charge in plan.charges.select_related("billable_metric")}
        lago = {charge["code"]: charge for charge in charges}
        out = [f"charge {code} only on the hub" for code in sorted(hub.keys() - lago.keys())]
        out += [f"charge {code} only on Lago" for code in sorted(lago.keys() - hub.keys())]
        for code in sorted(hub.keys() & lago.keys()):
            mine, theirs = hub[code], lago[code]
            if mine.billable_metric.code != theirs["metric"].code:
                out.append(f"charge {code} meters {mine.billable_metric.code} on the hub, {theirs['metric'].code} on Lago")
            out += [f"charge {code} {f} {getattr(mine, f)!r} on the hub, {theirs[f]!r} on Lago"
                    for f in _CHARGE_PRICING_FIELDS if _plain(getattr(mine, f)) != theirs[f]]
        return out

    def _map_plan(self, item: dict, plan: Plan, charges: list[dict]) -> None:
        self._map("plan", item.get("lago_id"), plan.pk)
        by_code = dict(plan.charges.values_list("code", "pk"))
        for charge in charges:
            if charge["code"] in by_code:
                self._map("charge", charge["lago_id"], by_code[charge["code"]])

    # -- customers ------------------------------------------------------------------------------
    def _customer_values(self, item: dict) -> tuple[dict, list[str]]:
        warnings = []
        billing = item.get("billing_configuration") or {}
        country = _str(item.get("country")).upper()
        state = _str(item.get("state")).strip()
        if country == "CA" and state:
            names = {name.lower(): code for code, name in CANADIAN_PROVINCES.items()}
            state = state.upper() if state.upper() in CANADIAN_PROVINCES else names.get(state.lower(), state)
            if state not in CANADIAN_PROVINCES:
                warnings.append(f"province {item.get('state')!r} is not a Canadian province: sales tax cannot be "
                                "computed until it is corrected")
        tz = _str(item.get("timezone"))
        if tz and tz not in zoneinfo.available_timezones():
            warnings.append(f"timezone {tz!r} unknown: the hub default applies")
            tz = ""
        grace = billing.get("invoice_grace_period")
        values = {
            "name": _str(item.get("name")), "firstname": _str(item.get("firstname")),
            "lastname": _str(item.get("lastname")), "legal_name": _str(item.get("legal_name")),
            "legal_number": _str(item.get("legal_number")),
            "tax_identification_number": _str(item.get("tax_identification_number")),
            "customer_type": _str(item.get("customer_type")), "email": _str(item.get("email")),
            "phone": _str(item.get("phone")), "url": _str(item.get("url")),
            "address_line1": _str(item.get("address_line1")), "address_line2": _str(item.get("address_line2")),
            "city": _str(item.get("city")), "zipcode": _str(item.get("zipcode")), "state": state, "country": country,
            "currency": _str(item.get("currency")), "timezone": tz,
            "net_payment_term": int(item.get("net_payment_term") or 0),
            "invoice_grace_period": int(grace) if grace is not None else None,
            "metadata": [{"key": m.get("key"), "value": m.get("value"),
                          "display_in_invoice": bool(m.get("display_in_invoice"))}
                         for m in item.get("metadata") or []],
        }
        return values, warnings

    def _import_customers(self, item: dict) -> Outcome:
        from apps.payments.models import StripeCustomer

        external_id = item["external_id"]
        values, warnings = self._customer_values(item)
        link = AccountLink.objects.filter(service=self.service, external_id=external_id,
                                          deleted_at__isnull=True).select_related("customer").first()
        if link is None:
            result = "created"
            link = customer_upsert(service=self.service, external_id=external_id, attributes=values)
        else:
            changed = {f: v for f, v in values.items() if getattr(link.customer, f) != v}
            result = "updated" if changed else "unchanged"
            if changed:
                customer_upsert(service=self.service, external_id=external_id, attributes=changed)
        customer = link.customer
        self._map("customer", item.get("lago_id"), customer.pk)
        billing = item.get("billing_configuration") or {}
        stripe_id = billing.get("provider_customer_id")
        if billing.get("payment_provider") == "stripe" and stripe_id:
            # Nexa runs one Stripe account for Lago and the hub: the customer, and the cards saved on it, carry
            # over by linking the same Stripe customer (payments app's row; no Stripe call is made here).
            mine = StripeCustomer.objects.filter(customer=customer).first()
            if mine is None:
                other = StripeCustomer.objects.filter(stripe_customer_id=stripe_id).select_related("customer").first()
                if other is not None:
                    return Outcome("conflict", external_id, f"Stripe customer {stripe_id} is already the hub customer "
                                   f"{other.customer.external_id}'s; not linked", warnings)
                StripeCustomer.objects.create(customer=customer, stripe_customer_id=stripe_id)
                result = "updated" if result == "unchanged" else result
            elif mine.stripe_customer_id != stripe_id:
                return Outcome("conflict", external_id, f"Stripe customer {mine.stripe_customer_id} on the hub, "
                               f"{stripe_id} on Lago; the hub's is kept", warnings)
        return Outcome(result, external_id, warnings=warnings)

    # -- subscriptions --------------------------------------------------------------------------
    def _refused(self, resource: str) -> set[str]:
        """Keys of `resource` this run did not import (conflict or skipped): what depends on them is skipped too,
        since the hub's version would price it differently. Read once per resource (it is complete by then)."""
        if resource not in self._refused_keys:
            if self.run.dry_run:
                keys = {key for r, key, outcome, _ in self.issues if r == resource and outcome in ("conflict", "skipped")}
            else:
                keys = set(ImportIssue.objects.filter(run=self.run, resource=resource,
                                                      outcome__in=("conflict", "skipped")).values_list("key", flat=True))
            self._refused_keys[resource] = keys
        return self._refused_keys[resource]

    def _subscription_parts(self, item: dict) -> tuple[AccountLink | None, Plan | None, str]:
        link = AccountLink.objects.filter(service=self.service, external_id=item["external_customer_id"],
                                          deleted_at__isnull=True).select_related("customer").first()
        if link is None:
            return None, None, f"customer {item['external_customer_id']} is not on the hub"
        if item["plan_code"] in self._refused("plans"):
            return None, None, f"plan {item['plan_code']} was not imported (conflict or skipped)"
        plan = Plan.objects.filter(service=self.service, code=item["plan_code"], deleted_at__isnull=True).first()
        if plan is None:
            return None, None, f"plan {item['plan_code']} is not on the hub"
        if item.get("billing_time") not in Subscription.BillingTime.values:
            return None, None, f"billing time {item.get('billing_time')} is not supported by the hub"
        return link, plan, ""

    def _subscription_upsert(self, item: dict, *, status: str, values: dict, link: AccountLink, plan: Plan) -> Outcome:
        external_id = item["external_id"]
        existing = Subscription.objects.filter(service=self.service, external_id=external_id, status=status).first()
        if existing is None:
            subscription = Subscription.objects.create(
                service=self.service, account_link=link, customer=link.customer, plan=plan, external_id=external_id,
                status=status, **values)
            self._map("subscription", item.get("lago_id"), subscription.pk)
            return Outcome("created", external_id)
        self._map("subscription", item.get("lago_id"), existing.pk)
        if existing.account_link_id != link.pk:
            return Outcome("conflict", external_id, f"{status} on another customer on the hub; kept")
        if existing.plan_id != plan.pk:
            return Outcome("conflict", external_id, f"plan {existing.plan.code} on the hub, {plan.code} on Lago; kept")
        changed = {f: v for f, v in values.items() if getattr(existing, f) != v}
        if not changed:
            return Outcome("unchanged", external_id)
        for f, v in changed.items():
            setattr(existing, f, v)
        existing.save(update_fields=[*changed, "updated_at"])
        return Outcome("updated", external_id)

    def _import_subscriptions_active(self, item: dict) -> Outcome:
        link, plan, reason = self._subscription_parts(item)
        if reason:
            return Outcome("skipped", item["external_id"], reason)
        subscription_at = _when(item.get("subscription_at")) or _when(item.get("started_at"))
        values = {
            "name": _str(item.get("name")), "billing_time": item["billing_time"], "subscription_at": subscription_at,
            "started_at": _when(item.get("started_at")) or subscription_at, "ending_at": _when(item.get("ending_at")),
        }
        return self._subscription_upsert(item, status=Subscription.Status.ACTIVE, values=values, link=link, plan=plan)

    def _import_subscriptions_pending(self, item: dict) -> Outcome:
        link, plan, reason = self._subscription_parts(item)
        if reason:
            return Outcome("skipped", item["external_id"], reason)
        values = {
            "name": _str(item.get("name")), "billing_time": item["billing_time"],
            "subscription_at": _when(item.get("subscription_at")), "ending_at": _when(item.get("ending_at")),
            "activates_at": None, "previous_subscription": None,
        }
        if item.get("previous_plan_code"):
            # A pending downgrade: Lago keeps the anchor and switches on the active one's `downgrade_plan_date`.
            active = Subscription.objects.filter(service=self.service, external_id=item["external_id"],
                                                 status=Subscription.Status.ACTIVE).select_related("plan").first()
            if active is None or active.plan.code != item["previous_plan_code"]:
                return Outcome("skipped", item["external_id"],
                               f"downgrade from {item['previous_plan_code']}, which is not the active subscription's plan")
            switch = parse_date(_str(self._downgrade_date(item)))
            if switch is None:
                return Outcome("skipped", item["external_id"], "downgrade without a downgrade_plan_date")
            values.update(previous_subscription=active, subscription_at=active.subscription_at,
                          activates_at=local_midnight_utc(switch, link.customer.applicable_timezone))
        return self._subscription_upsert(item, status=Subscription.Status.PENDING, values=values, link=link, plan=plan)

    def _downgrade_date(self, item: dict) -> str | None:
        """The active subscription's `downgrade_plan_date` (Lago puts it there, not on the pending one)."""
        if item.get("downgrade_plan_date"):
            return item["downgrade_plan_date"]
        active = self.client.get("subscriptions", item["external_id"], root="subscription")
        return active.get("downgrade_plan_date")

    # -- invoices (read-only history) -----------------------------------------------------------
    def _import_invoices(self, listed: dict) -> Outcome:
        number = listed["number"]
        existing = Invoice.objects.filter(number=number).first()
        if existing is not None:
            mapped = self._mapped("invoice", listed.get("lago_id"))
            if mapped != existing.pk:
                return Outcome("conflict", number, "an invoice with this number exists on the hub; kept")
            changed = {}
            if listed.get("payment_status") in Invoice.PaymentStatus.values and existing.payment_status != listed["payment_status"]:
                changed["payment_status"] = listed["payment_status"]
            paid = int(listed.get("total_paid_amount_cents") or 0)
            if existing.total_paid_amount_cents != paid:
                changed["total_paid_amount_cents"] = paid
            if changed:
                Invoice.objects.filter(pk=existing.pk).update(**changed, updated_at=timezone.now())
                return Outcome("updated", number)
            return Outcome("unchanged", number)
        kind = {"subscription": Invoice.InvoiceType.SUBSCRIPTION, "one_off": Invoice.InvoiceType.ONE_OFF,
                "add_on": Invoice.InvoiceType.ONE_OFF}.get(listed.get("invoice_type"))
        if kind is None:
            return Outcome("skipped", number, f"invoice type {listed.get('invoice_type')} is not imported")
        item = self.client.get("invoices", str(listed["lago_id"]), root="invoice")  # the list omits fees
        customer_ext = (item.get("customer") or {}).get("external_id") or item.get("external_customer_id")
        link = AccountLink.objects.filter(service=self.service, external_id=customer_ext,
                                          deleted_at__isnull=True).select_related("customer").first()
        if link is None:
            return Outcome("skipped", number, f"customer {customer_ext} is not on the hub")
        warnings = []
        for deduction in ("coupons_amount_cents", "prepaid_credit_amount_cents", "progressive_billing_credit_amount_cents"):
            if int(item.get(deduction) or 0):
                warnings.append(f"{deduction} {item[deduction]} kept in the totals only (no such lines on the hub)")
        issued = parse_date(item["issuing_date"])
        # Lago's number is kept; the position in a series of the service's imported history keeps the hub's
        # rule that every finalized invoice has a gapless sequential id (the generated number is not used).
        series = f"LAGO-{self.service.code.upper()}"
        [(sequential_id, _)] = invoice_numbers_take(series=series, count=1)
        invoice = Invoice.objects.create(
            series=series, sequential_id=sequential_id,
            customer=link.customer, invoice_type=kind, status=Invoice.Status.FINALIZED,
            payment_status=item.get("payment_status") if item.get("payment_status") in Invoice.PaymentStatus.values
            else Invoice.PaymentStatus.PENDING,
            currency=item["currency"], number=number, issuing_date=issued,
            payment_due_date=parse_date(_str(item.get("payment_due_date"))) or issued,
            net_payment_term=int(item.get("net_payment_term") or 0),
            fees_amount_cents=int(item.get("fees_amount_cents") or 0),
            sub_total_excluding_taxes_amount_cents=int(item.get("sub_total_excluding_taxes_amount_cents") or 0),
            taxes_amount_cents=int(item.get("taxes_amount_cents") or 0),
            sub_total_including_taxes_amount_cents=int(item.get("sub_total_including_taxes_amount_cents") or 0),
            credit_notes_amount_cents=int(item.get("credit_notes_amount_cents") or 0),
            total_amount_cents=int(item.get("total_amount_cents") or 0),
            total_paid_amount_cents=int(item.get("total_paid_amount_cents") or 0),
            finalized_at=_when(item.get("created_at")) or timezone.now(),
        )
        self._map("invoice", item.get("lago_id"), invoice.pk)
        subscriptions: dict[str, Subscription] = {}
        # The subscription that was billed: the active one, else the newest terminated; never a pending successor
        # (a downgrade shares the external id, and its period keys would leave the active one's periods unbilled).
        for sub in Subscription.objects.filter(
            service=self.service, status__in=(Subscription.Status.ACTIVE, Subscription.Status.TERMINATED),
            external_id__in={fee.get("external_subscription_id") for fee in item.get("fees") or []}
            | {period.get("external_subscription_id") for period in item.get("billing_periods") or []},
        ).select_related("plan", "customer").order_by("status", "-started_at"):  # "active" sorts first
            subscriptions.setdefault(sub.external_id, sub)
        periods = []
        for period in item.get("billing_periods") or []:
            subscription = subscriptions.get(period.get("external_subscription_id"))
            if subscription is None:
                warnings.append(f"billing period of {period.get('external_subscription_id')} kept without subscription")
                continue
            periods.append(InvoiceSubscription.objects.create(
                invoice=invoice, subscription=subscription,
                from_datetime=_when(period["subscription_from_datetime"]),
                to_datetime=_until(period["subscription_to_datetime"]),
                charges_from_datetime=_when(period.get("charges_from_datetime") or period["subscription_from_datetime"]),
                charges_to_datetime=_until(period.get("charges_to_datetime") or period["subscription_to_datetime"]),
                invoicing_reason=_str(period.get("invoicing_reason")) or "subscription_periodic",
            ))
        for fee in item.get("fees") or []:
            warnings.extend(self._history_fee(invoice, fee, subscriptions.get(fee.get("external_subscription_id"))))
        for period in periods:
            self._period_placeholders(invoice, period)
        for tax in item.get("applied_taxes") or []:
            InvoiceAppliedTax.objects.create(
                invoice=invoice, tax_code=tax["tax_code"], tax_name=_str(tax.get("tax_name")),
                tax_rate=_decimal(tax.get("tax_rate")), base_amount_cents=int(tax.get("fees_amount_cents") or 0),
                amount_cents=int(tax.get("amount_cents") or 0))
        self._usage_billed_until(invoice)
        return Outcome("created", number, warnings=warnings)

    def _history_fee(self, invoice: Invoice, fee: dict, subscription: Subscription | None) -> list[str]:
        """Write one Lago fee. A subscription or charge fee takes the key the close gives that period's fee, so the
        hub never bills again a period Lago invoiced; if the hub already billed it (a shadow close), the fee keeps
        a Lago key and the overlap is reported."""
        item = fee.get("item") or {}
        kind = item.get("type")
        charge_id = self._mapped("charge", fee.get("lago_charge_id")) if kind == "charge" else None
        grouped_by = _plain(item.get("grouped_by") or {}) if kind == "charge" else {}
        start = _when(fee.get("from_date"))
        key = None
        if subscription is not None and start is not None and kind in ("subscription", "charge"):
            tz = invoice.customer.applicable_timezone
            anchor = local_date(subscription.subscription_at, tz)
            # A first calendar period starts before the anchor (proration): look it up from the anchor on.
            period = period_containing(interval=subscription.plan.interval, billing_time=subscription.billing_time,
                                       anchor_date=anchor, at=max(local_date(start, tz), anchor))
            if kind == "subscription":
                key = f"sub:{subscription.pk}:base:{period.start}"
            elif charge_id is not None:
                key = f"sub:{subscription.pk}:charge:{charge_id}:{period.start}"
                if grouped_by:  # one Lago fee per pricing group: each under its group's key, as the close writes
                    key = f"{key}:group:{group_key_part(grouped_by)}"
        warnings = []
        if key is not None and Fee.objects.filter(fee_key=key).exists():
            warnings.append(f"fee {fee.get('lago_id')}: the hub already billed this period ({key})")
            key = None
        fee_type = {"subscription": Fee.FeeType.SUBSCRIPTION, "charge": Fee.FeeType.CHARGE,
                    "add_on": Fee.FeeType.ADD_ON, "credit": Fee.FeeType.CREDIT,
                    "commitment": Fee.FeeType.COMMITMENT}.get(kind, Fee.FeeType.ADD_ON)
        applied = [{"code": tax["tax_code"], "name": _str(tax.get("tax_name")), "rate": str(_decimal(tax.get("tax_rate"))),
                    "amount_cents": int(tax.get("amount_cents") or 0)} for tax in fee.get("applied_taxes") or []]
        row = Fee.objects.create(
            invoice=invoice, fee_key=key or f"lago:{self.service.pk}:{fee['lago_id']}", fee_type=fee_type,
            service=self.service, subscription=subscription, charge_id=charge_id, grouped_by=grouped_by,
            add_on_code=_str(item.get("code")) if fee_type == Fee.FeeType.ADD_ON else "",
            name=_str(item.get("invoice_display_name") or item.get("name") or item.get("code")),
            description=_str(fee.get("description")), currency=fee.get("amount_currency") or invoice.currency,
            units=_decimal(fee.get("units")), total_aggregated_units=_decimal(fee.get("total_aggregated_units") or fee.get("units")),
            events_count=int(fee.get("events_count") or 0), precise_unit_amount=_decimal(fee.get("precise_unit_amount")),
            precise_amount=_decimal(fee.get("precise_amount")), amount_cents=int(fee.get("amount_cents") or 0),
            taxes_amount_cents=int(fee.get("taxes_amount_cents") or 0), taxes_rate=_decimal(fee.get("taxes_rate")),
            applied_taxes=applied, amount_details=_plain(fee.get("amount_details") or {}),
            from_datetime=start, to_datetime=_until(fee.get("to_date")),
        )
        self._map("fee", fee.get("lago_id"), row.pk)
        return warnings

    def _period_placeholders(self, invoice: Invoice, period: InvoiceSubscription) -> None:
        """Mark as billed what Lago's invoice covers without a line: a period Lago invoiced is Lago's whole, even
        a charge it showed no fee for (nothing used) or a base fee it skipped. Zero fees under the close's keys, so
        the hub never bills those periods again, and nothing changes the invoice's totals."""
        subscription = period.subscription
        tz = invoice.customer.applicable_timezone
        anchor = local_date(subscription.subscription_at, tz)

        def start_of(moment: datetime) -> date:
            return period_containing(interval=subscription.plan.interval, billing_time=subscription.billing_time,
                                     anchor_date=anchor, at=max(local_date(moment, tz), anchor)).start

        wanted = {f"sub:{subscription.pk}:base:{start_of(period.from_datetime)}":
                  (Fee.FeeType.SUBSCRIPTION, None, period.from_datetime, period.to_datetime)}
        charges_start = start_of(period.charges_from_datetime)
        for charge in subscription.plan.charges.filter(invoiceable=True):
            wanted[f"sub:{subscription.pk}:charge:{charge.pk}:{charges_start}"] = (
                Fee.FeeType.CHARGE, charge, period.charges_from_datetime, period.charges_to_datetime)
        taken = set(Fee.objects.filter(fee_key__in=list(wanted)).values_list("fee_key", flat=True))
        Fee.objects.bulk_create(
            Fee(invoice=invoice, fee_key=key, fee_type=fee_type, service=self.service, subscription=subscription,
                charge=charge, name="No line on Lago's invoice", currency=invoice.currency,
                from_datetime=start, to_datetime=end)
            for key, (fee_type, charge, start, end) in wanted.items() if key not in taken)

    def _usage_billed_until(self, invoice: Invoice) -> None:
        """Usage before an imported period's end is invoiced (by Lago): later arrivals are late usage."""
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE subscriptions_subscription s SET usage_billed_until = v.until
                  FROM (SELECT subscription_id, max(charges_to_datetime) AS until FROM invoicing_invoicesubscription
                         WHERE invoice_id = %s GROUP BY subscription_id) v
                 WHERE s.id = v.subscription_id AND (s.usage_billed_until IS NULL OR s.usage_billed_until < v.until)
                """,
                [invoice.pk],
            )


def _key(resource: str, item: Any) -> str:
    if not isinstance(item, dict):
        return "?"
    for name in ("number", "external_id", "code", "lago_id"):
        if item.get(name):
            return str(item[name])
    return "?"


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(outcome, 0)} {outcome}" for outcome in OUTCOMES if counts.get(outcome))


def _phase_for_import(service: Service, *, api_url: str, api_key: str) -> ServicePhase:
    phase = ServicePhase.objects.select_for_update().filter(service=service).first()
    if phase is None:
        from apps.subscriptions.models import Subscription as Sub

        if Sub.objects.filter(service=service).exists():
            raise ImportRefused(
                f"{service.code} already has subscriptions on the hub and no migration phase: set its phase in the "
                "admin first (an import would otherwise stop it billing)")
        phase = ServicePhase.objects.create(service=service, phase=ServicePhase.Phase.LAGO, changed_at=timezone.now())
    if (phase.lago_api_url, phase.lago_api_key) != (api_url, api_key):
        phase.lago_api_url, phase.lago_api_key = api_url, api_key
        phase.save(update_fields=["lago_api_url", "lago_api_key", "updated_at"])
    return phase


def lago_import(*, service: Service, api_url: str, api_key: str, dry_run: bool = False, actor: str = "",
                per_page: int = 100, restart: bool = False, progress: Callable[[str], None] | None = None,
                on_page: Callable[[str, int], None] | None = None, timeout: float = 30.0) -> ImportRun:
    """Import `service`'s Lago organisation; return the run (counts, issues). Safe to rerun at any time.

    A run that crashed (status running or failed) is resumed after its last committed page unless `restart`.
    `dry_run` writes nothing but the run row: every change is rolled back, the counts say what would happen.
    Raises ImportRefused when another import of the service is running. Errors reaching Lago propagate after
    the run is marked failed (the next run resumes it).
    """
    client = LagoClient(api_url=api_url, api_key=api_key, timeout=timeout)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_IMPORT_LOCK, service.pk])
        if not cursor.fetchone()[0]:
            raise ImportRefused(f"another import of {service.code} is running")
    try:
        return _lago_import(service=service, client=client, api_url=api_url, api_key=api_key, dry_run=dry_run,
                            actor=actor, per_page=per_page, restart=restart, progress=progress, on_page=on_page)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_IMPORT_LOCK, service.pk])


def _lago_import(*, service, client, api_url, api_key, dry_run, actor, per_page, restart, progress, on_page) -> ImportRun:
    run = None
    if not dry_run and not restart:
        run = (ImportRun.objects.filter(service=service, dry_run=False, api_url=api_url,
                                        status__in=(ImportRun.Status.RUNNING, ImportRun.Status.FAILED))
               .order_by("-created_at").first())
        if run is not None:
            run.status, run.error, run.resumed_count = ImportRun.Status.RUNNING, "", run.resumed_count + 1
            run.save(update_fields=["status", "error", "resumed_count", "updated_at"])
            if progress:
                progress(f"resuming import run {run.pk} from its checkpoints")
    if run is None:
        run = ImportRun.objects.create(service=service, api_url=api_url, dry_run=dry_run, actor=actor)
    importer = Importer(service=service, client=client, run=run, per_page=per_page, progress=progress, on_page=on_page)
    try:
        if dry_run:
            try:
                with transaction.atomic():
                    _phase_for_import(service, api_url=api_url, api_key=api_key)
                    importer.run_all()
                    raise _DryRun
            except _DryRun:
                pass
            ImportIssue.objects.bulk_create(
                ImportIssue(run=run, resource=r, key=k[:255], outcome=o, reason=why) for r, k, o, why in importer.issues)
        else:
            with transaction.atomic():
                _phase_for_import(service, api_url=api_url, api_key=api_key)
            importer.run_all()
    except BaseException as exc:
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now(),
            counts=importer.counts, updated_at=timezone.now())
        raise
    run.status, run.finished_at, run.counts = ImportRun.Status.SUCCEEDED, timezone.now(), importer.counts
    run.save(update_fields=["status", "finished_at", "counts", "updated_at"])
    return run

"""Writes for the catalog: billable metrics, plans with their charges, taxes, add-ons.

Inputs arrive validated by the API layer (types, enums, Lago's per-model charge
properties); these functions enforce the rules that need the database.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import NotAllowed, NotFound, ValidationFailed
from apps.customers.models import AccountLink, Customer, Service

from .models import AddOn, AppliedCoupon, BillableMetric, Charge, ChargeFilter, Coupon, Plan, Tax

METRIC_FIELDS = (
    "code",
    "name",
    "description",
    "aggregation_type",
    "field_name",
    "recurring",
    "weighted_interval",
    "rounding_function",
    "rounding_precision",
    "filters",
)
# Lago: recurring makes no sense for these aggregations (units do not carry over).
NON_RECURRING_AGGREGATIONS = {"count_agg", "max_agg", "latest_agg"}


def _metric_rules(values: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if values.get("aggregation_type") != "count_agg" and not values.get("field_name"):
        errors["field_name"] = ["value_is_mandatory"]
    if values.get("recurring") and values.get("aggregation_type") in NON_RECURRING_AGGREGATIONS:
        errors["recurring"] = ["not_compatible_with_aggregation_type"]
    return errors


@transaction.atomic
def billable_metric_create(*, service: Service, values: dict) -> BillableMetric:
    errors = _metric_rules(values)
    if BillableMetric.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        errors["code"] = ["value_already_exist"]
    if errors:
        raise ValidationFailed("invalid billable metric", details=errors)
    try:
        with transaction.atomic():
            return BillableMetric.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid billable metric", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def billable_metric_update(*, metric: BillableMetric, values: dict) -> BillableMetric:
    metric = BillableMetric.objects.select_for_update().get(pk=metric.pk)
    merged = {field: getattr(metric, field) for field in METRIC_FIELDS} | values
    errors = _metric_rules(merged)
    new_code = values.get("code", metric.code)
    if (
        new_code != metric.code
        and BillableMetric.objects.filter(service=metric.service, code=new_code, deleted_at__isnull=True).exists()
    ):
        errors["code"] = ["value_already_exist"]
    if "aggregation_type" in values and values["aggregation_type"] != metric.aggregation_type:
        if metric.charges.filter(plan__deleted_at__isnull=True).exists():
            # Changing how units are counted would silently reprice live plans.
            errors["aggregation_type"] = ["value_is_invalid"]
    if errors:
        raise ValidationFailed("invalid billable metric", details=errors)
    for field, value in values.items():
        setattr(metric, field, value)
    metric.save()
    return metric


@transaction.atomic
def billable_metric_delete(*, metric: BillableMetric) -> BillableMetric:
    metric = BillableMetric.objects.select_for_update().get(pk=metric.pk)
    if metric.charges.filter(plan__deleted_at__isnull=True).exists():
        raise NotAllowed("billable metric is used by a plan", code="attached_to_an_active_plan")
    metric.deleted_at = timezone.now()
    metric.save(update_fields=["deleted_at", "updated_at"])
    return metric


PLAN_FIELDS = (
    "code",
    "name",
    "description",
    "invoice_display_name",
    "interval",
    "amount_cents",
    "amount_currency",
    "pay_in_advance",
    "trial_period",
)
CHARGE_FIELDS = (
    "code",
    "invoice_display_name",
    "charge_model",
    "properties",
    "pay_in_advance",
    "invoiceable",
    "prorated",
    "min_amount_cents",
    "filters",
)
NO_FILTERS = None  # a charge given without `filters` keeps the ones it has


def filter_values_errors(metric: BillableMetric, values: object) -> list[str]:
    """Lago's codes for a charge filter's `values` that the metric's filters do not offer ([] when valid)."""
    if not isinstance(values, dict) or not values:
        return ["value_is_mandatory"]
    offered = {item["key"]: set(item["values"]) for item in metric.filters or []}
    for key, chosen in values.items():
        if not chosen:
            return ["value_is_mandatory"]
        if key not in offered or not (chosen == [ChargeFilter.ALL_VALUES] or set(chosen) <= offered[key]):
            return ["value_is_invalid"]
    return []


def charge_filters_write(*, charge: Charge, filters: list[dict]) -> list[ChargeFilter]:
    """Replace a charge's filters (Lago's batch update): a filter with the same values keeps its identity and takes
    the new properties and name; the others are soft-deleted, kept for the fees that billed them. Values already
    checked (`filter_values_errors`). Call inside a transaction."""
    live = {_values_key(item.values): item for item in charge.charge_filters.filter(deleted_at__isnull=True)}
    kept: list[ChargeFilter] = []
    for data in filters:
        found = live.pop(_values_key(data["values"]), None)
        if found is None:
            found = ChargeFilter(charge=charge, values=data["values"])
        found.properties = data.get("properties") or {}
        found.invoice_display_name = data.get("invoice_display_name") or ""
        found.save()
        kept.append(found)
    for stale in live.values():
        stale.deleted_at = timezone.now()
        stale.save(update_fields=["deleted_at", "updated_at"])
    return kept


def _values_key(values: dict) -> tuple:
    return tuple(sorted((key, tuple(sorted(chosen))) for key, chosen in values.items()))


def _resolve_charges(*, service: Service, charges: list[dict]) -> list[tuple[BillableMetric, dict]]:
    """Map each charge's billable_metric_id (a lago_id) to this service's metric."""
    resolved: list[tuple[BillableMetric, dict]] = []
    errors: dict[str, list[str]] = {}
    seen_codes: set[str] = set()
    metric_ids = {charge["billable_metric_id"] for charge in charges}
    metrics = {
        str(metric.lago_id): metric
        for metric in BillableMetric.objects.filter(
            service=service, lago_id__in=metric_ids, deleted_at__isnull=True
        )
    }
    for index, charge in enumerate(charges):
        metric = metrics.get(str(charge["billable_metric_id"]))
        if metric is None:
            raise NotFound("billable_metric")
        values = {field: charge[field] for field in CHARGE_FIELDS if field in charge}
        values.setdefault("filters", NO_FILTERS)
        for position, item in enumerate(values["filters"] or []):
            for code in filter_values_errors(metric, item.get("values")):
                errors.setdefault(f"charges.{index}.filters.{position}.values", []).append(code)
        values.setdefault("code", f"{metric.code}" if metric.code not in seen_codes else f"{metric.code}_{index}")
        if values["code"] in seen_codes:
            errors.setdefault(f"charges.{index}.code", []).append("value_already_exist")
        seen_codes.add(values["code"])
        if values.get("pay_in_advance") and metric.aggregation_type not in ("count_agg", "sum_agg", "unique_count_agg"):
            errors.setdefault(f"charges.{index}.pay_in_advance", []).append("invalid_aggregation_type_or_charge_model")
        if values.get("charge_model") == Charge.ChargeModel.DYNAMIC and metric.aggregation_type != "sum_agg":
            # Lago: only a sum's events carry the prices a dynamic charge adds up.
            errors.setdefault(f"charges.{index}.charge_model", []).append("invalid_aggregation_type_or_charge_model")
        if values.get("charge_model") == Charge.ChargeModel.GRADUATED_PERCENTAGE and metric.aggregation_type == "latest_agg":
            errors.setdefault(f"charges.{index}.billable_metric", []).append("invalid_value")
        if not values.get("invoiceable", True) and not values.get("pay_in_advance"):
            errors.setdefault(f"charges.{index}.invoiceable", []).append("value_is_invalid")
        resolved.append((metric, values))
    if errors:
        raise ValidationFailed("invalid charges", details=errors)
    return resolved


@transaction.atomic
def plan_create(*, service: Service, values: dict, charges: list[dict]) -> Plan:
    if Plan.objects.filter(service=service, code=values["code"], deleted_at__isnull=True, parent__isnull=True).exists():
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]})
    resolved = _resolve_charges(service=service, charges=charges)
    try:
        with transaction.atomic():
            plan = Plan.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]}) from None
    for metric, data in resolved:
        filters = data.pop("filters")
        charge = Charge.objects.create(plan=plan, billable_metric=metric, **data)
        charge_filters_write(charge=charge, filters=filters or [])
    return plan


@transaction.atomic
def plan_update(*, plan: Plan, values: dict, charges: list[dict] | None) -> Plan:
    """Update a plan; when `charges` is given it replaces the plan's charges (Lago's PUT semantics).

    Charges are matched by code so that a charge keeps its identity (and its fees' history)
    across updates; charges absent from the list are removed only if nothing billed them.
    """
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    new_code = values.get("code", plan.code)
    if new_code != plan.code and Plan.objects.filter(
        service=plan.service, code=new_code, deleted_at__isnull=True, parent__isnull=True
    ).exists():
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]})
    if plan.subscriptions.exists() and (
        ("amount_currency" in values and values["amount_currency"] != plan.amount_currency)
        or ("interval" in values and values["interval"] != plan.interval)
    ):
        # Lago forbids these once subscribed: periods and currency of live subscriptions would change.
        field = "interval" if "interval" in values and values["interval"] != plan.interval else "amount_currency"
        raise ValidationFailed("plan in use", details={field: ["plan_has_subscriptions"]})
    for field, value in values.items():
        setattr(plan, field, value)
    plan.save()
    if charges is not None:
        resolved = _resolve_charges(service=plan.service, charges=charges)
        existing = {charge.code: charge for charge in plan.charges.all()}
        keep: set[int] = set()
        for metric, data in resolved:
            filters = data.pop("filters")
            charge = existing.get(data["code"])
            if charge is None:
                charge = Charge.objects.create(plan=plan, billable_metric=metric, **data)
            else:
                charge.billable_metric = metric
                for field, value in data.items():
                    setattr(charge, field, value)
                charge.save()
            if filters is not NO_FILTERS:
                charge_filters_write(charge=charge, filters=filters)
            keep.add(charge.pk)
        removed = plan.charges.exclude(pk__in=keep)
        if removed.filter(fees__isnull=False).exists():
            # Fees point at the charges they billed (the audit and the ledger read them): a billed charge stays, as
            # DELETE /plans/{code}/charges/{code} answers; the whole update is refused, nothing written.
            raise NotAllowed("charge billed by fees", code="charge_already_billed")
        removed.delete()
    return plan


@transaction.atomic
def plan_delete(*, plan: Plan) -> Plan:
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if plan.subscriptions.filter(status__in=("active", "pending")).exists():
        raise NotAllowed("plan has live subscriptions", code="plan_has_subscriptions")
    plan.deleted_at = timezone.now()
    plan.save(update_fields=["deleted_at", "updated_at"])
    return plan


TAX_FIELDS = ("code", "name", "description", "rate", "country", "provinces")


@transaction.atomic
def tax_create(*, service: Service, values: dict) -> Tax:
    if Tax.objects.filter(code=values["code"]).exists():
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]})
    try:
        with transaction.atomic():
            return Tax.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def tax_update(*, tax: Tax, values: dict) -> Tax:
    tax = Tax.objects.select_for_update().get(pk=tax.pk)
    if "code" in values and values["code"] != tax.code and Tax.objects.filter(code=values["code"]).exists():
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]})
    for field, value in values.items():
        setattr(tax, field, value)
    tax.save()
    return tax


@transaction.atomic
def tax_delete(*, tax: Tax) -> Tax:
    tax = Tax.objects.select_for_update().get(pk=tax.pk)
    tax.delete()
    return tax


ADD_ON_FIELDS = ("code", "name", "invoice_display_name", "description", "amount_cents", "amount_currency")


@transaction.atomic
def add_on_create(*, service: Service, values: dict) -> AddOn:
    if AddOn.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]})
    try:
        with transaction.atomic():
            return AddOn.objects.create(service=service, **values)
    except IntegrityError:  # a concurrent create took the code between the check and the insert
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def add_on_update(*, add_on: AddOn, values: dict) -> AddOn:
    """Change an add-on. Invoices already issued keep their fees: a fee copies the price and name it billed."""
    add_on = AddOn.objects.select_for_update().get(pk=add_on.pk)
    new_code = values.get("code", add_on.code)
    if new_code != add_on.code and AddOn.objects.filter(
        service=add_on.service, code=new_code, deleted_at__isnull=True
    ).exists():
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]})
    for field, value in values.items():
        setattr(add_on, field, value)
    try:
        with transaction.atomic():
            add_on.save()
    except IntegrityError:
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]}) from None
    return add_on


@transaction.atomic
def add_on_delete(*, add_on: AddOn) -> AddOn:
    """Soft-delete (Lago discards add-ons): the code is free again, issued fees keep theirs."""
    add_on = AddOn.objects.select_for_update().get(pk=add_on.pk)
    if add_on.deleted_at is None:
        add_on.deleted_at = timezone.now()
        add_on.save(update_fields=["deleted_at", "updated_at"])
    return add_on


# --------------------------------------------------------------------------- coupons

COUPON_VALUE_FIELDS = ("code", "coupon_type", "amount_cents", "amount_currency", "percentage_rate", "frequency",
                       "frequency_duration", "reusable")


def _coupon_rules(values: dict, *, now) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if values.get("coupon_type") == Coupon.CouponType.FIXED_AMOUNT:
        for field in ("amount_cents", "amount_currency"):
            if not values.get(field):
                errors[field] = ["value_is_mandatory"]
    elif values.get("coupon_type") == Coupon.CouponType.PERCENTAGE:
        if values.get("percentage_rate") is None:
            errors["percentage_rate"] = ["value_is_mandatory"]
    if values.get("frequency") == Coupon.Frequency.RECURRING and not values.get("frequency_duration"):
        errors["frequency_duration"] = ["value_is_mandatory"]
    if values.get("expiration") == Coupon.Expiration.TIME_LIMIT:
        if values.get("expiration_at") is None:
            errors["expiration_at"] = ["value_is_mandatory"]
        elif values["expiration_at"] <= now:
            errors["expiration_at"] = ["invalid_date"]
    return errors


def _coupon_normalize(values: dict) -> dict:
    """Keep only the value fields of the coupon's type and frequency (Lago ignores the others)."""
    values = dict(values)
    if values.get("coupon_type") == Coupon.CouponType.PERCENTAGE:
        values["amount_cents"], values["amount_currency"] = None, ""
    elif values.get("coupon_type") == Coupon.CouponType.FIXED_AMOUNT:
        values["percentage_rate"] = None
    if values.get("frequency") != Coupon.Frequency.RECURRING:
        values["frequency_duration"] = None
    if values.get("expiration") == Coupon.Expiration.NO_EXPIRATION:
        values["expiration_at"] = None
    return values


def _coupon_limits(service: Service, plan_codes: list[str] | None, metric_codes: list[str] | None):
    """Resolve `applies_to` codes to the service's live plans / metrics; 404 for an unknown code (Lago)."""
    if plan_codes and metric_codes:
        raise NotAllowed("a coupon is limited to plans or to metrics", code="only_one_limitation_type_per_coupon_allowed")
    plans = list(Plan.objects.filter(service=service, code__in=plan_codes or [], deleted_at__isnull=True))
    if len(plans) != len(set(plan_codes or [])):
        raise NotFound("plan")
    metrics = list(BillableMetric.objects.filter(service=service, code__in=metric_codes or [], deleted_at__isnull=True))
    if len(metrics) != len(set(metric_codes or [])):
        raise NotFound("billable_metric")
    return plans, metrics


@transaction.atomic
def coupon_create(*, service: Service, values: dict, plan_codes: list[str] | None = None,
                  metric_codes: list[str] | None = None) -> Coupon:
    values = _coupon_normalize(values)
    errors = _coupon_rules(values, now=timezone.now())
    if Coupon.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        errors["code"] = ["value_already_exist"]
    if errors:
        raise ValidationFailed("invalid coupon", details=errors)
    plans, metrics = _coupon_limits(service, plan_codes, metric_codes)
    try:
        with transaction.atomic():
            coupon = Coupon.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid coupon", details={"code": ["value_already_exist"]}) from None
    coupon.plans.set(plans)
    coupon.billable_metrics.set(metrics)
    return coupon


@transaction.atomic
def coupon_update(*, coupon: Coupon, values: dict, plan_codes: list[str] | None = None,
                  metric_codes: list[str] | None = None) -> Coupon:
    """Change a coupon. Once applied to a customer, its code, value, frequency and limits stay as they are
    (Lago ignores them), so what customers were promised does not change under them."""
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    applied = coupon.applied_coupons.exists()
    if applied:
        values = {field: value for field, value in values.items() if field not in COUPON_VALUE_FIELDS}
        plan_codes = metric_codes = None
    merged = _coupon_normalize({field.attname: getattr(coupon, field.attname) for field in Coupon._meta.concrete_fields}
                               | values)
    errors = _coupon_rules(merged, now=timezone.now()) if values else {}
    new_code = merged["code"]
    if new_code != coupon.code and Coupon.objects.filter(
        service=coupon.service, code=new_code, deleted_at__isnull=True
    ).exists():
        errors["code"] = ["value_already_exist"]
    if errors:
        raise ValidationFailed("invalid coupon", details=errors)
    for field in (*COUPON_VALUE_FIELDS, "name", "description", "expiration", "expiration_at"):
        setattr(coupon, field, merged[field])
    coupon.save()
    if plan_codes is not None or metric_codes is not None:
        plans, metrics = _coupon_limits(coupon.service, plan_codes, metric_codes)
        coupon.plans.set(plans)
        coupon.billable_metrics.set(metrics)
    return coupon


@transaction.atomic
def coupon_delete(*, coupon: Coupon) -> Coupon:
    """Soft-delete a coupon and terminate its applications still active (Lago's Coupons::DestroyService)."""
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    now = timezone.now()
    if coupon.deleted_at is None:
        coupon.deleted_at = now
        if coupon.status == Coupon.Status.ACTIVE:
            coupon.status, coupon.terminated_at = Coupon.Status.TERMINATED, now
        coupon.save(update_fields=["deleted_at", "status", "terminated_at", "updated_at"])
        for applied in coupon.applied_coupons.select_for_update().filter(status=AppliedCoupon.Status.ACTIVE).order_by("pk"):
            applied.status, applied.terminated_at = AppliedCoupon.Status.TERMINATED, now
            applied.save(update_fields=["status", "terminated_at", "updated_at"])
    return coupon


@transaction.atomic
def applied_coupon_create(*, service: Service, link: AccountLink, coupon_code: str, overrides: dict) -> AppliedCoupon:
    """Apply one of the service's coupons to a customer (Lago's POST /applied_coupons), with optional overrides of
    its amount, currency, rate, frequency and duration. Refused: an unknown, deleted, terminated or expired coupon
    (404 `coupon_not_found`), a non-reusable coupon applied to this customer before, a fixed amount in another
    currency than the customer's (422)."""
    now = timezone.now()
    coupon = (
        Coupon.objects.select_for_update()
        .filter(service=service, code=coupon_code, deleted_at__isnull=True, status=Coupon.Status.ACTIVE)
        .first()
    )
    if coupon is None or (coupon.expiration_at is not None and coupon.expiration_at <= now):
        raise NotFound("coupon")
    # Locks the customer row: two applications of a non-reusable coupon at once take turns.
    customer = Customer.objects.select_for_update().get(pk=link.customer_id)
    if not coupon.reusable and AppliedCoupon.objects.filter(coupon=coupon, customer=customer).exists():
        raise ValidationFailed("coupon already applied", details={"coupon": ["coupon_is_not_reusable"]})
    given = {field: value for field, value in overrides.items() if value is not None}
    fixed = coupon.coupon_type == Coupon.CouponType.FIXED_AMOUNT
    frequency = given.get("frequency", coupon.frequency)
    values = {
        "amount_cents": given.get("amount_cents", coupon.amount_cents) if fixed else None,
        "amount_currency": given.get("amount_currency", coupon.amount_currency) if fixed else "",
        "percentage_rate": None if fixed else given.get("percentage_rate", coupon.percentage_rate),
        "frequency": frequency,
        "frequency_duration": (given.get("frequency_duration", coupon.frequency_duration)
                               if frequency == Coupon.Frequency.RECURRING else None),
    }
    errors: dict[str, list[str]] = {}
    if values["frequency"] == Coupon.Frequency.RECURRING and not values["frequency_duration"]:
        errors["frequency_duration"] = ["value_is_mandatory"]
    if fixed and customer.currency and values["amount_currency"] != customer.currency:
        errors["currency"] = ["currencies_does_not_match"]
    if errors:
        raise ValidationFailed("invalid applied coupon", details=errors)
    return AppliedCoupon.objects.create(
        coupon=coupon, account_link=link, customer=customer, **values,
        amount_cents_remaining=values["amount_cents"] if fixed and frequency == Coupon.Frequency.ONCE else None,
        frequency_duration_remaining=values["frequency_duration"],
    )


@transaction.atomic
def applied_coupon_terminate(*, applied: AppliedCoupon) -> AppliedCoupon:
    """Remove a coupon from a customer: no later invoice takes it (Lago's DELETE). Idempotent."""
    applied = AppliedCoupon.objects.select_for_update().select_related("coupon", "account_link").get(pk=applied.pk)
    if applied.status == AppliedCoupon.Status.ACTIVE:
        applied.status, applied.terminated_at = AppliedCoupon.Status.TERMINATED, timezone.now()
        applied.save(update_fields=["status", "terminated_at", "updated_at"])
    return applied


METADATA_MAX_KEYS, METADATA_MAX_KEY_LENGTH, METADATA_MAX_VALUE_LENGTH = 50, 100, 255  # Lago's ItemMetadata


def _metadata_check(value: dict) -> None:
    valid = len(value) <= METADATA_MAX_KEYS and all(
        isinstance(key, str) and 0 < len(key) <= METADATA_MAX_KEY_LENGTH
        and (item is None or (isinstance(item, str) and len(item) <= METADATA_MAX_VALUE_LENGTH))
        for key, item in value.items())
    if not valid:
        raise ValidationFailed("bad metadata", details={"metadata": ["value_is_invalid"]})


@transaction.atomic
def plan_metadata_update(*, plan_id: int, value: dict | None, partial: bool) -> Plan:
    """Set, merge (`partial`) or remove (`value` None, not partial) the plan's metadata, as Lago's
    Metadata::UpdateItemService: a merge into none sets it, and merging None changes nothing. Audited (PlanEvent)."""
    plan = Plan.objects.select_for_update().get(pk=plan_id)
    if value is None:
        new = plan.metadata if partial else None
    elif partial and plan.metadata is not None:
        new = {**plan.metadata, **value}
    elif partial and not value:
        new = plan.metadata  # Lago: merging nothing into no metadata creates none
    else:
        new = dict(value)
    if new is not None:
        _metadata_check(new)
    if new != plan.metadata:
        plan.metadata = new
        plan.save(update_fields=["metadata", "updated_at"])
    return plan


@transaction.atomic
def plan_metadata_key_delete(*, plan_id: int, key: str) -> Plan:
    """Remove one key of the plan's metadata (absent: nothing to do); 404 `metadata_not_found` when it has none."""
    plan = Plan.objects.select_for_update().get(pk=plan_id)
    if plan.metadata is None:
        raise NotFound("metadata")
    if key in plan.metadata:
        plan.metadata = {name: item for name, item in plan.metadata.items() if name != key}
        plan.save(update_fields=["metadata", "updated_at"])
    return plan


# --------------------------------------------------------------------------- one charge, one filter (nested routes)


def charge_input(charge: Charge) -> dict:
    """A charge as plan_update's input takes it (its filters left as they are)."""
    return {"billable_metric_id": str(charge.billable_metric.lago_id), "code": charge.code,
            "invoice_display_name": charge.invoice_display_name, "charge_model": charge.charge_model,
            "properties": charge.properties, "pay_in_advance": charge.pay_in_advance,
            "invoiceable": charge.invoiceable, "prorated": charge.prorated,
            "min_amount_cents": charge.min_amount_cents}


def _one_charge_errors(error: ValidationFailed, index: int) -> ValidationFailed:
    """plan_update's `charges.{index}.field` keys as the field alone, as Lago's charge services answer."""
    prefix = f"charges.{index}."
    details = {key.removeprefix(prefix): codes for key, codes in error.details.items()}
    return ValidationFailed(str(error), details=details)


@transaction.atomic
def plan_charge_write(*, plan: Plan, data: dict, code: str | None = None) -> Charge:
    """Create one charge on the plan (`code` None) or replace the named one's values, through plan_update so the
    charge passes the checks POST /plans gives charges. `data` is a ChargeIn's values; without `filters` the
    charge keeps its own."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    charges = list(plan.charges.select_related("billable_metric").order_by("id"))
    inputs = [charge_input(charge) for charge in charges]
    if code is None:
        if "code" in data and any(charge.code == data["code"] for charge in charges):
            raise ValidationFailed("invalid charge", details={"code": ["value_already_exist"]})
        inputs.append(dict(data))
        index = len(inputs) - 1
    else:
        index = next((position for position, charge in enumerate(charges) if charge.code == code), None)
        if index is None:
            raise NotFound("charge")
        inputs[index] = inputs[index] | data | {"code": code}
    try:
        plan_update(plan=plan, values={}, charges=inputs)
    except ValidationFailed as error:
        raise _one_charge_errors(error, index) from None
    written = plan.charges.order_by("id")[index] if code is None else plan.charges.get(code=code)
    return written


@transaction.atomic
def plan_charge_delete(*, plan: Plan, code: str) -> Charge:
    """Remove one charge from the plan, as plan_update removes a charge left out of the list. A charge that fees
    billed stays (they point to it): 405 `charge_already_billed`, where Lago discards it and keeps it for them."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    charge = plan.charges.select_related("billable_metric").filter(code=code).first()
    if charge is None:
        raise NotFound("charge")
    if charge.fees.exists():
        raise NotAllowed("charge billed by fees", code="charge_already_billed")
    plan_update(plan=plan, values={},
                charges=[charge_input(item) for item in plan.charges.select_related("billable_metric").order_by("id")
                         if item.pk != charge.pk])
    return charge


@transaction.atomic
def charge_filter_write(*, charge: Charge, data: dict, charge_filter: ChargeFilter | None = None) -> ChargeFilter:
    """Add a filter to the charge (`charge_filter` None): its values must be the metric's (422
    `values: value_is_invalid`) and no other live filter's (422 `values: value_already_exist`, where Lago would keep
    two filters for the same events); or change one's properties and name, its values staying as they are (Lago's
    ChargeFilters::UpdateService ignores `values`), so it keeps its identity and its fees."""
    charge = Charge.objects.select_for_update().select_related("billable_metric").get(pk=charge.pk)
    live = list(charge.charge_filters.filter(deleted_at__isnull=True).order_by("id"))
    values = charge_filter.values if charge_filter is not None else data.get("values")
    errors = filter_values_errors(charge.billable_metric, values)
    if errors:
        raise ValidationFailed("invalid filter", details={"values": errors})
    if any(_values_key(item.values) == _values_key(values) for item in live
           if charge_filter is None or item.pk != charge_filter.pk):
        raise ValidationFailed("invalid filter", details={"values": ["value_already_exist"]})
    items = [{"values": item.values, "properties": item.properties, "invoice_display_name": item.invoice_display_name}
             for item in live]
    new = {"values": values,
           "properties": data.get("properties", charge_filter.properties if charge_filter else {}),
           "invoice_display_name": data.get("invoice_display_name",
                                             charge_filter.invoice_display_name if charge_filter else "")}
    if charge_filter is None:
        items.append(new)
        index = len(items) - 1
    else:
        index = next(position for position, item in enumerate(live) if item.pk == charge_filter.pk)
        items[index] = new
    return charge_filters_write(charge=charge, filters=items)[index]


@transaction.atomic
def charge_filter_delete(*, charge_filter: ChargeFilter) -> ChargeFilter:
    """Soft-delete one filter (kept for the fees that billed it), as charge_filters_write removes one."""
    charge_filter = ChargeFilter.objects.select_for_update().get(pk=charge_filter.pk)
    if charge_filter.deleted_at is None:
        charge_filter.deleted_at = timezone.now()
        charge_filter.save(update_fields=["deleted_at", "updated_at"])
    return charge_filter

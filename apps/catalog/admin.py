"""The catalog in the admin: plans and their charges change through the catalog's services, with the API's checks.

A charge's properties are edited in the fields of its charge model (tiers as rows), checked by the same function
the API's serializer calls (`apps.invoicing.rating.validate_properties`), and shown with a price for sample
quantities; never as raw JSON.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_kit import NexaModelAdmin, ReadOnlyTabularInline, ServiceForm, ServiceFormAdmin
from apps.core.money import SUPPORTED_CURRENCIES, from_minor_units, money_display, to_minor_units
from apps.invoicing.rating import price_charge, validate_properties

from .models import BillableMetric, Charge, Plan, Tax
from .services import PLAN_FIELDS, plan_create, plan_update


@admin.register(BillableMetric)
class BillableMetricAdmin(NexaModelAdmin):
    list_display = ("code", "name", "service", "aggregation_type", "field_name", "recurring", "deleted_at")
    list_filter = ("service", "aggregation_type", "recurring")
    search_fields = ("code", "name")
    list_select_related = ("service",)
    readonly_fields = ("lago_id", "created_at", "updated_at")


def _properties_text(charge: Charge) -> str:
    props = charge.properties or {}
    ranges = props.get("graduated_ranges") or props.get("volume_ranges")
    if ranges:
        return "; ".join(f"{r.get('from_value')}–{r.get('to_value') or '∞'}: {r.get('per_unit_amount')}/unit"
                         + (f" + {r.get('flat_amount')}" if r.get("flat_amount") not in (None, "0", 0) else "")
                         for r in ranges)
    return ", ".join(f"{key} {value}" for key, value in props.items())


class ChargeInline(ReadOnlyTabularInline):
    """A plan's charges, each edited on its own page (per charge model, with a price preview)."""

    model = Charge
    fields = ("code", "billable_metric", "charge_model", "pricing", "pay_in_advance", "min_amount_cents")
    readonly_fields = fields
    show_change_link = True
    money_currency = "plan.amount_currency"

    @admin.display(description="pricing")
    def pricing(self, obj: Charge) -> str:
        return _properties_text(obj)


class PlanForm(ServiceForm):
    """The API's plan create/update (charges are edited on their own pages). The base fee in currency units."""

    amount = forms.DecimalField(min_value=Decimal(0), decimal_places=6, max_digits=24, initial=Decimal(0),
                                label="Base fee", help_text="Per interval, in currency units (e.g. 49.00).")
    amount_currency = forms.ChoiceField(choices=[(code, code) for code in SUPPORTED_CURRENCIES], initial="CAD")

    class Meta:
        model = Plan
        fields = ("service", "code", "name", "description", "invoice_display_name", "interval", "amount_currency",
                  "pay_in_advance", "trial_period")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields.pop("service", None)
            self.initial["amount"] = from_minor_units(self.instance.amount_cents, self.instance.amount_currency)

    def values(self) -> dict:
        data = self.cleaned_data
        values = {field: data[field] for field in PLAN_FIELDS if field in data and field != "amount_cents"}
        values["amount_cents"] = to_minor_units(data["amount"], data["amount_currency"])
        return values

    def write(self) -> Plan:
        if self.original.pk is None:
            return plan_create(service=self.cleaned_data["service"], values=self.values(), charges=[])
        stored = Plan.objects.get(pk=self.original.pk)
        changed = {key: value for key, value in self.values().items() if getattr(stored, key) != value}
        return plan_update(plan=stored, values=changed, charges=None)


@admin.register(Plan)
class PlanAdmin(ServiceFormAdmin):
    form = PlanForm
    list_display = ("code", "name", "service", "interval", "amount_cents", "pay_in_advance", "deleted_at")
    list_filter = ("service", "interval", "amount_currency", "pay_in_advance")
    search_fields = ("code", "name")
    list_select_related = ("service",)
    readonly_fields = ("lago_id", "created_at", "updated_at", "add_charge", "audit_trail")
    inlines = (ChargeInline,)

    def get_fields(self, request, obj=None):
        fields = ["code", "name", "description", "invoice_display_name", "interval", "amount", "amount_currency",
                  "pay_in_advance", "trial_period"]
        if obj is None:
            return ["service", *fields]
        if not self.has_change_permission(request, obj):
            return ["service", "code", "name", "interval", "amount_cents_display", "pay_in_advance", "trial_period",
                    *self.readonly_fields]
        return [*fields, *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["service", "code", "name", "interval", "amount_cents_display", "pay_in_advance", "trial_period",
                    *self.readonly_fields]
        return self.readonly_fields if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # the API's plan delete refuses plans with live subscriptions; billed history stays

    @admin.display(description="charges")
    def add_charge(self, obj: Plan) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}?plan={}">Add a charge to this plan</a>', reverse("admin:catalog_charge_add"),
                           obj.pk)


# Tier rows offered on a graduated or volume charge's page (rows left empty are dropped).
TIER_ROWS = 6
PERCENTAGE_FIELDS = ("rate", "fixed_amount", "free_units_per_events", "free_units_per_total_aggregation",
                     "per_transaction_min_amount", "per_transaction_max_amount")
TIER_FIELDS = ("from_value", "to_value", "per_unit_amount", "flat_amount")
SAMPLE_UNITS = (1, 10, 100, 1_000, 10_000)


def _tier_name(row: int, part: str) -> str:
    return f"tier_{row}_{part}"


class ChargeForm(ServiceForm):
    """One charge, its properties in the fields of its charge model; saved with the API's plan update."""

    standard_amount = forms.CharField(required=False, label="Price per unit",
                                      help_text="Currency units per unit, e.g. 0.25")
    package_amount = forms.CharField(required=False, label="Price per package")
    package_size = forms.CharField(required=False, label="Units per package")
    free_units = forms.CharField(required=False, label="Free units")
    rate = forms.CharField(required=False, label="Rate (%)")
    fixed_amount = forms.CharField(required=False, label="Fixed fee per event")
    free_units_per_events = forms.CharField(required=False, label="Free events")
    free_units_per_total_aggregation = forms.CharField(required=False, label="Free amount")
    per_transaction_min_amount = forms.CharField(required=False, label="Minimum per event")
    per_transaction_max_amount = forms.CharField(required=False, label="Maximum per event")

    class Meta:
        model = Charge
        fields = ("plan", "billable_metric", "code", "invoice_display_name", "charge_model", "pay_in_advance",
                  "invoiceable", "prorated")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].required = False
        if "plan" in self.fields:
            self.fields["plan"].queryset = Plan.objects.filter(deleted_at__isnull=True).select_related("service")
        self.fields["billable_metric"].queryset = BillableMetric.objects.filter(deleted_at__isnull=True)
        # The models this page has fields for; graduated_percentage and dynamic charges are set through the API.
        editable = ("standard", "graduated", "volume", "package", "percentage")
        self.fields["charge_model"].choices = [
            choice for choice in self.fields["charge_model"].choices if choice[0] in editable or not choice[0]]
        if self.instance.pk:
            self.fields.pop("plan", None)
            # The code is the charge's identity in the plan update (a new code would be a new charge).
            self.fields["code"].disabled = True
            self._initial_properties(self.instance)

    def _initial_properties(self, charge: Charge) -> None:
        props, initial = charge.properties or {}, self.initial
        if charge.charge_model == Charge.ChargeModel.STANDARD:
            initial["standard_amount"] = props.get("amount")
        elif charge.charge_model == Charge.ChargeModel.PACKAGE:
            initial.update(package_amount=props.get("amount"), package_size=props.get("package_size"),
                           free_units=props.get("free_units"))
        elif charge.charge_model == Charge.ChargeModel.PERCENTAGE:
            initial.update({field: props.get(field) for field in PERCENTAGE_FIELDS})
        else:
            for row, tier in enumerate((props.get("graduated_ranges") or props.get("volume_ranges") or [])[:TIER_ROWS]):
                initial.update({_tier_name(row, part): tier.get(part) for part in TIER_FIELDS})
        if charge.min_amount_cents:
            initial["min_amount"] = from_minor_units(charge.min_amount_cents, charge.plan.amount_currency)

    # Counts go to the validator as JSON numbers, money and rates as the decimal strings the API receives.
    COUNTS = {"package_size", "free_units", "free_units_per_events", "from_value", "to_value"}

    @classmethod
    def _value(cls, name: str, raw: str | None) -> object:
        raw = (raw or "").strip()
        if raw == "":
            return None
        return int(raw) if name in cls.COUNTS and raw.isdigit() else raw

    def properties(self) -> dict:
        data, model = self.cleaned_data, self.cleaned_data.get("charge_model")
        value = self._value
        if model == Charge.ChargeModel.STANDARD:
            props = {"amount": value("amount", data.get("standard_amount"))}
        elif model == Charge.ChargeModel.PACKAGE:
            props = {"amount": value("amount", data.get("package_amount")),
                     "package_size": value("package_size", data.get("package_size")),
                     "free_units": value("free_units", data.get("free_units"))}
        elif model == Charge.ChargeModel.PERCENTAGE:
            props = {field: value(field, data.get(field)) for field in PERCENTAGE_FIELDS}
        else:
            tiers = []
            for row in range(TIER_ROWS):
                tier = {part: value(part, data.get(_tier_name(row, part))) for part in TIER_FIELDS}
                if any(tier[part] is not None for part in TIER_FIELDS):
                    # Lago's shape: the last tier's to_value is null; a missing flat fee is "0".
                    tier["flat_amount"] = tier["flat_amount"] if tier["flat_amount"] is not None else "0"
                    tiers.append(tier)
            return {f"{model}_ranges": tiers}
        return {key: item for key, item in props.items() if item is not None}

    # The validator's field names, as this form's.
    ERROR_FIELDS = {"standard": {"amount": "standard_amount"}, "package": {"amount": "package_amount"}}

    def clean(self):
        data = super().clean()
        model = data.get("charge_model")
        if not model:
            return data
        plan = data.get("plan") or getattr(self.instance, "plan", None)
        metric = data.get("billable_metric")
        if plan is not None and metric is not None and metric.service_id != plan.service_id:
            self.add_error("billable_metric", "This metric belongs to another service than the plan's.")
        for field, codes in validate_properties(model, self.properties()).items():
            name = self.ERROR_FIELDS.get(model, {}).get(field, field)
            self.add_error(name if name in self.fields else None,
                           ", ".join(codes) if name in self.fields else f"{field}: {', '.join(codes)}")
        return data

    def lago_charge(self) -> dict:
        data = self.cleaned_data
        plan = data.get("plan") or self.original.plan
        charge = {"billable_metric_id": str(data["billable_metric"].lago_id), "charge_model": data["charge_model"],
                  "properties": self.properties(), "invoice_display_name": data.get("invoice_display_name") or "",
                  "pay_in_advance": data["pay_in_advance"], "invoiceable": data["invoiceable"],
                  "prorated": data["prorated"],
                  "min_amount_cents": to_minor_units(data["min_amount"], plan.amount_currency)
                  if data.get("min_amount") is not None else 0}
        if data.get("code"):
            charge["code"] = data["code"]
        elif self.original.pk:
            charge["code"] = self.original.code
        return charge

    def write(self) -> Charge:
        plan = self.cleaned_data.get("plan") or Plan.objects.get(pk=self.original.plan_id)
        current = [_as_lago(charge) for charge in plan.charges.select_related("billable_metric").order_by("pk")
                   if charge.pk != self.original.pk]
        mine = self.lago_charge()
        if self.original.pk is None and "code" not in mine:
            # Without a code the service names it after the metric; keep codes unique within the plan.
            taken = {charge["code"] for charge in current}
            base = self.cleaned_data["billable_metric"].code
            mine["code"] = base if base not in taken else next(
                f"{base}_{n}" for n in range(2, 1000) if f"{base}_{n}" not in taken)
        plan_update(plan=plan, values={}, charges=[*current, mine])
        return plan.charges.get(code=mine["code"])


# Tier rows and the minimum are declared on the class (the admin checks its fieldsets against declared fields).
for _row in range(TIER_ROWS):
    for _part in TIER_FIELDS:
        ChargeForm.base_fields[_tier_name(_row, _part)] = ChargeForm.declared_fields[_tier_name(_row, _part)] = (
            forms.CharField(required=False, label=f"Tier {_row + 1} {_part.replace('_', ' ')}"))
ChargeForm.base_fields["min_amount"] = ChargeForm.declared_fields["min_amount"] = forms.DecimalField(
    required=False, min_value=Decimal(0), max_digits=24, decimal_places=6, label="Minimum per period",
    help_text="Currency units; empty for none.")


def _as_lago(charge: Charge) -> dict:
    """A stored charge as the API's plan update receives it (unchanged by the update)."""
    return {"billable_metric_id": str(charge.billable_metric.lago_id), "code": charge.code,
            "charge_model": charge.charge_model, "properties": charge.properties,
            "invoice_display_name": charge.invoice_display_name, "pay_in_advance": charge.pay_in_advance,
            "invoiceable": charge.invoiceable, "prorated": charge.prorated,
            "min_amount_cents": charge.min_amount_cents}  # no "filters": the update keeps each charge's own


@admin.register(Charge)
class ChargeAdmin(ServiceFormAdmin):
    form = ChargeForm
    list_display = ("__str__", "plan", "billable_metric", "charge_model", "pricing", "min_amount_cents")
    list_filter = ("charge_model", "plan__service")
    list_select_related = ("plan", "billable_metric")
    search_fields = ("code", "plan__code", "billable_metric__code")
    money_currency = "plan.amount_currency"
    # Each charge model's fields show only when it is chosen (unfold's conditional fields, Alpine.js).
    conditional_fields = {
        "standard_amount": "charge_model == 'standard'",
        **{name: "charge_model == 'package'" for name in ("package_amount", "package_size", "free_units")},
        **{name: "charge_model == 'percentage'" for name in PERCENTAGE_FIELDS},
        **{_tier_name(row, part): "charge_model == 'graduated' || charge_model == 'volume'"
           for row in range(TIER_ROWS) for part in TIER_FIELDS},
    }

    def get_fieldsets(self, request, obj=None):
        head = ["billable_metric", "code", "invoice_display_name", "charge_model"]
        if obj is None:
            head = ["plan", *head]
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ["plan", "billable_metric", "code", "charge_model", "pricing", "price_preview",
                                       "min_amount_cents_display", "audit_trail"]})]
        tiers = [tuple(_tier_name(row, part) for part in TIER_FIELDS) for row in range(TIER_ROWS)]
        sets = [
            (None, {"fields": head}),
            ("Price", {"fields": ["standard_amount", ("package_amount", "package_size", "free_units"),
                                  *PERCENTAGE_FIELDS, *tiers, "min_amount"]}),
            ("Billing", {"fields": ["pay_in_advance", "invoiceable", "prorated"]}),
        ]
        if obj is not None:
            sets.append(("Price preview", {"fields": ["price_preview", "audit_trail"]}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["plan", "billable_metric", "code", "charge_model", "pricing", "price_preview", "min_amount_cents",
                    "audit_trail"]
        return ("price_preview", "audit_trail") if obj is not None else ()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("charge_model", Charge.ChargeModel.STANDARD)
        return initial

    def has_delete_permission(self, request, obj=None):
        return False  # a plan update without the charge removes it, through the API's service

    @admin.display(description="pricing")
    def pricing(self, obj: Charge) -> str:
        return _properties_text(obj)

    @admin.display(description="price for sample quantities")
    def price_preview(self, obj: Charge) -> str:
        """What the rating engine bills for a few quantities in one period, with these properties."""
        if obj is None or obj.pk is None:
            return "-"
        currency = obj.plan.amount_currency
        rows = []
        for units in SAMPLE_UNITS:
            try:
                result = price_charge(charge_model=obj.charge_model, properties=obj.properties,
                                      units=Decimal(units), events_count=1, currency=currency)
                shown = money_display(result.amount_cents, currency)
            except (TypeError, ValueError, InvalidOperation) as exc:
                shown = f"cannot price: {exc}"
            rows.append((f"{units:,}", shown))
        body = format_html_join("", "<tr><td class='pr-6'>{} units</td><td>{}</td></tr>", rows)
        return format_html("<table>{}</table><p class='text-xs'>One period, one event; before the minimum "
                           "and taxes.</p>", body)


@admin.register(Tax)
class TaxAdmin(NexaModelAdmin):
    list_display = ("code", "name", "rate", "component", "country", "provinces", "valid_from", "service", "odoo_tax_ref")
    list_filter = ("country", "component", "service")
    search_fields = ("code", "name")
    readonly_fields = ("lago_id", "created_at", "updated_at", "audit_trail")


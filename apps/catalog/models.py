from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class BillableMetric(TimeStampedModel):
    """What a service meters (compute hours, seats...) and how a period's events aggregate."""

    class Aggregation(models.TextChoices):
        COUNT = "count_agg"
        SUM = "sum_agg"
        MAX = "max_agg"
        UNIQUE_COUNT = "unique_count_agg"
        LATEST = "latest_agg"
        WEIGHTED_SUM = "weighted_sum_agg"

    class RoundingFunction(models.TextChoices):
        CEIL = "ceil"
        FLOOR = "floor"
        ROUND = "round"

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="billable_metrics")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    aggregation_type = models.CharField(max_length=32, choices=Aggregation.choices)
    field_name = models.CharField(max_length=255, blank=True)  # event property aggregated; blank for count
    recurring = models.BooleanField(default=False)  # units carry over from period to period
    weighted_interval = models.CharField(max_length=16, blank=True)  # "seconds" for weighted_sum
    rounding_function = models.CharField(max_length=8, choices=RoundingFunction.choices, blank=True)
    rounding_precision = models.IntegerField(null=True, blank=True)
    # Lago's dimensions: [{"key": "region", "values": ["us", "eu"]}]
    filters = models.JSONField(default=list, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("service", "code")
        constraints = [
            models.UniqueConstraint(
                fields=("service", "code"), condition=Q(deleted_at__isnull=True), name="uniq_live_metric_code"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class Tax(TimeStampedModel):
    """A sales tax rate (HST, GST, PST, QST...) and where it applies.

    Hub-wide taxes (service null) are managed by staff and carry the Odoo tax used when
    posting; a service may add its own through the API, visible to it alone.
    """

    service = models.ForeignKey(
        "customers.Service", on_delete=models.PROTECT, null=True, blank=True, related_name="taxes"
    )
    code = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    rate = models.DecimalField(max_digits=9, decimal_places=5)  # percent, e.g. 13.00000
    country = models.CharField(max_length=2, blank=True)  # ISO 3166-1; blank = not tied to a place
    # Province codes where the tax applies; empty with a country = the whole country.
    provinces = ArrayField(models.CharField(max_length=8), default=list, blank=True)
    odoo_tax_ref = models.CharField(max_length=255, blank=True, help_text="Odoo account.tax id or xml id")
    # Billing (hub-wide rows): per province, the row of each component with the latest valid_from on or before an
    # invoice's issuing date is charged; a rate change is a new row from its date (apps/catalog/taxes.py).
    component = models.CharField(
        max_length=8, blank=True, choices=[(name, name.upper()) for name in ("gst", "hst", "pst", "qst")],
        help_text="GST, HST, PST or QST: one of each is in force per province on a date",
    )
    valid_from = models.DateField(null=True, blank=True, help_text="first issuing date it applies to; empty = always")

    class Meta:
        ordering = ("code",)
        verbose_name_plural = "taxes"

    def __str__(self) -> str:
        return f"{self.code} ({self.rate}%)"


class Plan(TimeStampedModel):
    """A service's price list: a base fee per interval plus usage charges."""

    class Interval(models.TextChoices):
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        QUARTERLY = "quarterly"
        YEARLY = "yearly"

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="plans")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    interval = models.CharField(max_length=16, choices=Interval.choices)
    amount_cents = models.BigIntegerField(default=0)  # base fee per interval, minor units of amount_currency
    amount_currency = models.CharField(max_length=3)  # ISO 4217
    pay_in_advance = models.BooleanField(default=False)  # base fee billed at period start, else at its end
    trial_period = models.PositiveIntegerField(default=0)  # days without base fee
    # Lago's plan metadata: {key: string or null}, at most 50 keys; null when the plan has none (PlanMetadata*).
    metadata = models.JSONField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Lago's plan override: a copy of `parent` with one subscription's prices (`plan_overrides`), same code, never
    # listed or subscribed to by code (apps/catalog/plan_terms.py).
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")

    class Meta:
        ordering = ("service", "code")
        constraints = [
            models.UniqueConstraint(
                fields=("service", "code"), condition=Q(deleted_at__isnull=True, parent__isnull=True),
                name="uniq_live_plan_code",
            ),
            models.CheckConstraint(condition=Q(amount_cents__gte=0), name="plan_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"

    @property
    def yearly_amount_cents(self) -> int:
        """Base fee normalised to a year: Lago compares plans this way for upgrade vs downgrade."""
        per_year = {"weekly": 52, "monthly": 12, "quarterly": 4, "yearly": 1}[self.interval]
        return self.amount_cents * per_year


class Charge(TimeStampedModel):
    """How a plan prices one metric: a Lago charge model with its properties."""

    class ChargeModel(models.TextChoices):
        STANDARD = "standard"
        GRADUATED = "graduated"
        VOLUME = "volume"
        PACKAGE = "package"
        PERCENTAGE = "percentage"
        GRADUATED_PERCENTAGE = "graduated_percentage"
        DYNAMIC = "dynamic"  # priced by each event's own `precise_total_amount_cents`

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="charges")
    billable_metric = models.ForeignKey(BillableMetric, on_delete=models.PROTECT, related_name="charges")
    code = models.CharField(max_length=255)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    charge_model = models.CharField(max_length=24, choices=ChargeModel.choices)
    # Lago's property names per model; money values are decimal strings in major units.
    properties = models.JSONField(default=dict)
    pay_in_advance = models.BooleanField(default=False)
    invoiceable = models.BooleanField(default=True)
    prorated = models.BooleanField(default=False)
    min_amount_cents = models.BigIntegerField(default=0)  # per-period minimum, minor units

    class Meta:
        ordering = ("plan", "id")
        constraints = [
            models.UniqueConstraint(fields=("plan", "code"), name="uniq_charge_code_per_plan"),
            models.CheckConstraint(condition=Q(min_amount_cents__gte=0), name="charge_min_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.plan.code}/{self.code}"

    @property
    def live_filters(self) -> list[ChargeFilter]:
        """The charge's filters in force, in creation order (from a `prefetch_related("charge_filters")` if made).

        With the prefetch, the list is kept for as long as that prefetched result is: the close asks once per
        subscription and charge (50,000 times at 10,000 subscriptions) of a few shared plan instances."""
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("charge_filters")
        if prefetched is None:
            return [item for item in self.charge_filters.all() if item.deleted_at is None]
        memo = self.__dict__.get("_live_filters")
        if memo is None or memo[0] is not prefetched:
            memo = (prefetched, [item for item in prefetched if item.deleted_at is None])
            self.__dict__["_live_filters"] = memo
        return memo[1]


class ChargeFilter(TimeStampedModel):
    """A charge's own price for events whose properties match `values` (Lago's charge filter).

    `values` maps keys of the metric's filters to the values this filter takes ({"region": ["us", "eu"]});
    `ALL_VALUES` stands for every value the metric lists for that key. An event is priced by the most specific
    filter it matches (the most keys; the first created on a tie), and by the charge's own properties when it
    matches none (apps/invoicing/filters.py). Replaced or removed filters are kept, soft-deleted, for the fees
    that billed them.
    """

    ALL_VALUES = "__ALL_FILTER_VALUES__"

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="charge_filters")
    invoice_display_name = models.CharField(max_length=255, blank=True)
    # The charge model's properties for these events, as on Charge (major-unit decimal strings).
    properties = models.JSONField(default=dict)
    values = models.JSONField(default=dict)  # {metric filter key: [values]}
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("charge", "id")

    def __str__(self) -> str:
        return f"{self.charge}: {self.display_name}"

    @property
    def display_name(self) -> str:
        """Lago's filter display name: its invoice name, else its values (a key for all its values)."""
        if self.invoice_display_name:
            return self.invoice_display_name
        parts: list[str] = []
        for key, values in self.values.items():
            parts.extend([key] if values == [self.ALL_VALUES] else values)
        return ", ".join(parts)


class Commitment(TimeStampedModel):
    """A plan's minimum commitment (Lago's `minimum_commitment`): the least a subscription pays per billing period.

    At the end of a period the close adds a true-up fee for the shortfall of the period's base fee and usage fees
    (charges and their minimum true-ups) below this amount, prorated by active days (apps/invoicing/close/planning.py).
    """

    plan = models.OneToOneField(Plan, on_delete=models.CASCADE, related_name="minimum_commitment")
    amount_cents = models.BigIntegerField()  # per billing period, minor units of the plan's amount_currency
    invoice_display_name = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gte=0), name="commitment_not_negative")]

    def __str__(self) -> str:
        return f"{self.plan} minimum {self.amount_cents}"


class UsageThreshold(TimeStampedModel):
    """A plan's usage threshold (Lago's progressive billing): when a subscription's lifetime usage crosses it, the
    usage of the period so far is invoiced at once (apps/invoicing/progressive.py). A recurring one (at most one per
    plan) is crossed again every `amount_cents` of usage past the largest fixed one."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="usage_thresholds")
    amount_cents = models.BigIntegerField()  # lifetime usage, minor units of the plan's amount_currency
    recurring = models.BooleanField(default=False)
    threshold_display_name = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ("plan", "recurring", "amount_cents", "id")
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="usage_threshold_positive"),
            models.UniqueConstraint(fields=("plan",), condition=Q(recurring=True), name="uniq_recurring_threshold"),
            models.UniqueConstraint(
                fields=("plan", "amount_cents"), condition=Q(recurring=False), name="uniq_fixed_threshold_amount"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} threshold {self.amount_cents}{' (recurring)' if self.recurring else ''}"


def plan_commitment(plan: Plan) -> Commitment | None:
    """The plan's minimum commitment or None (the reverse one-to-one raises when absent)."""
    try:
        return plan.minimum_commitment
    except Commitment.DoesNotExist:
        return None


class AddOn(TimeStampedModel):
    """A catalog item sold once (token pack, throttle removal, onboarding): Lago's add-on, billed by one-off invoices."""

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="add_ons")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    # Default price of one unit, minor units of amount_currency; a one-off invoice fee may override it (Lago).
    amount_cents = models.BigIntegerField()
    amount_currency = models.CharField(max_length=3)  # ISO 4217
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("service", "code")
        constraints = [
            models.UniqueConstraint(
                fields=("service", "code"), condition=Q(deleted_at__isnull=True), name="uniq_live_add_on_code"
            ),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="add_on_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"

    @property
    def invoice_name(self) -> str:
        return self.invoice_display_name or self.name


class Coupon(TimeStampedModel):
    """A service's discount (Lago's coupon): a fixed amount or a percentage off subscription invoices, before tax.

    Applied to customers as `AppliedCoupon` rows, which carry the values in force for that customer (overridable
    when applying) and what is left of them; the close consumes them (apps/invoicing/coupons.py).
    """

    class CouponType(models.TextChoices):
        FIXED_AMOUNT = "fixed_amount"
        PERCENTAGE = "percentage"

    class Frequency(models.TextChoices):
        ONCE = "once"  # one invoice (a fixed amount carries its remainder to the next ones until consumed)
        RECURRING = "recurring"  # frequency_duration invoices
        FOREVER = "forever"

    class Expiration(models.TextChoices):
        NO_EXPIRATION = "no_expiration"
        TIME_LIMIT = "time_limit"

    class Status(models.TextChoices):
        ACTIVE = "active"
        TERMINATED = "terminated"

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="coupons")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    coupon_type = models.CharField(max_length=16, choices=CouponType.choices)
    amount_cents = models.BigIntegerField(null=True, blank=True)  # fixed_amount: minor units of amount_currency
    amount_currency = models.CharField(max_length=3, blank=True)  # ISO 4217; fixed_amount only
    percentage_rate = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)  # percent
    frequency = models.CharField(max_length=16, choices=Frequency.choices)
    frequency_duration = models.PositiveIntegerField(null=True, blank=True)  # invoices, for recurring
    reusable = models.BooleanField(default=True)  # may be applied to one customer more than once
    expiration = models.CharField(max_length=16, choices=Expiration.choices, default=Expiration.NO_EXPIRATION)
    expiration_at = models.DateTimeField(null=True, blank=True)  # no new application after this instant
    # Limits: the coupon discounts only these plans' fees, or only these metrics' usage fees (one kind at most).
    plans = models.ManyToManyField(Plan, blank=True, related_name="coupons")
    billable_metrics = models.ManyToManyField(BillableMetric, blank=True, related_name="coupons")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    terminated_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("service", "code")
        constraints = [
            models.UniqueConstraint(
                fields=("service", "code"), condition=Q(deleted_at__isnull=True), name="uniq_live_coupon_code"
            ),
            models.CheckConstraint(
                condition=(Q(coupon_type="fixed_amount", amount_cents__gt=0, percentage_rate__isnull=True)
                           | Q(coupon_type="percentage", amount_cents__isnull=True, percentage_rate__gt=0,
                               percentage_rate__lte=100)),
                name="coupon_value_matches_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class AppliedCoupon(TimeStampedModel):
    """A coupon applied to a customer (through the service's account link), with what is left of it.

    Values are copied from the coupon (or the overrides given when applying). `amount_cents_remaining` (fixed
    amount, frequency once) and `frequency_duration_remaining` (recurring) are what the next invoices may still
    take; each invoice's use is a `invoicing.CouponCredit` row, written in the same transaction that lowers them.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        TERMINATED = "terminated"

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="applied_coupons")
    account_link = models.ForeignKey("customers.AccountLink", on_delete=models.PROTECT, related_name="applied_coupons")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="applied_coupons")
    amount_cents = models.BigIntegerField(null=True, blank=True)  # fixed amount per invoice (or in all, once)
    amount_currency = models.CharField(max_length=3, blank=True)
    amount_cents_remaining = models.BigIntegerField(null=True, blank=True)  # fixed + once: not consumed yet
    percentage_rate = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)  # percent
    frequency = models.CharField(max_length=16, choices=Coupon.Frequency.choices)
    frequency_duration = models.PositiveIntegerField(null=True, blank=True)
    frequency_duration_remaining = models.PositiveIntegerField(null=True, blank=True)  # recurring: invoices left
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("customer", "created_at", "id")
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents_remaining__isnull=True) | (
                    Q(amount_cents_remaining__gte=0) & Q(amount_cents_remaining__lte=models.F("amount_cents"))),
                name="applied_coupon_remaining_within_amount",
            ),
        ]
        indexes = [
            models.Index(fields=("customer",), condition=Q(status="active"), name="applied_coupon_active_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.coupon} on {self.account_link}"


class Feature(TimeStampedModel):
    """Lago's entitlement feature: something a plan grants (SSO, seats...), with typed privileges. Plain catalog
    data the service's apps read (`/plans/{code}/entitlements`, `/subscriptions/{id}/entitlements`); no billing."""

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="features")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ("service", "code")
        constraints = [models.UniqueConstraint(fields=("service", "code"), name="uniq_feature_code")]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class FeaturePrivilege(TimeStampedModel):
    class ValueType(models.TextChoices):
        INTEGER = "integer"
        BOOLEAN = "boolean"
        STRING = "string"
        SELECT = "select"

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="privileges")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    value_type = models.CharField(max_length=16, choices=ValueType.choices, default=ValueType.STRING)
    config = models.JSONField(default=dict, blank=True)  # {"select_options": [...]} for select

    class Meta:
        ordering = ("feature", "created_at", "id")
        constraints = [models.UniqueConstraint(fields=("feature", "code"), name="uniq_privilege_code")]


class PlanEntitlement(TimeStampedModel):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="entitlements")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="entitlements")

    class Meta:
        ordering = ("plan", "created_at", "id")
        constraints = [models.UniqueConstraint(fields=("plan", "feature"), name="uniq_plan_feature")]


class PlanEntitlementValue(models.Model):
    entitlement = models.ForeignKey(PlanEntitlement, on_delete=models.CASCADE, related_name="values")
    privilege = models.ForeignKey(FeaturePrivilege, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=255)  # as Lago stores it; cast by the privilege's value_type

    class Meta:
        constraints = [models.UniqueConstraint(fields=("entitlement", "privilege"), name="uniq_entitlement_value")]

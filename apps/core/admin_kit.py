"""What every hub admin is built from: unfold's admin classes, read-only variants and money columns.

Admin modules are entry points (tests/unit/test_layers.py: nothing imports them), so what they share lives here.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.utils.functional import cached_property
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.db.models.expressions import OrderBy
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.views import ChangeList

from .audit import audit_context
from .exceptions import BillingError, ValidationFailed
from .money import SUPPORTED_CURRENCIES, money_display


MONEY_SUFFIX = "_cents"
DISPLAY_SUFFIX = "_display"


class MoneyColumnsMixin:
    """Show every integer-cents model field as money (`$119.78 CAD`) wherever the admin shows it read-only.

    In list columns and read-only fields, `total_amount_cents` becomes the column `total_amount_cents_display`,
    labelled "total amount"; an editable cents field stays an input. The row's currency is its `currency` or
    `amount_currency` field, else `money_currency` (a dotted path or a function of the row, per field or for all).
    """

    money_currency: str | Callable[[Any], str] | dict[str, str | Callable[[Any], str]] | None = None

    def _is_money(self, name: Any) -> bool:
        if not isinstance(name, str) or not name.endswith(MONEY_SUFFIX):
            return False
        try:
            self.model._meta.get_field(name)
        except Exception:  # not a model field (a display method of the admin): left as it is
            return False
        return True

    def _swap(self, names: Any) -> list:
        return [f"{name}{DISPLAY_SUFFIX}" if self._is_money(name) else name for name in names]

    def _currency_reader(self, field: str) -> Callable[[Any], str]:
        choice = self.money_currency
        if isinstance(choice, dict):
            choice = choice.get(field)
        if choice is None:
            names = {f.name for f in self.model._meta.fields}
            choice = "currency" if "currency" in names else "amount_currency"
        return choice if callable(choice) else attrgetter(choice)

    def __getattr__(self, name: str) -> Any:
        if name.endswith(MONEY_SUFFIX + DISPLAY_SUFFIX) and not name.startswith("_"):
            field = name.removesuffix(DISPLAY_SUFFIX)
            if self._is_money(field):
                return money(field, currency=self._currency_reader(field)).__get__(self)
        raise AttributeError(name)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # An admin that computes its own read-only fields still gets money columns: its method is wrapped.
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("get_readonly_fields")
        if own is not None and not getattr(own, "_shows_money", False):
            def get_readonly_fields(self, request: HttpRequest, obj: Any = None, _own=own):
                return self._money_readonly(list(_own(self, request, obj)), request, obj)

            get_readonly_fields._shows_money = True  # type: ignore[attr-defined]
            cls.get_readonly_fields = get_readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return self._money_readonly(list(super().get_readonly_fields(request, obj)), request, obj)

    get_readonly_fields._shows_money = True  # type: ignore[attr-defined]

    def _money_readonly(self, names: list, request: HttpRequest, obj: Any) -> list:
        if obj is not None and not self.has_change_permission(request, obj):
            # A view-only page shows every field read-only, money included: list them so they show as money.
            shown = set(names)
            names += [f.name for f in self.model._meta.fields if self._is_money(f.name) and f.name not in shown
                      and f"{f.name}{DISPLAY_SUFFIX}" not in shown]
        return self._swap(names)

    def _readonly_money(self, request: HttpRequest, obj: Any) -> set[str]:
        return {name.removesuffix(DISPLAY_SUFFIX) for name in self.get_readonly_fields(request, obj)
                if isinstance(name, str) and name.endswith(MONEY_SUFFIX + DISPLAY_SUFFIX)}

    def get_exclude(self, request: HttpRequest, obj: Any = None):
        # The cents field shown as money is left out of the form, or it would come back as an editable input.
        readonly = self._readonly_money(request, obj)
        return [*(super().get_exclude(request, obj) or ()), *sorted(readonly)] if readonly else \
            super().get_exclude(request, obj)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = super().get_fields(request, obj)
        readonly = self._readonly_money(request, obj)
        return [f"{name}{DISPLAY_SUFFIX}" if name in readonly else name for name in fields]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self.fieldsets:
            return fieldsets
        readonly = self._readonly_money(request, obj)

        def swap(entry: Any) -> Any:
            if isinstance(entry, (list, tuple)):
                return type(entry)(swap(item) for item in entry)
            return f"{entry}{DISPLAY_SUFFIX}" if entry in readonly else entry

        return [(title, {**options, "fields": swap(options["fields"])}) for title, options in fieldsets]


def read_only_action(func: Callable) -> Callable:
    """Mark an admin action that changes nothing (a PDF, an export): whoever may view the rows may run it."""
    func.read_only = True  # type: ignore[attr-defined]
    return func


class NexaChangeList(ChangeList):
    """Django's change list, with the primary key that breaks ties sorted the way the chosen column is.

    Django always appends `-pk`, so sorting a column up reads `ORDER BY col ASC, id DESC`, which no btree on
    `(col, id)` serves in either direction: PostgreSQL sorted the whole table for a page of 100.
    """

    def get_ordering(self, request: HttpRequest, queryset: Any) -> list:
        ordering = super().get_ordering(request, queryset)
        if len(ordering) > 1 and ordering[-1] == "-pk":
            first = ordering[0]
            ascending = (not first.startswith("-")) if isinstance(first, str) else (
                isinstance(first, OrderBy) and not first.descending)
            if ascending:
                ordering[-1] = "pk"
        return ordering


class CurrencyFilter(admin.SimpleListFilter):
    """Filter by currency, offering the hub's currencies instead of reading every row's (a DISTINCT over the
    table on each page view)."""

    title = "currency"
    parameter_name = "currency__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, code) for code in SUPPORTED_CURRENCIES]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(currency=self.value()) if self.value() else queryset


class NexaModelAdmin(MoneyColumnsMixin, ModelAdmin):
    """Base of every hub admin: unfold's look, money as money, a link to the object's audit trail, and actions
    refused to whoever may not change the rows (staff groups: apps/core/management/commands/staff_groups.py)."""

    warn_unsaved_form = True

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return NexaChangeList

    def _filter_actions_by_permissions(self, request: HttpRequest, actions: Any) -> list:
        # An action without declared permissions acts on the rows: it needs the model's change permission (the
        # user's, even where the admin shows rows read-only), or view for a read-only action. An action not offered
        # is refused if posted anyway (Django answers "no action selected" and runs nothing).
        opts = self.model._meta
        allowed = []
        for action in super()._filter_actions_by_permissions(request, actions):
            func = action[0]
            if hasattr(func, "allowed_permissions"):
                allowed.append(action)
            elif getattr(func, "read_only", False):
                if self.has_view_permission(request):
                    allowed.append(action)
            elif request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"):
                allowed.append(action)
        return allowed

    @admin.display(description="audit trail")
    def audit_trail(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        url = reverse("admin:audit_auditevent_changelist") + f"?obj={obj._meta.label}:{obj.pk}"
        return format_html('<a href="{}">Every recorded change of this {}</a>', url, obj._meta.verbose_name)

    def get_list_display(self, request: HttpRequest):
        return self._swap(super().get_list_display(request))

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Any = None):
        # A page where nothing can be edited offers no Save: it would "save" nothing and suggest otherwise.
        editable_inline = any(formset.formset.forms or formset.formset.extra
                              for formset in context.get("inline_admin_formsets", ())
                              if formset.has_change_permission or formset.has_add_permission)
        if change and not context["adminform"].form.fields and not editable_inline:
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                           show_save_as_new=False)
        return super().render_change_form(request, context, add, change, form_url, obj)


class BoundedCountPaginator(Paginator):
    """A list paginator that counts at most `cap` rows: exact page links below it, Previous/Next above.

    Django's admin counts the filtered rows on every page view; on a table of millions that COUNT(*) alone reads
    every row. Counting through `LIMIT cap + 1` stops early, and past the cap the list shows "more than N" with
    Previous/Next (each page still one indexed `LIMIT/OFFSET` query). Pair with `show_full_result_count = False`.
    """

    cap = 10_000
    # Page numbers are unbounded above the cap (the page past the last row is simply empty).
    UNBOUNDED = 9_999_999_999

    @cached_property
    def counted(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.counted > self.cap

    @cached_property
    def count(self) -> int:
        return self.UNBOUNDED if self.capped else self.counted

    @property
    def cap_display(self) -> str:
        return f"{self.cap:,}"

    @property
    def template_name(self) -> str:
        return "admin/nexa/pagination_bounded.html"


class ReadOnlyAdmin(NexaModelAdmin):
    """Rows written by services only: staff read them (no Add, no Save, no Delete); actions call services."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NexaTabularInline(MoneyColumnsMixin, TabularInline):
    pass


class NexaStackedInline(MoneyColumnsMixin, StackedInline):
    pass


class ReadOnlyTabularInline(NexaTabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def money(field: str, *, currency: str | Callable[[Any], str] = "currency", description: str | None = None,
          ordering: bool = True) -> Callable[[Any, Any], str]:
    """A list/detail column showing `field` (integer minor units) as `$119.78 CAD`.

    `currency` is the row's attribute path holding the ISO code (`"invoice.currency"`), or a function of the row.
    """
    read_currency = currency if callable(currency) else attrgetter(currency)
    label = description or field.removesuffix("_cents").removesuffix("_amount").replace("_", " ")

    @admin.display(description=label, ordering=field if ordering else None)
    def show(model_admin: Any, obj: Any) -> str:
        return money_display(getattr(obj, field), read_currency(obj) or "")

    show.__name__ = f"{field}_display"
    return show


def chart_options(*, x_title: str, y_title: str, stacked: bool = False) -> str:
    """Chart.js options (JSON, for unfold's chart components) with both axes shown, titled and with their values,
    and the legend: unfold's defaults hide the y axis' values, the legend and any axis title."""
    axis = {"display": True, "ticks": {"display": True, "color": "#6b7280"}, "stacked": stacked,
            "grid": {"display": True, "color": "rgba(156, 163, 175, 0.25)"}}
    return json.dumps({
        "animation": False, "responsive": True, "maintainAspectRatio": False,
        "plugins": {"legend": {"display": True, "position": "top", "align": "end"}, "tooltip": {"enabled": True}},
        "scales": {"x": {**axis, "title": {"display": True, "text": x_title}},
                   "y": {**axis, "beginAtZero": True, "title": {"display": True, "text": y_title}}},
    })


class ReasonForm(forms.Form):
    reason = forms.CharField(
        min_length=5, max_length=500, widget=forms.Textarea(attrs={"rows": 3, "class": "border rounded w-full p-2"}),
        help_text="Required: recorded in the audit with your name and the time.")


def confirm_with_reason(model_admin: ModelAdmin, request: HttpRequest, queryset: Any, *, action: str, question: str,
                        verb: str, run: Callable[..., None],
                        form_class: type[ReasonForm] | None = None) -> HttpResponse | None:
    """An admin action's confirmation page asking why; on confirm, `run(reason)` under the audit's context.
    With `form_class` (a ReasonForm with more fields), `run(reason, cleaned_data)`.

    Every manual money action goes through here, so each change it causes carries who and why in the audit.
    """
    form = (form_class or ReasonForm)(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        reason = form.cleaned_data["reason"]
        with audit_context(actor=request.user.get_username(), reason=reason, action=action):
            if form_class is None:
                run(reason)
            else:
                run(reason, form.cleaned_data)
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": verb, "question": question, "objects": list(queryset[:50]), "form": form, "action": action,
        "verb": verb, "ids": list(queryset.values_list("pk", flat=True)), "opts": model_admin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/nexa/confirm_with_reason.html", context)


class ServiceForm(forms.ModelForm):
    """An admin form that writes through the domain service the API calls, with the API's validation.

    After the form's own checks, `write()` (the subclass's: one service call) runs in a savepoint: a refusal
    becomes the form's errors, with Lago's codes on the fields they name, and nothing is written; success leaves
    the service's object as the form's instance, which the admin then shows. The admin view's transaction wraps
    it all, so a later failure rolls the write back too. `ServiceFormAdmin.save_model` never saves it again.
    """

    def write(self) -> Any:
        raise NotImplementedError

    def _post_clean(self) -> None:
        self.original = self.instance
        super()._post_clean()
        if self.errors:
            return
        try:
            with transaction.atomic():
                result = self.write()
        except ValidationFailed as exc:
            for field, codes in (exc.details or {"__all__": [str(exc)]}).items():
                name = field if field in self.fields else None
                message = ", ".join(codes) if name else f"{field}: {', '.join(codes)}"
                self.add_error(name, forms.ValidationError(message, code=codes[0] if codes else None))
        except BillingError as exc:
            self.add_error(None, f"{exc.code}: {exc}")
        else:
            if result is not None:
                self.instance = result


class ServiceFormAdmin(NexaModelAdmin):
    """Admin whose add/change forms are ServiceForms: the service saved the object while the form validated.

    Inlines of such an admin are read-only: their rows change through services too.
    """

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass  # written by the form's service call

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        for formset in formsets:
            formset.save(commit=False)  # saves nothing; sets what the admin's change message reads


__all__ = ["chart_options", "BoundedCountPaginator", "CurrencyFilter", "NexaChangeList", "read_only_action", "ReasonForm", "ServiceForm", "ServiceFormAdmin", "confirm_with_reason", "NexaModelAdmin", "NexaStackedInline", "NexaTabularInline", "ReadOnlyAdmin", "ReadOnlyTabularInline", "money"]

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_kit import (
    NexaModelAdmin,
    ReadOnlyTabularInline,
    ServiceForm,
    ServiceFormAdmin,
    confirm_with_reason,
)
from apps.core.exceptions import ValidationFailed
from apps.core.money import money_display

from .models import AccountLink, Customer, Organization, Service
from .services import (
    CUSTOMER_FIELDS,
    ORGANIZATION_FIELDS,
    account_link_create,
    customer_upsert,
    organization_update,
    service_create,
    service_rotate_key,
)


class AccountLinkInline(ReadOnlyTabularInline):
    """A customer's accounts with the services; made by the API's customer upsert or "Link to a service"."""

    model = AccountLink
    fields = ("service", "external_id", "deleted_at", "created_at")
    readonly_fields = fields


class CustomerAddForm(ServiceForm):
    """The API's POST /customers on behalf of one service: the customer as that service knows them."""

    service = forms.ModelChoiceField(queryset=Service.objects.filter(active=True).order_by("code"))
    service_external_id = forms.CharField(max_length=255, label="Customer id in that service",
                                          help_text="The id the service's apps send as external_customer_id.")

    class Meta:
        model = Customer
        fields = CUSTOMER_FIELDS

    def clean(self):
        data = super().clean()
        service, external_id = data.get("service"), data.get("service_external_id")
        if service and external_id and AccountLink.objects.filter(
            service=service, external_id=external_id, deleted_at__isnull=True
        ).exists():
            self.add_error("service_external_id", "value_already_exist: this service already has that customer")
        return data

    def write(self) -> Customer:
        attributes = {field: self.cleaned_data[field] for field in CUSTOMER_FIELDS if field in self.cleaned_data}
        link = customer_upsert(service=self.cleaned_data["service"], external_id=self.cleaned_data["service_external_id"],
                               attributes=attributes)
        return link.customer


class CustomerChangeForm(ServiceForm):
    """The API's customer update, through the customer's first account link (customer fields are hub-wide)."""

    class Meta:
        model = Customer
        fields = CUSTOMER_FIELDS

    def write(self) -> Customer:
        link = self.instance.account_links.filter(deleted_at__isnull=True).select_related("service").order_by("pk").first()
        if link is None:
            raise ValidationFailed("no account", details={"__all__": ["customer_has_no_account_link"]})
        attributes = {field: self.cleaned_data[field] for field in CUSTOMER_FIELDS if field in self.cleaned_data}
        return customer_upsert(service=link.service, external_id=link.external_id, attributes=attributes).customer


@admin.register(Service)
class ServiceAdmin(NexaModelAdmin):
    list_display = ("code", "name", "active", "api_key_prefix", "api_key_rotated_at", "created_at")
    list_filter = ("active",)
    search_fields = ("code", "name")
    readonly_fields = ("api_key_prefix", "api_key_rotated_at", "lago_id", "created_at", "updated_at", "audit_trail")
    fields = ("code", "name", "active", "api_key_prefix", "api_key_rotated_at", "lago_id", "created_at", "audit_trail")
    actions = ("rotate_key",)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = service_create(code=obj.code, name=obj.name)
        obj.pk = issued.service.pk
        obj.__dict__.update(issued.service.__dict__)
        self._show_key(request, issued)

    @admin.action(description="Rotate API key (the old key stops working)", permissions=["change"])
    def rotate_key(self, request, queryset):
        def run(reason: str) -> None:
            for service_id in queryset.values_list("pk", flat=True):
                self._show_key(request, service_rotate_key(service_id=service_id))

        return confirm_with_reason(self, request, queryset, action="rotate_key", verb="Rotate the keys", run=run,
                                   question="Issue new API keys? The services' current keys stop working at once.")

    @staticmethod
    def _show_key(request, issued) -> None:
        messages.warning(
            request,
            format_html(
                "API key for <b>{}</b> (shown once, store it now): <code>{}</code>", issued.service.code, issued.raw_key
            ),
        )


@admin.register(Customer)
class CustomerAdmin(ServiceFormAdmin):
    list_display = ("external_id", "overview_link", "legal_name", "name", "email", "country", "state", "currency",
                    "created_at")
    list_filter = ("country", "state", "currency", "customer_type")
    search_fields = ("external_id", "name", "legal_name", "email", "account_links__external_id")
    readonly_fields = ("overview_link", "external_id", "lago_id", "created_at", "updated_at", "invoice_history")
    inlines = (AccountLinkInline,)

    def get_urls(self):
        from django.urls import path

        own = [path("<int:customer_id>/overview/", self.admin_site.admin_view(self.overview_view),
                    name="customers_customer_overview")]
        return own + super().get_urls()

    def overview_view(self, request, customer_id: int):
        """Customer 360: the customer's accounts, subscriptions, balance and credit, payment method and timeline."""
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        from apps.dashboard.selectors import customer_360_get, customer_usage_so_far
        from apps.invoicing.close.preview import invoice_preview

        if not self.has_view_permission(request):
            raise PermissionDenied
        story = customer_360_get(customer_id=customer_id)
        timeline = [{"at": entry.at, "kind": entry.kind, "text": entry.text,
                     "url": reverse(entry.admin, args=[entry.pk]),
                     "amount": money_display(entry.amount_cents, entry.currency) if entry.amount_cents is not None
                     else ""} for entry in story.timeline]
        invoices = reverse("admin:invoicing_invoice_changelist") + f"?customer__id__exact={customer_id}"
        from apps.invoicing.close.ongoing import wallets_ongoing_usage

        ongoing_usage = wallets_ongoing_usage(story.wallets or [])  # as the API's ongoing_balance_cents
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"{story.customer}: overview",
            "story": story, "timeline": timeline,
            "owed": [money_display(cents, currency) for currency, cents in sorted(story.owed.items())],
            "credit": [money_display(cents, currency) for currency, cents in sorted(story.credit.items())],
            "wallets": [(wallet.service.name, wallet.name or "wallet", money_display(wallet.balance_amount_cents,
                         wallet.currency), reverse("admin:invoicing_wallet_change", args=[wallet.pk]),
                         money_display(wallet.balance_amount_cents - ongoing_usage[wallet.pk], wallet.currency))
                        for wallet in story.wallets or []],
            "previews": [
                {"day": preview.billing_on, "currency": preview.currency,
                 "lines": [(line.name, money_display(line.amount_cents, preview.currency)) for line in preview.lines],
                 "fees": money_display(preview.fees_amount_cents, preview.currency),
                 "taxes": money_display(preview.taxes_amount_cents, preview.currency),
                 "total": money_display(preview.total_amount_cents, preview.currency)}
                for preview in invoice_preview(customer_id=customer_id)
            ],
            "usage": [
                {"subscription": entry.subscription.external_id, "service": entry.subscription.service.code,
                 "period": f"{entry.period_from:%Y-%m-%d} to {entry.period_to:%Y-%m-%d}",
                 "lines": [(line.name, line.units, line.events_count, money_display(line.amount_cents, entry.currency))
                           for line in entry.lines],
                 "amount": money_display(entry.amount_cents, entry.currency),
                 "taxes": money_display(entry.taxes_cents, entry.currency),
                 "total": money_display(entry.amount_cents + entry.taxes_cents, entry.currency)}
                for entry in customer_usage_so_far(customer_id=customer_id)
            ],
            "actions": [
                ("Credit note or void (select the invoice, then the action)", invoices + "&status__exact=finalized"),
                ("Retry a payment", reverse("admin:payments_paymentattempt_changelist")
                 + f"?invoice__customer__id__exact={customer_id}"),
                ("Terminate a subscription", reverse("admin:subscriptions_subscription_changelist")
                 + f"?customer__id__exact={customer_id}&status__exact=active"),
                ("Edit the customer", reverse("admin:customers_customer_change", args=[customer_id])),
            ],
        }
        return TemplateResponse(request, "admin/customers/customer_360.html", context)

    @admin.display(description="overview")
    def overview_link(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a href="{}">Customer 360: balance, subscriptions and timeline</a>',
                           reverse("admin:customers_customer_overview", args=[obj.pk]))

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = CustomerChangeForm if obj is not None else CustomerAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["service", "service_external_id", *CUSTOMER_FIELDS]
        if not self.has_change_permission(request, obj):
            return self.get_readonly_fields(request, obj)
        return [*self.get_readonly_fields(request, obj), *CUSTOMER_FIELDS]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if not self.has_change_permission(request, obj):
            return [*self.readonly_fields, *CUSTOMER_FIELDS]
        return self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # invoices and payments refer to customers; the API deletes a service's account link

    @admin.display(description="Invoice history")
    def invoice_history(self, obj):
        """The latest invoices as links, and a link to all of them in the invoice list."""
        if obj is None or obj.pk is None:
            return "-"
        from apps.invoicing.selectors import invoice_list_for_customer  # customers does not import invoicing at load

        rows = format_html_join(
            "", '<li><a href="{}">{}</a> · {} · {} · {} · {}</li>',
            ((reverse("admin:invoicing_invoice_change", args=[invoice.pk]), invoice.number or "draft",
              invoice.issuing_date, invoice.status, money_display(invoice.total_amount_cents, invoice.currency),
              invoice.payment_status) for invoice in invoice_list_for_customer(customer_id=obj.pk)),
        )
        everything = reverse("admin:invoicing_invoice_changelist") + f"?customer__id__exact={obj.pk}"
        return format_html('<ul>{}</ul><a href="{}">All invoices of this customer</a>', rows or "-", everything)


class AccountLinkForm(ServiceForm):
    class Meta:
        model = AccountLink
        fields = ("service", "customer", "external_id")

    def write(self) -> AccountLink:
        data = self.cleaned_data
        return account_link_create(service=data["service"], customer=data["customer"], external_id=data["external_id"])


@admin.register(AccountLink)
class AccountLinkAdmin(ServiceFormAdmin):
    """Links are made by the API's customer upsert or here (an existing customer known to one more service)."""

    form = AccountLinkForm

    list_display = ("external_id", "service", "customer", "deleted_at", "created_at")
    list_filter = ("service", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("external_id", "customer__external_id", "customer__legal_name")
    list_select_related = ("service", "customer")
    autocomplete_fields = ("customer",)
    readonly_fields = ("lago_id", "created_at", "updated_at")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)  # a link's page is read-only

    def has_delete_permission(self, request, obj=None):
        return False


class OrganizationForm(ServiceForm):
    """What invoices say about the seller, through the service PUT /organizations calls (audited)."""

    class Meta:
        model = Organization
        fields = ORGANIZATION_FIELDS

    def write(self) -> Organization:
        return organization_update(values={name: self.cleaned_data[name] for name in ORGANIZATION_FIELDS},
                                   changed_by=None)


@admin.register(Organization)
class OrganizationAdmin(ServiceFormAdmin):
    """The one organization row: changed, never added or deleted (migration customers 0003 seeds it)."""

    form = OrganizationForm
    list_display = ("name", "legal_name", "tax_identification_number", "updated_at")
    readonly_fields = ("lago_id", "created_at", "updated_at", "audit_trail")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

from __future__ import annotations

from django.urls import path

from .views import (
    alerts,
    analytics,
    catalog,
    charges,
    coupons,
    customers,
    entitlements,
    events,
    fees,
    health,
    invoices,
    logs,
    organization,
    payments,
    plan_metadata,
    subscriptions,
    wallets,
    webhook_endpoints,
    webhooks_keys,
)

# Lago's paths: no trailing slash; identifiers may contain dots and anything but "/".
# Each resource module owns its routes in `urlpatterns`, so domains grow without touching this file.
urlpatterns = [
    path("health", health.HealthView.as_view()),
    path("customers", customers.CustomerListCreateView.as_view()),
    *payments.urlpatterns,  # customers/<id>/checkout_url etc. before the catch-all customer route
    *invoices.urlpatterns,
    *coupons.urlpatterns,
    *customers.urlpatterns,
    path("customers/<str:external_id>", customers.CustomerDetailView.as_view()),
    path("billable_metrics", catalog.BillableMetricListCreateView.as_view()),
    path("billable_metrics/<str:code>", catalog.BillableMetricDetailView.as_view()),
    path("plans", catalog.PlanListCreateView.as_view()),
    path("plans/<str:code>", catalog.PlanDetailView.as_view()),
    path("taxes", catalog.TaxListCreateView.as_view()),
    path("taxes/<str:code>", catalog.TaxDetailView.as_view()),
    path("add_ons", catalog.AddOnListCreateView.as_view()),
    path("add_ons/<str:code>", catalog.AddOnDetailView.as_view()),
    path("subscriptions", subscriptions.SubscriptionListCreateView.as_view()),
    path("subscriptions/<str:external_id>", subscriptions.SubscriptionDetailView.as_view()),
    path("subscriptions/<str:external_id>/lifetime_usage", subscriptions.LifetimeUsageView.as_view()),
    *alerts.urlpatterns,
    *entitlements.urlpatterns,
    *events.urlpatterns,
    *fees.urlpatterns,
    *webhook_endpoints.urlpatterns,
    *wallets.urlpatterns,
    *analytics.urlpatterns,
    *logs.urlpatterns,
    *webhooks_keys.urlpatterns,
    *organization.urlpatterns,
    *plan_metadata.urlpatterns,
    *charges.urlpatterns,
]

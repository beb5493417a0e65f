from __future__ import annotations

from django.urls import path

from .views import catalog, customers, health, subscriptions

# Lago's paths: no trailing slash; identifiers may contain dots and anything but "/".
urlpatterns = [
    path("health", health.HealthView.as_view()),
    path("customers", customers.CustomerListCreateView.as_view()),
    path("customers/<str:external_id>", customers.CustomerDetailView.as_view()),
    path("billable_metrics", catalog.BillableMetricListCreateView.as_view()),
    path("billable_metrics/<str:code>", catalog.BillableMetricDetailView.as_view()),
    path("plans", catalog.PlanListCreateView.as_view()),
    path("plans/<str:code>", catalog.PlanDetailView.as_view()),
    path("taxes", catalog.TaxListCreateView.as_view()),
    path("taxes/<str:code>", catalog.TaxDetailView.as_view()),
    path("subscriptions", subscriptions.SubscriptionListCreateView.as_view()),
    path("subscriptions/<str:external_id>", subscriptions.SubscriptionDetailView.as_view()),
]

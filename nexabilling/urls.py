from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.ops import views as ops
from apps.payments import portal
from apps.payments.views import StripeWebhookView

handler404 = "apps.api.errors.api_not_found"
handler500 = "apps.api.errors.api_server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # For load balancers, orchestrators and Prometheus (docs/deployment.md).
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("api/v1/", include("apps.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="swagger-ui",
    ),
    # Before dj-stripe's own route for the same URL: verifies with the encrypted secret before storing anything.
    path("stripe/webhook/<uuid:uuid>", StripeWebhookView.as_view(), name="stripe-webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    *portal.urlpatterns,  # the customer portal (GET /api/v1/customers/{id}/portal_url hands out its links)
]

"""Lago's /webhook_endpoints for the calling service (research/lago-api.md §2.13).

Deviations: `signature_algo` defaults to "hmac" (Lago: "jwt"), and "jwt" is refused (422) unless the hub has its RSA
key (WEBHOOK_JWT_PRIVATE_KEY); each endpoint has its own HMAC key, returned to the owning service as `hmac_key`
(Lago shows one organization key in its UI).
"""
from __future__ import annotations

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.representations import ts
from apps.webhooks.models import EVENT_OBJECT_TYPES, WebhookEndpoint
from apps.webhooks.selectors import webhook_endpoint_get, webhook_endpoint_list
from apps.webhooks.services import webhook_endpoint_create, webhook_endpoint_delete, webhook_endpoint_update

from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.common import BlankableCharField, root_payload


class WebhookEndpointIn(serializers.Serializer):
    webhook_url = serializers.URLField(max_length=1024)
    signature_algo = serializers.ChoiceField(choices=WebhookEndpoint.SignatureAlgo.values, default="hmac")
    name = BlankableCharField(max_length=255)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(EVENT_OBJECT_TYPES)), allow_null=True, required=False
    )

    def validate_webhook_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("url_invalid", code="url_invalid")
        return value


def webhook_endpoint_out(endpoint: WebhookEndpoint) -> dict:
    return {
        "lago_id": str(endpoint.lago_id),
        "lago_organization_id": str(endpoint.service.lago_id),
        "webhook_url": endpoint.webhook_url,
        "signature_algo": endpoint.signature_algo,
        "name": endpoint.name or None,
        "event_types": endpoint.event_types,
        "hmac_key": endpoint.signing_secret,
        "created_at": ts(endpoint.created_at),
    }


def _values(request, *, partial: bool) -> dict:
    serializer = WebhookEndpointIn(data=root_payload(request, "webhook_endpoint"), partial=partial)
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    if "event_types" in values and values["event_types"] is not None:
        values["event_types"] = list(dict.fromkeys(values["event_types"]))
    return values


class WebhookEndpointListCreateView(APIView):
    @lago_operation("createWebhookEndpoint", request=WebhookEndpointIn, root="webhook_endpoint",
                    response="WebhookEndpoint")
    def post(self, request):
        endpoint = webhook_endpoint_create(service=request.auth.service, values=_values(request, partial=False))
        return Response({"webhook_endpoint": webhook_endpoint_out(endpoint)})

    @lago_operation("findAllWebhookEndpoints", response="WebhookEndpoint", plural="webhook_endpoints")
    def get(self, request):
        endpoints = webhook_endpoint_list(service=request.auth.service)
        return Response(paginate(request, endpoints, "webhook_endpoints", lambda items: [webhook_endpoint_out(e) for e in items]))


class WebhookEndpointDetailView(APIView):
    @lago_operation("findWebhookEndpoint", response="WebhookEndpoint", root="webhook_endpoint")
    def get(self, request, lago_id: str):
        endpoint = webhook_endpoint_get(service=request.auth.service, lago_id=lago_id)
        return Response({"webhook_endpoint": webhook_endpoint_out(endpoint)})

    @lago_operation("updateWebhookEndpoint", request=WebhookEndpointIn, root="webhook_endpoint", partial=True,
                    response="WebhookEndpoint")
    def put(self, request, lago_id: str):
        endpoint = webhook_endpoint_get(service=request.auth.service, lago_id=lago_id)
        endpoint = webhook_endpoint_update(endpoint_id=endpoint.pk, values=_values(request, partial=True))
        return Response({"webhook_endpoint": webhook_endpoint_out(endpoint)})

    @lago_operation("destroyWebhookEndpoint", response="WebhookEndpoint", root="webhook_endpoint")
    def delete(self, request, lago_id: str):
        endpoint = webhook_endpoint_get(service=request.auth.service, lago_id=lago_id)
        endpoint = webhook_endpoint_delete(endpoint_id=endpoint.pk)
        return Response({"webhook_endpoint": webhook_endpoint_out(endpoint)})


urlpatterns: list = [
    path("webhook_endpoints", WebhookEndpointListCreateView.as_view()),
    path("webhook_endpoints/<str:lago_id>", WebhookEndpointDetailView.as_view()),
]

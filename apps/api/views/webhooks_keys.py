"""The public key of the hub's JWT-signed webhooks (Lago's GET /webhooks/public_key and /webhooks/json_public_key).

Lago serves `Base64.encode64(RsaPublicKey.to_s)`: the PEM, base64 in lines of 60 characters; receivers decode it
and verify X-Lago-Signature (RS256) with it. Without WEBHOOK_JWT_PRIVATE_KEY the hub signs with HMAC only and
answers 404 here.
"""
from __future__ import annotations

from django.http import HttpResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import NotFound
from apps.webhooks.selectors import webhook_public_key_base64

from ..openapi import lago_operation


def _public_key() -> str:
    key = webhook_public_key_base64()
    if key is None:
        raise NotFound("webhook_jwt_public_key")
    return key


class PublicKeyView(APIView):
    @lago_operation("fetchPublicKey", response="WebhookPublicKeyText", errors=(404,),
                    description="The public key as text/plain (Lago's deprecated form of json_public_key).")
    def get(self, request):
        return HttpResponse(_public_key(), content_type="text/plain; charset=utf-8")


class JsonPublicKeyView(APIView):
    @lago_operation("fetchJsonPublicKey", response="WebhookPublicKey", root="webhook", errors=(404,))
    def get(self, request):
        return Response({"webhook": {"public_key": _public_key()}})


urlpatterns = [
    path("webhooks/public_key", PublicKeyView.as_view()),
    path("webhooks/json_public_key", JsonPublicKeyView.as_view()),
]

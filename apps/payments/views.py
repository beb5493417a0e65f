"""Stripe's webhooks, in front of dj-stripe's view (same URL, matched first in nexabilling/urls.py).

Two things dj-stripe's own view does not: the signature is checked with the encrypted copy of the endpoint secret
(payments.endpoint_secrets), and before anything is stored, so a forged request leaves no `WebhookEventTrigger` row
(dj-stripe stores one for every request that carries a Stripe-Signature header, valid or not). A request that passes
goes to dj-stripe unchanged: it verifies again, stores the trigger, records the Event and calls our handlers.
"""
from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from djstripe.enums import WebhookEndpointValidation
from djstripe.models import WebhookEndpoint, WebhookEventTrigger

from . import stripe_gateway as gateway
from .endpoint_secrets import stripe_endpoint_secret_get, stripe_endpoint_secret_seal

log = logging.getLogger(__name__)


# As dj-stripe's view: outside ATOMIC_REQUESTS, so its trigger row commits even when processing fails and re-raises.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class StripeWebhookView(View):
    def post(self, request: HttpRequest, uuid) -> HttpResponse:
        header = request.headers.get("stripe-signature", "")
        if not header:
            return HttpResponseBadRequest()
        endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
        if endpoint.secret:  # written by a bulk update, which sends no signal: encrypt it before use
            stripe_endpoint_secret_seal(endpoint_id=endpoint.pk)
        secret = stripe_endpoint_secret_get(endpoint_id=endpoint.pk)
        try:
            payload = request.body.decode(request.encoding or "utf-8")
        except UnicodeDecodeError:
            return HttpResponseBadRequest()
        if endpoint.djstripe_validation_method == WebhookEndpointValidation.verify_signature and not (
            gateway.webhook_signature_valid(payload=payload, header=header, secret=secret,
                                            tolerance=endpoint.djstripe_tolerance)
        ):
            log.warning("Stripe webhook refused: bad signature on endpoint %s", endpoint.pk)
            return HttpResponseBadRequest()
        endpoint.secret = secret  # in memory only, for dj-stripe's own check; never saved
        trigger = WebhookEventTrigger.from_request(request, webhook_endpoint=endpoint)
        if not trigger.valid:
            # Other validation methods (retrieve_event) decide inside dj-stripe: drop what it refused.
            WebhookEventTrigger.objects.filter(pk=trigger.pk).delete()
            return HttpResponseBadRequest()
        return HttpResponse(str(trigger.id))

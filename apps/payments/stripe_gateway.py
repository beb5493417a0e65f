"""The only module that calls Stripe for the hub (dj-stripe does its own syncing).

Each call builds a StripeClient from settings (key, pinned API version, base URL); nothing
global is flipped. Ints and strs cross the boundary: amounts in minor units, currencies upper
case outside, lower case on the wire. Creates carry idempotency keys chosen by the caller
from its rows. The code absorbs the differences between Stripe and localstripe noted in
research/stripe.md: declines without `error.payment_intent`, 3DS returned as a 200
`requires_action`, `latest_charge` inlined.
"""
from __future__ import annotations

from dataclasses import dataclass

import stripe
from django.conf import settings


class StripeGatewayError(Exception):
    """Stripe refused the call; retrying the same call will not help."""


class StripeUnavailable(StripeGatewayError):
    """Network error, rate limit or 5xx; safe to retry with the same idempotency key."""


@dataclass(frozen=True)
class ChargeResult:
    status: str  # succeeded | processing | requires_action | failed
    payment_intent_id: str
    charge_id: str = ""
    amount_cents: int = 0  # received, minor units
    failure_code: str = ""
    failure_message: str = ""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    status: str = ""  # open | complete | expired
    payment_status: str = ""  # paid | unpaid | no_payment_required
    payment_intent_id: str = ""
    setup_intent_id: str = ""
    amount_total: int = 0  # minor units (payment mode)


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str  # succeeded | pending | failed | canceled
    amount_cents: int


# settings.py's default test key: valid-looking, accepted by localstripe, useless on real Stripe.
PLACEHOLDER_KEY = "sk_test_" + "0" * 24


def is_configured() -> bool:
    """Return False while the secret key is the placeholder (dev, other apps' tests): nothing is sent."""
    return _api_key() not in ("", PLACEHOLDER_KEY)


def _api_key() -> str:
    return settings.STRIPE_LIVE_SECRET_KEY if settings.STRIPE_LIVE_MODE else settings.STRIPE_TEST_SECRET_KEY


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        _api_key(),
        stripe_version=settings.STRIPE_API_VERSION,
        base_addresses={"api": settings.STRIPE_API_BASE},
        # Safe with idempotency keys on real Stripe; tests set 0 (localstripe ignores the keys).
        max_network_retries=getattr(settings, "STRIPE_MAX_NETWORK_RETRIES", 2),
    )


def _id(value) -> str:
    """Return the id of an expandable field (localstripe inlines objects Stripe sends as ids)."""
    if value is None:
        return ""
    return str(getattr(value, "id", value))


def _translate(exc: stripe.StripeError) -> StripeGatewayError:
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return StripeUnavailable(str(exc))
    if isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500:
        return StripeUnavailable(str(exc))
    return StripeGatewayError(str(exc.user_message or exc))


def customer_create(*, name: str, email: str, hub_customer_id: int, external_id: str, idempotency_key: str) -> str:
    """Create a Stripe customer and return its id."""
    params: dict = {"name": name, "metadata": {"nexa_customer_id": str(hub_customer_id), "external_id": external_id}}
    if email:
        params["email"] = email
    try:
        return _client().v1.customers.create(params=params, options={"idempotency_key": idempotency_key}).id
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def customer_default_payment_method(*, customer_id: str) -> str:
    """Return the customer's default payment method id in Stripe ('' if none)."""
    try:
        customer = _client().v1.customers.retrieve(customer_id).to_dict()
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
    return _id(_dig_id((customer.get("invoice_settings") or {}).get("default_payment_method")))


def customer_default_payment_method_set(*, customer_id: str, payment_method_id: str) -> None:
    try:
        _client().v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": payment_method_id}}
        )
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def payment_method_detach(*, payment_method_id: str) -> dict:
    """Detach a saved payment method from its customer; return Stripe's object (a dict) for dj-stripe's mirror."""
    try:
        return _client().v1.payment_methods.detach(payment_method_id).to_dict()
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def setup_intent_payment_method(*, setup_intent_id: str) -> str:
    """Return the payment method a succeeded SetupIntent saved ('' otherwise)."""
    try:
        intent = _client().v1.setup_intents.retrieve(setup_intent_id)
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
    return _id(intent.payment_method) if intent.status == "succeeded" else ""


def _session(obj) -> CheckoutSession:
    return CheckoutSession(
        id=obj.id,
        url=obj.url or "",
        status=obj.status or "",
        payment_status=obj.payment_status or "",
        payment_intent_id=_id(obj.payment_intent),
        setup_intent_id=_id(obj.setup_intent),
        amount_total=int(getattr(obj, "amount_total", None) or 0),
    )


def checkout_setup_create(*, customer_id: str, success_url: str, cancel_url: str, idempotency_key: str) -> CheckoutSession:
    """Create a Checkout Session in setup mode: the customer saves a card for off-session charges."""
    params = {
        "mode": "setup",
        "customer": customer_id,
        "payment_method_types": ["card"],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {"nexa_purpose": "setup"},
    }
    try:
        return _session(_client().v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key}))
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def checkout_payment_create(
    *,
    customer_id: str,
    amount_cents: int,
    currency: str,
    description: str,
    success_url: str,
    cancel_url: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> CheckoutSession:
    """Create a Checkout Session in payment mode for one amount (minor units)."""
    params = {
        "mode": "payment",
        "customer": customer_id,
        "payment_method_types": ["card"],
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency.lower(),
                    "unit_amount": amount_cents,
                    "product_data": {"name": description},
                },
            }
        ],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
        "client_reference_id": metadata.get("attempt_id", ""),
    }
    try:
        return _session(_client().v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key}))
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def checkout_session_get(*, session_id: str) -> CheckoutSession:
    try:
        return _session(_client().v1.checkout.sessions.retrieve(session_id))
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def checkout_session_expire(*, session_id: str) -> CheckoutSession:
    """Expire an open Checkout Session so its link takes no more money; return the session as Stripe has it then.

    A session that is no longer open (the customer paid it meanwhile, or it expired) is not an error: Stripe
    refuses the expiry with a 400 and the session is read back, so the caller sees `complete` and records it.
    """
    client = _client()
    try:
        return _session(client.v1.checkout.sessions.expire(session_id))
    except stripe.InvalidRequestError:
        try:
            return _session(client.v1.checkout.sessions.retrieve(session_id))
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def _charge_result(intent: dict) -> ChargeResult:
    """Map a PaymentIntent (plain dict) to a ChargeResult."""
    status = intent.get("status")
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        amount = intent.get("amount_received") or intent.get("amount") or 0
        return ChargeResult("succeeded", intent["id"], _id(_dig_id(intent.get("latest_charge"))), amount_cents=int(amount))
    if status == "requires_action":
        return ChargeResult("requires_action", intent["id"], failure_code="authentication_required")
    if status in ("processing", "requires_confirmation", "requires_capture"):
        return ChargeResult("processing", intent["id"])
    # requires_payment_method (a decline) or canceled
    code = error.get("decline_code") or error.get("code") or status or "failed"
    return ChargeResult("failed", intent["id"], failure_code=code, failure_message=error.get("message") or "")


def _dig_id(value) -> str:
    if isinstance(value, dict):
        return value.get("id", "")
    return value or ""


def charge_off_session(
    *, customer_id: str, payment_method_id: str, amount_cents: int, currency: str, metadata: dict[str, str], idempotency_key: str
) -> ChargeResult:
    """Charge a saved card without the customer present. Declines return a failed result, not an exception."""
    client = _client()
    params = {
        "amount": amount_cents,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,  # localstripe ignores the customer's default
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        intent = client.v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.CardError as exc:
        err = exc.error
        pi_id = _id(getattr(err, "payment_intent", None))  # real Stripe
        if not pi_id and getattr(err, "charge", None):  # localstripe: find the PI through the charge
            try:
                pi_id = _id(client.v1.charges.retrieve(err.charge).payment_intent)
            except stripe.StripeError as inner:
                raise _translate(inner) from inner
        if not pi_id:
            raise StripeGatewayError(f"declined without a PaymentIntent: {exc}") from exc
        if exc.code == "authentication_required":
            return ChargeResult("requires_action", pi_id, failure_code="authentication_required")
        code = getattr(err, "decline_code", None) or exc.code or "card_declined"
        return ChargeResult("failed", pi_id, failure_code=code, failure_message=exc.user_message or str(exc))
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
    return _charge_result(intent.to_dict())


def payment_intent_get(*, payment_intent_id: str) -> ChargeResult:
    """Re-read a PaymentIntent (the sweep for missed webhooks)."""
    try:
        return _charge_result(_client().v1.payment_intents.retrieve(payment_intent_id).to_dict())
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def charge_result_from_event_object(obj: dict) -> ChargeResult:
    """Read a PaymentIntent dict from a verified webhook payload."""
    return _charge_result(obj)


def refund_create(*, payment_intent_id: str, amount_cents: int, idempotency_key: str, metadata: dict[str, str]) -> RefundResult:
    """Refund part of a PaymentIntent (amount in minor units). The caller checks over-refunds."""
    params = {"payment_intent": payment_intent_id, "amount": amount_cents, "metadata": metadata}
    try:
        refund = _client().v1.refunds.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
    return RefundResult(id=refund.id, status=refund.status, amount_cents=int(refund.amount))


def webhook_signature_valid(*, payload: str, header: str, secret: str, tolerance: int) -> bool:
    """Check a Stripe-Signature header against the payload, as Stripe signs it (timestamp within `tolerance` s)."""
    if not secret or not header:
        return False
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
    except stripe.SignatureVerificationError:
        return False
    return True

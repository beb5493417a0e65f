"""dj-stripe webhook receivers. dj-stripe has verified the signature, stored the Event (its id
is unique, so a redelivery never reaches here twice) and synced the object; these only hand
the verified payload to payments.services, inside dj-stripe's transaction."""
from __future__ import annotations

from djstripe.event_handlers import djstripe_receiver

from . import services


@djstripe_receiver(
    ["payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.requires_action", "payment_intent.processing"]
)
def on_payment_intent(sender, event, **kwargs) -> None:
    services.payment_intent_event_apply(
        event_id=event.id,
        event_type=event.type,
        event_created=_unix(event),
        payment_intent=event.data["object"],
    )


@djstripe_receiver(["checkout.session.completed", "checkout.session.async_payment_succeeded"])
def on_checkout_session(sender, event, **kwargs) -> None:
    services.checkout_session_event_apply(
        event_id=event.id, event_type=event.type, event_created=_unix(event), session=event.data["object"]
    )


def _unix(event) -> int:
    # dj-stripe stores `created` as an aware datetime.
    return int(event.created.timestamp())

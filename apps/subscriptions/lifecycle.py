"""Who is told, once it is committed, that a subscription change makes a customer billable now.

Lago bills at once when a pay-in-advance subscription starts, on an upgrade and on a termination, not at the
next period close. Invoicing bills subscriptions, so it depends on this app and not the other way round: it
registers its listener here (`InvoicingConfig.ready`), and subscription services announce what happened.
"""
from __future__ import annotations

from typing import Callable, Protocol

from django.db import transaction


class BillingListener(Protocol):
    def __call__(self, *, customer_id: int, reason: str) -> None: ...


_listeners: list[BillingListener] = []


def billing_listen(listener: BillingListener) -> None:
    """Register a listener (idempotent): called after commit with the customer to bill now."""
    if listener not in _listeners:
        _listeners.append(listener)


def billing_due_announce(*, customer_id: int, reason: str) -> None:
    """Tell the listeners, once the caller's transaction commits (never if it rolls back), that `customer_id`
    has something to bill now. `reason`: Lago's invoicing reason (subscription_starting, upgrading,
    subscription_terminating)."""

    def tell(listeners: list[Callable] = list(_listeners)) -> None:
        for listener in listeners:
            listener(customer_id=customer_id, reason=reason)

    transaction.on_commit(tell)


# Told inside the transaction that deletes a service's view of a customer (`customer_link_delete`), so what a
# listener writes (invoicing terminates the link's wallets, as Lago does) commits or rolls back with the deletion.
_link_deleted_listeners: list[Callable[..., None]] = []


def link_deleted_listen(listener: Callable[..., None]) -> None:
    """Register a listener (idempotent), called as `listener(link_id=...)` with the link locked."""
    if listener not in _link_deleted_listeners:
        _link_deleted_listeners.append(listener)


def link_deleted_announce(*, link_id: int) -> None:
    """Run every listener now, in the caller's transaction."""
    for listener in list(_link_deleted_listeners):
        listener(link_id=link_id)

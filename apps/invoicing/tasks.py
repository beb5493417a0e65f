"""Thin Celery tasks around the close and finalization services (idempotent: reruns bill nothing)."""
from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def periods_close_task(as_of: str | None = None) -> int:
    """The scheduled close (now), or staff's close as of an ISO instant (the admin's "Run a close"): in this
    worker, or split into INVOICE_CLOSE_RANGES ranges that the `close` queue's workers bill (docs/deployment.md)."""
    from django.conf import settings
    from django.utils.dateparse import parse_datetime

    from .close import periods_close
    from .close.distributed import close_distributed_start

    when = parse_datetime(as_of) if as_of else None
    if settings.INVOICE_CLOSE_RANGES > 1 and not settings.CELERY_TASK_ALWAYS_EAGER:
        return close_distributed_start(ranges=settings.INVOICE_CLOSE_RANGES, as_of=when).pk
    return periods_close(as_of=when).pk


@shared_task(acks_late=True)
def close_range_task(range_id: int) -> int | None:
    """Bill one range of a distributed close, if no other worker holds it (idempotent)."""
    from .close.distributed import close_range_run

    piece = close_range_run(range_id=range_id)
    return piece.pk if piece is not None else None


@shared_task(acks_late=True)
def close_ranges_sweep_task() -> int:
    """Hand out again the ranges of a distributed close whose worker died or whose message was lost."""
    from .close.distributed import close_ranges_sweep

    return close_ranges_sweep()


@shared_task(acks_late=True)
def invoices_finalize_due_task() -> int:
    from .close import invoices_finalize_due

    return invoices_finalize_due()


@shared_task(acks_late=True)
def subscriptions_activate_due_task() -> int:
    from apps.subscriptions.services import subscription_activate_due

    return subscription_activate_due()


@shared_task(acks_late=True)
def customer_close_task(customer_id: int) -> tuple[int, int]:
    """Bill one customer now (Lago's immediate invoices: a pay-in-advance start, an upgrade, a termination)."""
    from django.utils import timezone

    from .close import close_customer

    return close_customer(customer_id=customer_id, as_of=timezone.now())


@shared_task(acks_late=True)
def wallets_expire_task() -> int:
    """Terminate the wallets whose expiration has passed (idempotent)."""
    from .wallets import wallets_expire

    return wallets_expire()


@shared_task(acks_late=True)
def usage_checks_run_task() -> int:
    """Run the usage checks ingest asked for (progressive billing, alerts); beat sweeps what a lost message left."""
    from .usage_checks import usage_checks_run

    return usage_checks_run()


@shared_task(acks_late=True)
def wallet_balance_check_task(wallet_id: int) -> int:
    """Check a wallet's ongoing balance: the depletion webhook, the threshold top-up rule (idempotent)."""
    from .top_ups import wallet_balance_check

    return len(wallet_balance_check(wallet_id=wallet_id))


@shared_task(acks_late=True)
def wallets_recurring_top_up_task() -> dict:
    """Recurring top-ups: expire rules, fire the interval rules due today, check every active wallet's ongoing
    balance (depletion, threshold rules; idempotent)."""
    from .top_ups import wallets_recurring_top_up

    return wallets_recurring_top_up()

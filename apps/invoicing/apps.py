from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "apps.invoicing"
    label = "invoicing"

    def ready(self) -> None:
        from apps.subscriptions.lifecycle import billing_listen, link_deleted_listen

        from . import tasks  # noqa: F401  (registers the tasks sent by name: apps.core.queue)

        billing_listen(_bill_now)
        link_deleted_listen(_link_wallets_terminate)


def _link_wallets_terminate(*, link_id: int) -> None:
    """A customer deleted by its service: its wallets with that service end (Lago's Customers::DestroyService),
    their unused credit forfeited as any termination's."""
    from .wallets import wallets_terminate_for_link

    wallets_terminate_for_link(link_id=link_id)


def _bill_now(*, customer_id: int, reason: str) -> None:
    """Bill a customer as soon as a subscription change is committed, as Lago does (its `reason`): on a Celery
    worker when a broker is configured, else in-process (eager). The periodic close remains the safety net:
    if this fails or is lost, the next run bills the same periods, once."""
    from .tasks import customer_close_task

    customer_close_task.delay(customer_id)

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "apps.ledger"
    label = "ledger"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers the tasks its services send by name, apps.core.queue)

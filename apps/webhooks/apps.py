from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers the tasks its services send by name, apps.core.queue)

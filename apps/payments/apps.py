from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"

    def ready(self) -> None:
        from . import stripe_handlers  # noqa: F401  (connects the dj-stripe webhook receivers)
        from . import tasks  # noqa: F401  (registers the tasks its services send by name, apps.core.queue)

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"

    def ready(self) -> None:
        from . import stripe_handlers  # noqa: F401  (connects the dj-stripe webhook receivers)

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"

    def ready(self) -> None:
        from apps.invoicing.lifecycle import InvoiceListener, invoices_listen

        from . import services
        from . import stripe_handlers  # noqa: F401  (connects the dj-stripe webhook receivers)
        from . import tasks  # noqa: F401  (registers the tasks its services send by name, apps.core.queue)

        # dj-stripe's endpoint model is not the hub's, so a signal is the one way to see every save of a secret.
        from django.db.models.signals import post_save
        from djstripe.models import WebhookEndpoint

        from .endpoint_secrets import on_endpoint_saved

        post_save.connect(on_endpoint_saved, sender=WebhookEndpoint, dispatch_uid="payments-stripe-secret-seal")

        invoices_listen(InvoiceListener(
            finalized=services.payment_invoice_finalized,
            voided=services.payment_invoice_voided,
            credit_note_created=services.payment_credit_note_created,
        ))

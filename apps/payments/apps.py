from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"

    def ready(self) -> None:
        from apps.invoicing.lifecycle import InvoiceListener, invoices_listen

        from . import services
        from . import stripe_handlers  # noqa: F401  (connects the dj-stripe webhook receivers)
        from . import tasks  # noqa: F401  (registers the tasks its services send by name, apps.core.queue)

        invoices_listen(InvoiceListener(
            finalized=services.payment_invoice_finalized,
            voided=services.payment_invoice_voided,
            credit_note_created=services.payment_credit_note_created,
        ))

"""Pay an invoice in tests that are not about Stripe: the payment is recorded as the hub records one Stripe reports
(`apps.payments.services._payment_record`, invoice locked), so every invariant and posting sees a real payment."""
from __future__ import annotations

import itertools

from django.db import transaction

from apps.invoicing.models import Invoice
from apps.payments import services
from apps.payments.models import Payment, PaymentAttempt

_ids = itertools.count(1)


def pay(invoice: Invoice, amount_cents: int | None = None) -> Payment:
    """Record a succeeded payment of `amount_cents` (default: what is due) on `invoice`; return it."""
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        amount = locked.total_due_amount_cents if amount_cents is None else amount_cents
        n = next(_ids)
        attempt = PaymentAttempt.objects.create(
            invoice=locked, attempt_number=locked.payment_attempts.count() + 1,
            kind=PaymentAttempt.Kind.OFF_SESSION, status=PaymentAttempt.Status.SUCCEEDED, amount_cents=amount,
            currency=locked.currency, stripe_payment_intent_id=f"pi_test_{invoice.pk}_{n}")
        payment = services._payment_record(invoice=locked, attempt=attempt, charge_id=f"ch_test_{invoice.pk}_{n}",
                                           amount_cents=amount)
    invoice.refresh_from_db()
    return payment

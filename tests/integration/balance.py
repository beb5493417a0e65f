"""The balance invariant (issue 15, I1) as these tests read it, per customer and currency, from the rows:

flows = Σ finalized invoices' sub_total_including_taxes (voided with credit notes counted as finalized) − Σ credit notes' total less their voided credit, less what
        they offset on invoices voided since − Σ payments (every Payment: a PaymentIntent Stripe reported succeeded) + Σ succeeded refunds
owed  = Σ finalized invoices' (total − total_paid − offset)   (total already net of credit notes' and customer credit;
        offset: what credit notes issued on it while due settled)
        − Σ credit notes' balance (credit available) − Σ credit-note refund amounts not refunded yet
        − Σ customer credits' balance (available, or being refunded)
"""
from __future__ import annotations

from django.db.models import Q, Sum

from apps.invoicing.models import CreditNote, CustomerCredit, Invoice
from apps.payments.models import Payment, Refund


def _sum(queryset, field: str) -> int:
    return queryset.aggregate(total=Sum(field))["total"] or 0


def balance(customer_id: int, currency: str = "CAD") -> tuple[int, int]:
    """Return (flows, owed); the invariant holds when they are equal."""
    invoices = Invoice.objects.filter(Q(status=Invoice.Status.FINALIZED)
                                      | Q(status=Invoice.Status.VOIDED, voided_with_credit_notes=True),
                                      customer_id=customer_id, currency=currency)
    notes = CreditNote.objects.filter(customer_id=customer_id, currency=currency)
    refunds = Refund.objects.filter(Q(credit_note__customer_id=customer_id) | Q(customer_credit__customer_id=customer_id),
                                    currency=currency)
    flows = (_sum(invoices, "sub_total_including_taxes_amount_cents") - _sum(notes, "total_amount_cents")
             + _sum(notes, "voided_amount_cents")
             + _sum(notes.filter(invoice__status=Invoice.Status.VOIDED, invoice__voided_with_credit_notes=False),
                    "offset_amount_cents")
             - _sum(Payment.objects.filter(invoice__customer_id=customer_id, currency=currency), "amount_cents")
             + _sum(refunds.filter(status=Refund.Status.SUCCEEDED), "amount_cents"))
    refund_owed = sum(
        note.refund_amount_cents - _sum(Refund.objects.filter(credit_note=note, status="succeeded"), "amount_cents")
        for note in notes)
    owed = (_sum(invoices, "total_amount_cents") - _sum(invoices, "total_paid_amount_cents")
            - _sum(invoices, "offset_amount_cents")
            - _sum(notes.filter(credit_status="available"), "balance_amount_cents") - refund_owed
            - _sum(CustomerCredit.objects.filter(customer_id=customer_id, currency=currency,
                                                 status__in=["available", "refunding"]), "balance_amount_cents"))
    return flows, owed

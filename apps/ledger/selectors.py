"""Reads of the ledger: the reconciliation report."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, QuerySet

from apps.ledger.models import LedgerPosting

ATTENTION = (LedgerPosting.Status.MISMATCH, LedgerPosting.Status.FAILED)


@dataclass(frozen=True)
class Reconciliation:
    counts: dict[str, int]  # status -> number of postings
    rows: list[LedgerPosting]  # mismatched and failed postings, oldest first


def ledger_posting_list_attention() -> QuerySet[LedgerPosting]:
    """Return postings an accountant must look at (mismatch, failed), with their documents."""
    return (LedgerPosting.objects.filter(status__in=ATTENTION)
            .select_related("invoice__customer", "credit_note__customer").order_by("id"))


def ledger_reconciliation(*, limit: int = 500) -> Reconciliation:
    """Return posting counts per status and up to `limit` postings needing attention."""
    counts = {row["status"]: row["n"] for row in
              LedgerPosting.objects.values("status").annotate(n=Count("id")).order_by("status")}
    return Reconciliation(counts=counts, rows=list(ledger_posting_list_attention()[:limit]))

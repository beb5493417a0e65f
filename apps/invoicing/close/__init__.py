"""Period close: bill every subscription period that has ended, exactly once.

Exactly once by construction:
- every fee has a deterministic `fee_key` per (subscription, charge, period), unique in the database;
- a customer is billed inside one transaction holding a `SELECT ... FOR UPDATE` on its Customer row,
  and the plan is computed *after* taking the lock, skipping keys already billed;
- one invoice per (customer, billing day, currency): the close appends to that day's draft, or opens
  a new invoice whose `close_key` is unique.
So two workers closing at once serialize per customer, a worker killed mid-customer rolls back, and a
rerun finds nothing left to bill.

Day arithmetic is in the customer's timezone (apps/subscriptions/periods.py); money via rating.py and apps/catalog/taxes.py.

Stages, one module each: planning (what is due), usage (cut-offs, fence, totals), pricing (charges from usage),
writing (one writer for a batch of customers or one), pipeline (a run: chunks overlapping on threads), distributed
(a run split into ranges of customers that Celery workers claim), refresh (drafts re-planned and finalized when
their grace period ends).
"""
from __future__ import annotations

from .pipeline import periods_close
from .planning import current_usage_lines, customers_to_close
from .refresh import invoice_refresh, invoices_finalize_due
from .usage import UsageFetcher, WindowsNotFenced, usage_cutoffs_advance
from .writing import close_batch, close_customer

__all__ = [
    "UsageFetcher",
    "WindowsNotFenced",
    "close_batch",
    "close_customer",
    "current_usage_lines",
    "customers_to_close",
    "periods_close",
    "invoice_refresh",
    "invoices_finalize_due",
    "usage_cutoffs_advance",
]

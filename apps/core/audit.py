"""Who and why, for the money audit's triggers (apps/audit): a context around a manual change."""
from __future__ import annotations

from contextlib import AbstractContextManager

import pghistory


def audit_context(*, actor: str, reason: str, **extra: str) -> AbstractContextManager:
    """Attach `actor` and `reason` to every audit event the enclosed statements cause (nested contexts merge)."""
    return pghistory.context(actor=actor, reason=reason, **extra)


def audit_context_add(**metadata: object) -> None:
    """Add `metadata` to the audit context already open (a request's, from pghistory's middleware); outside one,
    nothing happens: the caller is then not a request, and whoever opened no context said nothing either."""
    pghistory.context(**metadata)

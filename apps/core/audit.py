"""Who and why, for the money audit's triggers (apps/audit): a context around a manual change."""
from __future__ import annotations

from contextlib import AbstractContextManager

import pghistory


def audit_context(*, actor: str, reason: str, **extra: str) -> AbstractContextManager:
    """Attach `actor` and `reason` to every audit event the enclosed statements cause (nested contexts merge)."""
    return pghistory.context(actor=actor, reason=reason, **extra)

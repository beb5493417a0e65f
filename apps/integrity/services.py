"""Run the billing invariants and record what they found (CheckRun, CheckViolation) for staff."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from django.db import transaction
from django.utils import timezone

from .invariants import INVARIANTS, Violation, check_all
from .models import CheckRun, CheckViolation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    violations: list[Violation]
    run: CheckRun | None  # None when not recorded
    note: str = ""  # what could not be checked (the Odoo comparison when Odoo did not answer)

    @property
    def counts(self) -> dict[str, int]:
        counts = {code: 0 for code in INVARIANTS}
        for violation in self.violations:
            counts[violation.code] += 1
        return counts


def billing_check_run(
    *, customer_ids: Iterable[int] | None = None, record: bool = True, odoo: bool = False
) -> CheckResult:
    """Run I1-I6 (for `customer_ids`, or everyone) and, with `record`, store the run and its violations.

    Read-only on billing rows; safe to run at any time and concurrently. With `odoo`, I1 also compares each
    customer's balance with its Odoo receivable; if Odoo cannot be reached, the rest is still checked and
    the run's note says so.
    """
    from apps.ledger.odoo_client import OdooError, get_odoo_client

    customer_ids = None if customer_ids is None else sorted({int(pk) for pk in customer_ids})
    started = timezone.now()
    note = ""
    try:
        violations = check_all(customer_ids=customer_ids, odoo_client=get_odoo_client() if odoo else None)
    except OdooError as exc:
        logger.warning("billing check: Odoo comparison skipped: %s", exc)
        note = f"Odoo comparison skipped: {exc}"
        violations = check_all(customer_ids=customer_ids)
    result = CheckResult(violations=violations, run=None, note=note)
    if not record:
        return result
    with transaction.atomic():
        run = CheckRun.objects.create(
            started_at=started, finished_at=timezone.now(), violations_count=len(violations),
            counts=result.counts, customer_ids=customer_ids, note=note,
        )
        CheckViolation.objects.bulk_create(
            CheckViolation(
                run=run, code=v.code, rule=v.rule, message=v.message, customer_id=v.customer_id,
                invoice_id=v.invoice_id, invoice_number=v.invoice_number or "", currency=v.currency or "",
                expected=v.expected, actual=v.actual, unit=v.unit, reference=v.reference[:255],
            )
            for v in violations
        )
    return CheckResult(violations=violations, run=run, note=note)

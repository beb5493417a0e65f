"""The usage checks ingest asks for (`usage_usagecheck`, one row per watched subscription): claimed by deleting
them, each run on its own (progressive billing, then alerts); one failing goes back for the next run."""
from __future__ import annotations

import logging

from django.db import connection

from .alerts import alerts_evaluate
from .progressive import progressive_billing_check

logger = logging.getLogger(__name__)


def usage_checks_run(*, limit: int = 500, older_than_seconds: int = 0) -> int:
    """Claim due usage checks (ingest's rows) and run them; return how many ran. Each subscription's check is its
    own transaction; one failing is logged and left for the next run (its row is put back)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM usage_usagecheck WHERE subscription_id IN (
                SELECT subscription_id FROM usage_usagecheck
                 WHERE requested_at <= now() - make_interval(secs => %s)
                 ORDER BY requested_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING subscription_id, requested_at
            """,
            [older_than_seconds, limit],
        )
        claimed = cursor.fetchall()
    for subscription_id, requested_at in claimed:
        try:
            usage_check_run(subscription_id=subscription_id)
        except Exception:
            logger.exception("usage check of subscription %s failed; put back", subscription_id)
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO usage_usagecheck (subscription_id, requested_at) VALUES (%s, %s)"
                    " ON CONFLICT (subscription_id) DO NOTHING",
                    [subscription_id, requested_at],
                )
    return len(claimed)


def usage_check_run(*, subscription_id: int) -> None:
    """Everything usage crossing a line triggers for one subscription: progressive billing, then alerts (which then
    count the usage just invoiced as lifetime usage, as Lago's do)."""
    progressive_billing_check(subscription_id=subscription_id)
    alerts_evaluate(subscription_id=subscription_id)

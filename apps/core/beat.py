"""One active Celery beat, however many are started: the scheduler of `celery beat` (settings.CELERY_BEAT_SCHEDULER).

django-celery-beat keeps the schedule in the database but does not stop two beats from both sending it, and a
second beat (a deploy that starts one per machine, a restart that overlaps the old process) doubles every
periodic job. The tasks are idempotent, so a double is waste rather than wrong money, but the close, the ledger
sweep and the webhook sweep would all run twice as often and contend for the same locks.

Each beat asks PostgreSQL for a session-level advisory lock on a connection of its own, held for the life of the
process. The holder schedules; the others stand by and ask again every `BEAT_STANDBY_SECONDS`. When the leader
dies, PostgreSQL ends its session and releases the lock, and a standby takes over on its next try. The lock needs
a direct connection (a session lock does not survive PgBouncer in transaction mode): `BEAT_LOCK_DATABASE_URL`,
else the default database.
"""
from __future__ import annotations

import logging
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

# pg_try_advisory_lock's key space is shared by the whole database: a fixed key of the hub's own ("nexabeat").
BEAT_LOCK_KEY = int.from_bytes(b"nexabeat", "big") & 0x7FFF_FFFF_FFFF_FFFF


def _lock_connection_params() -> dict:
    url = getattr(settings, "BEAT_LOCK_DATABASE_URL", "")
    if url:
        return {"conninfo": url}
    return connections["default"].get_connection_params()


class GuardedScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler, active only while this process holds the beat lock."""

    def __init__(self, *args, **kwargs):
        self._lock_connection: psycopg.Connection | None = None
        self._standing_by = False
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        if not self._leading():
            return float(settings.BEAT_STANDBY_SECONDS)
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._let_go()

    def _leading(self) -> bool:
        if self._lock_connection is not None:
            try:
                self._lock_connection.execute("SELECT 1")
                return True
            except psycopg.Error:
                # The session ended (server restart, network): the lock went with it and another beat may hold
                # it now. Stand by until it can be taken again.
                logger.warning("beat: lost the connection holding the beat lock; standing by")
                self._let_go()
        try:
            candidate = psycopg.connect(**_lock_connection_params(), autocommit=True, connect_timeout=10)
        except psycopg.Error:
            logger.warning("beat: cannot reach the database for the beat lock; standing by", exc_info=True)
            return False
        taken = candidate.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY]).fetchone()[0]
        if not taken:
            candidate.close()
            if not self._standing_by:
                logger.info("beat: another beat holds the beat lock; standing by")
                self._standing_by = True
            return False
        self._lock_connection, self._standing_by = candidate, False
        # Read the schedule again, through django-celery-beat's own periodic full re-read (as if its last one
        # were long ago): the previous leader's last runs are in the database, not in this process.
        self._last_full_sync = datetime.min
        logger.info("beat: holding the beat lock; scheduling")
        return True

    def _let_go(self) -> None:
        if self._lock_connection is not None:
            try:
                self._lock_connection.close()
            except psycopg.Error:
                pass
            self._lock_connection = None

"""Optional read replica (`DATABASE_REPLICA_URL`): safe-method requests read from it, writes never do.

What reads from the replica: the ORM reads of GET and HEAD requests to the API and the admin, unless the same
caller (API key, or admin session) wrote within `DATABASE_REPLICA_STICKY_SECONDS` — an app that creates a
customer and reads it back at once, or staff saving a form and landing on the list, read their own writes from
the primary whatever the replica's lag. Everything else reads from the primary: Celery tasks (the close, postings,
webhooks), unsafe requests, any read inside a transaction on the primary (a read under a lock must see the
locked rows), and raw SQL (it names its connection). The replica's sessions are read-only
(`default_transaction_read_only`), so a write routed there by mistake fails loudly instead of diverging.

Stickiness lives in Django's cache: with several web processes, `CACHE_URL` must name a shared one (Redis), or a
write served by one process is not seen by the others' routing (docs/deployment.md).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"
_reads_from_replica: ContextVar[bool] = ContextVar("reads_from_replica", default=False)
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_ROUTED_PREFIXES = ("/api/", "/admin/")


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def replica_reads():
    """ORM reads in this block go to the replica (when one is configured and no primary transaction is open)."""
    token = _reads_from_replica.set(True)
    try:
        yield
    finally:
        _reads_from_replica.reset(token)


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        if not _reads_from_replica.get() or not replica_configured():
            return None
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        return REPLICA

    def db_for_write(self, model, **hints):
        # Explicit: without it Django writes an instance back to the database it was read from.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, first, second, **hints):
        return {first._state.db, second._state.db} <= {DEFAULT_DB_ALIAS, REPLICA, None}

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db != REPLICA  # the replica follows the primary's schema by replication


def _caller_key(request) -> str | None:
    credential = request.META.get("HTTP_AUTHORIZATION") or request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not credential:
        return None
    return "replica-sticky:" + hashlib.sha256(credential.encode()).hexdigest()


class ReplicaReadsMiddleware:
    """Serve safe API and admin requests from the replica, except for a caller who wrote moments ago."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replica_configured() or not request.path.startswith(_ROUTED_PREFIXES):
            return self.get_response(request)
        key = _caller_key(request)
        if request.method not in _SAFE_METHODS:
            response = self.get_response(request)
            key = key or _caller_key_after(request, response)
            if key:
                cache.set(key, 1, timeout=settings.DATABASE_REPLICA_STICKY_SECONDS)
            return response
        if key and cache.get(key):
            return self.get_response(request)
        with replica_reads():
            return self.get_response(request)


def _caller_key_after(request, response) -> str | None:
    """A login has no session cookie yet: key its stickiness on the session the response sets."""
    morsel = response.cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None or not morsel.value:
        return None
    return "replica-sticky:" + hashlib.sha256(morsel.value.encode()).hexdigest()

"""Writes of the audit app: the API's request log (its rows and their pruning)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from apps.customers.models import Service

from .models import ApiLog

PRUNE_BATCH = 10_000


def api_log_body(body: bytes) -> dict:
    """What GET /api_logs shows of a request body: the JSON object as sent, a marker past the size limit."""
    if len(body) > settings.API_LOG_MAX_BODY_BYTES:
        return {"truncated": True, "bytes": len(body)}
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {"unparsed": True, "bytes": len(body)}  # the view answered 400; the bytes are not worth keeping
    return data if isinstance(data, dict) else {"body": data}


def api_log_record(*, request_id: UUID, service: Service, api_key_prefix: str, http_method: str, request_path: str,
                   request_origin: str, client: str, http_status: int, body: bytes, logged_at: datetime) -> ApiLog:
    """Record one write request of `service` (after its response). One INSERT, outside the request's transaction."""
    return ApiLog.objects.create(
        request_id=request_id, service=service, api_key_prefix=api_key_prefix, api_version="v1",
        http_method=http_method.lower(), request_path=request_path[:4096], request_origin=request_origin[:512],
        client=client[:512], http_status=http_status, request_body=api_log_body(body), logged_at=logged_at)


def api_logs_prune(*, now: datetime | None = None) -> int:
    """Delete the API logs older than API_LOG_RETENTION_DAYS, in batches (short transactions); return how many.

    Idempotent: a second run, or two at once, deletes what is left.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.API_LOG_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(ApiLog.objects.filter(logged_at__lt=cutoff).order_by("logged_at").values_list("pk", flat=True)[
            :PRUNE_BATCH])
        if not ids:
            return deleted
        deleted += ApiLog.objects.filter(pk__in=ids).delete()[0]

"""Lago's bodies of the audit app's objects (apps/api renders them)."""
from __future__ import annotations

from datetime import UTC, datetime

from .models import ApiLog


def lago_time(moment: datetime) -> str:
    """Lago's `iso8601`: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_log_out(log: ApiLog) -> dict:
    return {
        "request_id": str(log.request_id),
        "client": log.client,
        "http_method": log.http_method,
        "http_status": log.http_status,
        "request_origin": log.request_origin,
        "request_path": log.request_path,
        "request_body": log.request_body,
        "request_response": None,  # not kept: the hub records requests, cheaply (docs/lago-deviations.yaml)
        "api_version": log.api_version,
        "logged_at": lago_time(log.logged_at),
        "created_at": lago_time(log.created_at),
    }

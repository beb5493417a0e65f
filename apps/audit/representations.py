"""Lago's bodies of the audit app's objects (apps/api renders them)."""
from __future__ import annotations

from datetime import UTC, datetime

from .activity import activity_id
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


def activity_log_out(row: dict, *, organization_id: str) -> dict:
    """Lago's ActivityLog from a row of `activity.ActivityPage` (the audit event and its context)."""
    return {
        "activity_id": activity_id(row["source"], row["pgh_id"]),
        "activity_type": row["activity_type"],
        "activity_source": row["activity_source"],
        "activity_object": row["activity_object"],
        "activity_object_changes": row["activity_object_changes"],
        "user_email": row["user_email"] or None,
        "resource_id": row["resource_id"],
        "resource_type": row["resource_type"],
        "external_customer_id": row["external_customer_id"],
        "external_subscription_id": row["external_subscription_id"],
        "organization_id": organization_id,
        "logged_at": lago_time(row["logged_at"]),
        "created_at": lago_time(row["logged_at"]),  # the event is written in the change's own statement
    }

"""Reads of the audit app, scoped by the calling service: its API logs."""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q, QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service

from .models import ApiLog


def api_log_list(*, service: Service, logged_from: datetime | None = None, logged_to: datetime | None = None,
                 http_methods: list[str] | None = None, http_statuses: list[int | str] | None = None,
                 api_version: str | None = None, request_paths: list[str] | None = None) -> QuerySet[ApiLog]:
    """The service's API logs, newest first, with Lago's filters (lago-api app/queries/api_logs_query.rb).

    http_statuses: codes, or "succeeded" (below 400) / "failed" (400 and up), which then replace the codes, as in
    Lago. request_paths: exact paths, or patterns where `*` matches anything (`/api/v1/customers/*`).
    """
    logs = ApiLog.objects.filter(service=service)
    if logged_from is not None:
        logs = logs.filter(logged_at__gte=logged_from)
    if logged_to is not None:
        logs = logs.filter(logged_at__lte=logged_to)
    if http_methods:
        logs = logs.filter(http_method__in=http_methods)
    if http_statuses:
        words = {status for status in http_statuses if isinstance(status, str)}
        if words:
            if "succeeded" in words:
                logs = logs.filter(http_status__lte=399)
            if "failed" in words:
                logs = logs.filter(http_status__gt=399)
        else:
            logs = logs.filter(http_status__in=http_statuses)
    if api_version:
        logs = logs.filter(api_version=api_version)
    if request_paths:
        match = Q()
        for pattern in request_paths:
            if "*" in pattern:
                match |= Q(request_path__regex="^" + ".*".join(_re_escape(part) for part in pattern.split("*")) + "$")
            else:
                match |= Q(request_path=pattern)
        logs = logs.filter(match)
    return logs.order_by("-logged_at", "-id")


def _re_escape(text: str) -> str:
    # PostgreSQL's ARE: escape every non-alphanumeric character (Python's re.escape leaves some PostgreSQL reads).
    return "".join(char if char.isalnum() else "\\" + char for char in text)


def api_log_get(*, service: Service, request_id: UUID | str) -> ApiLog:
    try:
        return api_log_list(service=service).get(request_id=request_id)
    except (ApiLog.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("api_log") from None

"""API logs and activity logs (Lago's GET /api_logs, /activity_logs and one of each): what the calling service did
through the API, and what happened to its objects (the money audit's events)."""
from __future__ import annotations

from datetime import UTC, date, datetime, time

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.activity import ACTIVITY_SOURCES, RESOURCE_TYPES, ActivityFilters, activity_get, activity_list
from apps.audit.representations import activity_log_out, api_log_out
from apps.audit.selectors import api_log_get, api_log_list
from apps.core.exceptions import ValidationFailed

from ..openapi import lago_operation, query
from ..pagination import paginate

HTTP_METHODS = ["post", "put", "patch", "delete"]


def _list(request, name: str) -> list[str]:
    """`name[]=a&name[]=b` as Lago's clients send it, or `name=a`."""
    return [value for value in request.query_params.getlist(f"{name}[]") or request.query_params.getlist(name)
            if value != ""]


def _bound(request, name: str, *, end: bool) -> datetime | None:
    """A `from_date`/`to_date`: an ISO date (the whole day counts: from its start, to its end, UTC) or date-time."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"bad {name}", details={name: ["invalid_date"]}) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _statuses(request) -> list[int | str]:
    statuses: list[int | str] = []
    for value in _list(request, "http_statuses"):
        if value in ("succeeded", "failed"):
            statuses.append(value)
        elif value.isascii() and value.isdigit() and 100 <= int(value) <= 599:
            statuses.append(int(value))
        else:
            raise ValidationFailed("bad http_statuses", details={"http_statuses": ["value_is_invalid"]})
    return statuses


def _methods(request) -> list[str]:
    methods = [value.lower() for value in _list(request, "http_methods")]
    if any(method not in HTTP_METHODS for method in methods):
        raise ValidationFailed("bad http_methods", details={"http_methods": ["value_is_invalid"]})
    return methods


class ApiLogListView(APIView):
    @lago_operation("findAllApiLogs", response="ApiLog", plural="api_logs", parameters=[
        query("from_date", description="ISO 8601 date (from its start, UTC) or date-time."),
        query("to_date", description="ISO 8601 date (to its end, UTC) or date-time."),
        query("http_methods", many=True, enum=HTTP_METHODS),
        query("http_statuses", many=True, description="Status codes, or `succeeded` (< 400) / `failed` (>= 400)."),
        query("api_version", description="`v1`."),
        query("request_paths", many=True, description="Request paths (`/api/v1/customers`); `*` matches anything."),
    ], description="The service's write requests (POST, PUT, PATCH, DELETE; not usage ingestion), newest first.")
    def get(self, request):
        logs = api_log_list(
            service=request.auth.service, logged_from=_bound(request, "from_date", end=False),
            logged_to=_bound(request, "to_date", end=True), http_methods=_methods(request),
            http_statuses=_statuses(request), api_version=request.query_params.get("api_version") or None,
            request_paths=_list(request, "request_paths"))
        return Response(paginate(request, logs, "api_logs", lambda items: [api_log_out(log) for log in items]))


class ApiLogDetailView(APIView):
    @lago_operation("findApiLog", response="ApiLog", root="api_log")
    def get(self, request, request_id: str):
        return Response({"api_log": api_log_out(api_log_get(service=request.auth.service, request_id=request_id))})


class ActivityLogListView(APIView):
    @lago_operation("findAllActivityLogs", response="ActivityLog", plural="activity_logs", parameters=[
        query("from_date", description="ISO 8601 date (from its start, UTC) or date-time."),
        query("to_date", description="ISO 8601 date (to its end, UTC) or date-time."),
        query("activity_types", many=True, description="`plan.created`, `subscription.terminated`, `invoice.voided`…"),
        query("activity_sources", many=True, enum=list(ACTIVITY_SOURCES)),
        query("user_emails", many=True, description="Staff who made the change in the admin."),
        query("external_customer_id"), query("external_subscription_id"),
        query("resource_ids", many=True, description="The objects' lago_id."),
        query("resource_types", many=True, enum=RESOURCE_TYPES),
    ], description="What happened to the service's plans, subscriptions, invoices, credit notes, wallets and payments "
                   "(the money audit's events), newest first.")
    def get(self, request):
        sources = _list(request, "activity_sources")
        if any(source not in ACTIVITY_SOURCES for source in sources):
            raise ValidationFailed("bad activity_sources", details={"activity_sources": ["value_is_invalid"]})
        filters = ActivityFilters(
            logged_from=_bound(request, "from_date", end=False), logged_to=_bound(request, "to_date", end=True),
            activity_types=tuple(_list(request, "activity_types")), activity_sources=tuple(sources),
            user_emails=tuple(_list(request, "user_emails")),
            external_customer_id=request.query_params.get("external_customer_id") or None,
            external_subscription_id=request.query_params.get("external_subscription_id") or None,
            resource_ids=tuple(_list(request, "resource_ids")), resource_types=tuple(_list(request, "resource_types")))
        service = request.auth.service
        page = activity_list(service=service, filters=filters)
        organization_id = str(service.lago_id)
        return Response(paginate(request, page, "activity_logs", lambda rows: [
            activity_log_out(row, organization_id=organization_id) for row in rows]))


class ActivityLogDetailView(APIView):
    @lago_operation("findActivityLog", response="ActivityLog", root="activity_log")
    def get(self, request, activity_id: str):
        service = request.auth.service
        row = activity_get(service=service, activity_id_text=activity_id)
        return Response({"activity_log": activity_log_out(row, organization_id=str(service.lago_id))})


urlpatterns = [
    path("activity_logs", ActivityLogListView.as_view()),
    path("activity_logs/<str:activity_id>", ActivityLogDetailView.as_view()),
    path("api_logs", ApiLogListView.as_view()),
    path("api_logs/<str:request_id>", ApiLogDetailView.as_view()),
]

"""Every API response carries an `X-Request-Id`; each service's write requests are recorded for GET /api_logs.

As Lago's ApiLoggable: POST, PUT, PATCH and DELETE of an authenticated service, after the response, whatever the
status; no reads, and not usage ingestion (/events, /events/batch, /usage: Lago skips its events endpoint, and the
hot path must not pay an INSERT per request). A failure to record is logged and never fails the request.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from django.utils import timezone

from apps.audit.services import api_log_record

logger = logging.getLogger(__name__)

PREFIX = "/api/v1/"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_LOGGED = frozenset({"/api/v1/events", "/api/v1/events/batch", "/api/v1/usage"})
SERVICE_ATTRIBUTE = "nexa_api_service"  # set by apps/api/auth.py once the key is known


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body  # read and kept by ApiInputGuard for every write with a body
    except RawPostDataException:  # a stream read elsewhere first (none today): log the request without it
        return b""


class ApiRequestLog:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PREFIX):
            return self.get_response(request)
        request_id, arrived = uuid.uuid4(), timezone.now()
        response = self.get_response(request)
        response["X-Request-Id"] = str(request_id)
        service = getattr(request, SERVICE_ATTRIBUTE, None)
        if service is not None and request.method in WRITES and request.path not in NOT_LOGGED:
            try:
                api_log_record(
                    request_id=request_id, service=service, api_key_prefix=service.api_key_prefix,
                    http_method=request.method, request_path=request.path,
                    request_origin=f"{request.scheme}://{request.get_host()}",
                    client=request.headers.get("User-Agent", ""), http_status=response.status_code,
                    body=_body(request), logged_at=arrived)
            except DatabaseError:
                logger.exception("API log of request %s not recorded", request_id)
        return response

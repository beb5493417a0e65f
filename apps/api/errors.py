"""Every API error as Lago's body: {"status", "error", "code", "error_details"}."""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.exceptions import BillingError

log = logging.getLogger(__name__)

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
}

# DRF's built-in validation codes -> Lago's machine codes (lago-api config/locales/en.yml).
DRF_TO_LAGO = {
    "required": "value_is_mandatory",
    "null": "value_is_mandatory",
    "blank": "value_is_mandatory",
    "empty": "value_is_mandatory",
    "invalid_choice": "value_is_invalid",
    "invalid": "value_is_invalid",
    "not_a_dict": "value_is_invalid",
    "not_a_list": "value_is_invalid",
    "date": "value_is_invalid",
    "datetime": "value_is_invalid",
    "max_string_length": "value_is_out_of_range",
    "min_value": "value_is_out_of_range",
    "max_value": "value_is_out_of_range",
    "max_length": "value_is_out_of_range",
    "min_length": "value_is_out_of_range",
    "max_digits": "value_is_out_of_range",
    "max_decimal_places": "value_is_out_of_range",
    "max_whole_digits": "value_is_out_of_range",
    "unique": "value_already_exist",
}


def lago_error_details(detail, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail into Lago's {"field": ["code", ...]} (nested keys dotted)."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else "base"
            out.update(lago_error_details(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(detail, list):
        if all(isinstance(item, (str, drf.ErrorDetail)) for item in detail):
            codes = [DRF_TO_LAGO.get(getattr(item, "code", ""), getattr(item, "code", None) or str(item)) for item in detail]
            out[prefix or "base"] = list(dict.fromkeys(codes))
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(lago_error_details(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        code = getattr(detail, "code", "") or str(detail)
        out[prefix or "base"] = [DRF_TO_LAGO.get(code, code)]
    return out


def error_body(status: int, code: str | None = None, details: dict | None = None, error: str | None = None) -> dict:
    body: dict = {"status": status, "error": error or REASONS.get(status, "Error")}
    if code is not None:
        body["code"] = code
    if details is not None:
        body["error_details"] = details
    return body


def lago_exception_handler(exc, context):
    if isinstance(exc, BillingError):
        status = exc.http_status
        if status == 422:
            code = exc.code if getattr(exc, "keeps_code", False) or not exc.details else "validation_errors"
            return Response(error_body(422, code, exc.details or {}), 422)
        return Response(error_body(status, exc.code, exc.details or None), status)
    if isinstance(exc, drf.ValidationError):
        return Response(error_body(422, "validation_errors", lago_error_details(exc.detail)), 422)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Response(error_body(401), 401, headers={"WWW-Authenticate": 'Bearer realm="api"'})
    if isinstance(exc, drf.PermissionDenied):
        # No valid service key reaches views as PermissionDenied when the header is malformed.
        return Response(error_body(401), 401)
    if isinstance(exc, drf.ParseError):
        return Response(error_body(400, error=f"BadRequest: {exc.detail}"), 400)
    if isinstance(exc, (Http404, drf.NotFound)):
        return Response(error_body(404, "object_not_found"), 404)
    if isinstance(exc, drf.MethodNotAllowed):
        return Response(error_body(405, "method_not_allowed"), 405)
    if isinstance(exc, drf.UnsupportedMediaType):
        return Response(error_body(400, error=f"BadRequest: {exc.detail}"), 400)
    if isinstance(exc, RequestDataTooBig):
        return payload_too_large()
    if isinstance(exc, DataError):
        # PostgreSQL refused a value (out of a column's range, too long): the input's fault, and the failed
        # statement rolled its transaction back. Serializers name the field; this is the net behind them.
        log.warning("value refused by the database: %s", exc)
        return Response(error_body(422, "validation_errors", {"base": ["value_is_invalid"]}), 422)
    if isinstance(exc, drf.APIException):
        return Response(error_body(exc.status_code, exc.default_code), exc.status_code)
    log.exception("unhandled API error", exc_info=exc)
    return Response(error_body(500, "internal_error"), 500)


def payload_too_large() -> JsonResponse:
    """413 naming the limit (API_MAX_BODY_BYTES), before or while the body is read."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = error_body(413, "payload_too_large", error=f"Payload Too Large: the request body exceeds {limit} bytes")
    return JsonResponse(body, status=413)


class MissingRootKey(drf.ParseError):
    def __init__(self, key: str):
        super().__init__(f"param is missing or the value is empty: {key}")


def api_not_found(request, exception=None):
    """JSON 404 for unknown /api paths (Lago's clients parse every error body)."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(404, "route_not_found"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def api_server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(500, "internal_error"), status=500)
    from django.views.defaults import server_error

    return server_error(request)

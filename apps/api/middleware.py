"""Input every API endpoint refuses before a view runs: oversized bodies, NUL bytes and lone surrogates.

One guard for the whole API instead of a check per view: PostgreSQL stores neither U+0000 nor unpaired UTF-16
surrogates in text or jsonb (psycopg raises, the view answers 500), and DRF's parser reads the body stream without
Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so without this a 100 MB body is parsed in full.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import error_body, payload_too_large

# JSON can carry U+0000 and surrogates only as \u escapes (raw control characters are invalid JSON), so a
# body without these byte strings is clean: three substring scans, ~0.1 ms for a 1,000-event batch.
_SUSPECT = (b"\\u0000", b"\\ud", b"\\uD")


def _bad_text(value: str) -> bool:
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return True
    return False


def _bad_paths(value: object, path: str, out: list[str]) -> None:
    if isinstance(value, str):
        if _bad_text(value):
            out.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if _bad_text(key):
                out.append(path or "base")
            else:
                _bad_paths(item, name, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _bad_paths(item, f"{path}.{index}" if path else str(index), out)


def body_text_errors(body: bytes) -> dict | None:
    """Return Lago's error_details for strings PostgreSQL cannot store, or None when the body has none.

    Named like the serializers' errors: dotted paths inside the root object (`{"customer": {"name": …}}` ->
    `name`), and per item for the lists of /events/batch and /usage (`{"0": {"properties.region": …}}`).
    """
    if not any(marker in body for marker in _SUSPECT):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # malformed JSON: the view's parser answers it
    root = data
    if isinstance(data, dict) and len(data) == 1:
        (root,) = data.values()
        if not isinstance(root, (dict, list)):
            root = data
    found: list[str] = []
    _bad_paths(root, "", found)
    if not found:
        return None
    if isinstance(root, list):
        details: dict = {}
        for path in found:
            index, _, field = path.partition(".")
            details.setdefault(index, {})[field or "base"] = ["value_is_invalid"]
        return details
    return {path or "base": ["value_is_invalid"] for path in found}


class ApiInputGuard:
    """Answer Lago-shaped 4xx for /api/ requests the database or parser cannot take; let the rest through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            refusal = self.refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    @staticmethod
    def refusal(request: HttpRequest) -> JsonResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return payload_too_large()
        if _bad_text(request.path):
            return JsonResponse(error_body(400, error="BadRequest: the path contains a NUL byte"), status=400)
        bad = sorted({name if not _bad_text(name) else "base"
                      for name, values in request.GET.lists()
                      if _bad_text(name) or any(_bad_text(v) for v in values)})
        if bad:
            return JsonResponse(error_body(422, "validation_errors", {name: ["value_is_invalid"] for name in bad}),
                                status=422)
        if length and request.method in ("POST", "PUT", "PATCH"):
            details = body_text_errors(request.body)
            if details:
                return JsonResponse(error_body(422, "validation_errors", details), status=422)
        return None

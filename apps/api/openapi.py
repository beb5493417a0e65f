"""The API's OpenAPI document (drf-spectacular): Lago's bodies, errors and bearer keys for every operation.

A new view follows one pattern: decorate each method with `lago_operation(...)`, naming Lago's operationId,
the request serializer and its root key, and the response component of `schemas.yaml` (Lago's object shapes,
as the hub answers them). Error responses (400/401/404/405/413/422) are added to every operation by
`add_error_responses`, so none goes undocumented; tests/api/test_openapi.py fails on any drf-spectacular warning
and tests/api/test_fuzz.py fuzzes the whole document against a live hub.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer

SCHEMAS_FILE = Path(__file__).with_name("schemas.yaml")


@cache
def components() -> dict:
    """The response and request components of schemas.yaml (read once, when the document is first built)."""
    return yaml.safe_load(SCHEMAS_FILE.read_text())


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <service key>`: Lago's bearerAuth scheme (apps/api/auth.py)."""

    target_class = "apps.api.auth.ServiceKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The calling service's API key."}


PAGE = [
    OpenApiParameter("page", {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}, required=False,
                     description="1-based page number (default 1)."),
    OpenApiParameter("per_page", {"type": "integer", "minimum": 1}, required=False,
                     description="Items per page (default 100; more than 1000 reads as 1000)."),
]


def query(name: str, type_=str, description: str = "", *, many: bool = False, enum=None) -> OpenApiParameter:
    """A query parameter; `many` is Rails' bracket syntax (`statuses[]=a&statuses[]=b`) as Lago's clients send it."""
    return OpenApiParameter(f"{name}[]" if many else name, type_, OpenApiParameter.QUERY, required=False,
                            description=description, many=many, enum=enum, explode=True if many else None)


@cache
def _root_body(serializer_class, root: str, partial: bool):
    """`{root: <serializer>}`, one component per serializer (operations sharing a body share its component)."""
    name = serializer_class.__name__.removesuffix("In")
    instance = serializer_class(partial=True) if partial else serializer_class()
    return inline_serializer(f"{'Patched' if partial else ''}{name}Body", {root: instance})


def lago_operation(operation_id: str, *, response: str | None, root: str | None = None, request=None,
                   plural: str | None = None, many: bool = False, status: int = 200, parameters: list | None = None,
                   summary: str | None = None, description: str | None = None, partial: bool = False,
                   tags: list[str] | None = None, errors: tuple[int, ...] = ()):
    """`extend_schema` for one Lago operation.

    response: a component of schemas.yaml answered under `root` (`{"customer": Customer}`), or under `plural`
      with Lago's `meta` for a paginated list (`many`: a list under `root`, no `meta`); None for an empty body.
    request: a serializer class wrapped in `root` as Lago's bodies are, or a raw schema dict used as is.
    errors: statuses of ERRORS this operation answers beyond the ones every operation gets (403).
    """
    body = None
    if isinstance(request, dict):
        body = {"application/json": request}
    elif request is not None:
        body = _root_body(request, root, partial)
    if response is None:
        answer = OpenApiResponse(description="Empty body, as Lago answers.")
    elif plural:
        answer = {"type": "object", "required": [plural, "meta"],
                  "properties": {plural: {"type": "array", "items": ref(response)}, "meta": ref("PaginationMeta")}}
    elif root:
        item = {"type": "array", "items": ref(response)} if many else ref(response)
        answer = {"type": "object", "required": [root], "properties": {root: item}}
    else:
        answer = ref(response)
    responses = {status: answer}
    for code in errors:
        name, text = ERRORS[code]
        responses[code] = OpenApiResponse(response=ref(name), description=text)
    return extend_schema(
        operation_id=operation_id, request=body, responses=responses,
        parameters=[*(PAGE if plural else []), *(parameters or [])], summary=summary, description=description,
        tags=tags,
    )


ERRORS = {
    400: ("BadRequestError", "Malformed JSON, or the root key (`{\"customer\": …}`) is missing."),
    401: ("UnauthorizedError", "No valid service key."),
    403: ("ForbiddenError", "Not available to this service, or not in the hub (`feature_unavailable`)."),
    404: ("NotFoundError", "No such object for this service (`<resource>_not_found`), or a path the API lacks."),
    405: ("NotAllowedError", "The action is not allowed in the object's state."),
    413: ("PayloadTooLargeError", "The body exceeds the limit named in `error` (API_MAX_BODY_BYTES)."),
    422: ("ValidationError", "Validation failed: `error_details` maps each field to Lago's machine codes."),
}


def add_error_responses(result: dict, generator, request, public: bool) -> dict:
    """Postprocessing hook: components from schemas.yaml, and Lago's error bodies on every operation.

    Every operation can answer 422 (a NUL byte in any query parameter) and 401; those with a path parameter
    or a body 400 and 404; those with a body 413; those on an object (a path parameter) 405.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in components().items():
        schemas.setdefault(name, schema)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            codes = {401, 422}
            if "{" in path:
                codes |= {400, 404}  # 400: a NUL byte in the path
            if method in ("post", "put", "patch"):
                codes |= {400, 404, 413}  # 404: an object the body names (invoice_id, plan_code) is not found
            if "{" in path:
                codes.add(405)  # not in the object's state: a metric on an active plan, usage without a subscription
            if not any(operation.get("security") or [{}]):  # health, the signed PDF link
                codes.discard(401)
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                name, text = ERRORS[code]
                responses.setdefault(str(code), {
                    "description": text, "content": {"application/json": {"schema": ref(name)}}})
            # Lago answers 400 without the root key; voidInvoice's body has none and is optional (Lago's document).
            if operation.get("requestBody", {}).get("content") and operation.get("operationId") != "voidInvoice":
                operation["requestBody"]["required"] = True
    return result

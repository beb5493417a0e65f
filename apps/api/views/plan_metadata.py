"""A plan's metadata (Lago's /plans/{code}/metadata): replace (POST), merge (PATCH), delete all or one key (DELETE).

Lago's key-value object: string keys (up to 100 characters), values strings (up to 255) or null, at most 50 keys.
Every answer is `{"metadata": …}`, null when the plan has none.
"""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.selectors import plan_get
from apps.catalog.services import plan_metadata_key_delete, plan_metadata_update
from apps.core.exceptions import ValidationFailed

from ..openapi import lago_operation, ref

METADATA_BODY = ref("PlanMetadataBody")


def _value(request) -> tuple[bool, dict | None]:
    """(whether the body names `metadata`, its value): absent changes nothing, as Lago's `params.key?(:metadata)`."""
    data = request.data
    if not isinstance(data, dict) or "metadata" not in data:
        return False, None
    value = data["metadata"]
    if value is not None and not isinstance(value, dict):
        raise ValidationFailed("bad metadata", details={"metadata": ["value_is_invalid"]})
    return True, value


def _answer(plan) -> Response:
    return Response({"metadata": plan.metadata})


class PlanMetadataView(APIView):
    @lago_operation("replacePlanMetadata", request=METADATA_BODY, response="PlanMetadata")
    def post(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        given, value = _value(request)
        if given:
            plan = plan_metadata_update(plan_id=plan.pk, value=value, partial=False)
        return _answer(plan)

    @lago_operation("mergePlanMetadata", request=METADATA_BODY, response="PlanMetadata")
    def patch(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        given, value = _value(request)
        if given:
            plan = plan_metadata_update(plan_id=plan.pk, value=value, partial=True)
        return _answer(plan)

    @lago_operation("deleteAllPlanMetadata", response="PlanMetadata")
    def delete(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        return _answer(plan_metadata_update(plan_id=plan.pk, value=None, partial=False))


class PlanMetadataKeyView(APIView):
    @lago_operation("deletePlanMetadataKey", response="PlanMetadata")
    def delete(self, request, code: str, key: str):
        plan = plan_get(service=request.auth.service, code=code)
        return _answer(plan_metadata_key_delete(plan_id=plan.pk, key=key))


urlpatterns = [
    path("plans/<str:code>/metadata", PlanMetadataView.as_view()),
    path("plans/<str:code>/metadata/<str:key>", PlanMetadataKeyView.as_view()),
]

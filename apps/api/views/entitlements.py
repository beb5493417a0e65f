"""Lago's features and entitlements (/features, /plans/{code}/entitlements, /subscriptions/{id}/entitlements):
catalog data the service's apps read (apps/catalog/entitlements.py, apps/subscriptions/entitlements.py)."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.entitlements import (
    feature_create,
    feature_delete,
    feature_get,
    feature_list,
    feature_out,
    feature_privilege_delete,
    feature_update,
    plan_entitlement_delete,
    plan_entitlement_get,
    plan_entitlement_list,
    plan_entitlement_out,
    plan_entitlement_privilege_delete,
    plan_entitlements_set,
)
from apps.catalog.selectors import plan_get
from apps.subscriptions.entitlements import (
    subscription_entitlements,
    subscription_entitlements_update,
    subscription_feature_remove,
    subscription_privilege_remove,
)
from apps.subscriptions.selectors import subscription_get

from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.common import root_payload
from ..serializers.entitlements import EntitlementsIn, FeatureIn


class FeatureListView(APIView):
    @lago_operation("createFeature", request=FeatureIn, root="feature", response="Feature")
    def post(self, request):
        serializer = FeatureIn(data=root_payload(request, "feature"))
        serializer.is_valid(raise_exception=True)
        feature = feature_create(service=request.auth.service, values=serializer.values())
        return Response({"feature": feature_out(feature_get(service=request.auth.service, code=feature.code))})

    @lago_operation("findAllFeatures", response="Feature", plural="features")
    def get(self, request):
        features = feature_list(service=request.auth.service)
        return Response(paginate(request, features, "features", lambda items: [feature_out(f) for f in items]))


class FeatureDetailView(APIView):
    @lago_operation("findFeature", response="Feature", root="feature")
    def get(self, request, code: str):
        return Response({"feature": feature_out(feature_get(service=request.auth.service, code=code))})

    @lago_operation("updateFeature", request=FeatureIn, root="feature", partial=True, response="Feature")
    def put(self, request, code: str):
        feature = feature_get(service=request.auth.service, code=code)
        serializer = FeatureIn(data=root_payload(request, "feature"), partial=True)
        serializer.is_valid(raise_exception=True)
        feature_update(feature=feature, values=serializer.values())
        return Response({"feature": feature_out(feature_get(service=request.auth.service, code=code))})

    @lago_operation("destroyFeature", response="Feature", root="feature")
    def delete(self, request, code: str):
        feature = feature_get(service=request.auth.service, code=code)
        body = feature_out(feature)
        feature_delete(feature=feature)
        return Response({"feature": body})


class FeaturePrivilegeView(APIView):
    @lago_operation("deleteFeaturePrivilege", response="Feature", root="feature")
    def delete(self, request, code: str, privilege_code: str):
        feature = feature_get(service=request.auth.service, code=code)
        feature_privilege_delete(feature=feature, code=privilege_code)
        return Response({"feature": feature_out(feature_get(service=request.auth.service, code=code))})


def _plan_entitlements(plan) -> dict:
    return {"entitlements": [plan_entitlement_out(e) for e in plan_entitlement_list(plan=plan)]}


def _entitlements_in(request) -> dict:
    serializer = EntitlementsIn(data=request.data if isinstance(request.data, dict) else {})
    serializer.is_valid(raise_exception=True)
    return {code: dict(values) for code, values in serializer.validated_data["entitlements"].items()}


class PlanEntitlementListView(APIView):
    @lago_operation("findAllEntitlements", response="PlanEntitlement", root="entitlements", many=True)
    def get(self, request, code: str):
        return Response(_plan_entitlements(plan_get(service=request.auth.service, code=code)))

    @lago_operation("createEntitlement", request=EntitlementsIn, response="PlanEntitlement", root="entitlements",
                    many=True)
    def post(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        plan_entitlements_set(plan=plan, entitlements=_entitlements_in(request), partial=False)
        return Response(_plan_entitlements(plan))

    @lago_operation("updateEntitlement", request=EntitlementsIn, response="PlanEntitlement", root="entitlements",
                    many=True)
    def patch(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        plan_entitlements_set(plan=plan, entitlements=_entitlements_in(request), partial=True)
        return Response(_plan_entitlements(plan))


class PlanEntitlementDetailView(APIView):
    @lago_operation("findEntitlement", response="PlanEntitlement", root="entitlement")
    def get(self, request, code: str, feature_code: str):
        plan = plan_get(service=request.auth.service, code=code)
        return Response({"entitlement": plan_entitlement_out(plan_entitlement_get(plan=plan, feature_code=feature_code))})

    @lago_operation("destroyEntitlement", response="PlanEntitlement", root="entitlement")
    def delete(self, request, code: str, feature_code: str):
        plan = plan_get(service=request.auth.service, code=code)
        entitlement = plan_entitlement_get(plan=plan, feature_code=feature_code)
        body = plan_entitlement_out(entitlement)
        plan_entitlement_delete(entitlement=entitlement)
        return Response({"entitlement": body})


class PlanEntitlementPrivilegeView(APIView):
    @lago_operation("removeEntitlementPrivilege", response="PlanEntitlement", root="entitlement")
    def delete(self, request, code: str, feature_code: str, privilege_code: str):
        plan = plan_get(service=request.auth.service, code=code)
        entitlement = plan_entitlement_get(plan=plan, feature_code=feature_code)
        plan_entitlement_privilege_delete(entitlement=entitlement, privilege_code=privilege_code)
        entitlement = plan_entitlement_get(plan=plan, feature_code=feature_code)
        return Response({"entitlement": plan_entitlement_out(entitlement)})


def _subscription(request, external_id: str):
    return subscription_get(service=request.auth.service, external_id=external_id)


class SubscriptionEntitlementListView(APIView):
    @lago_operation("findAllSubscriptionEntitlements", response="SubscriptionEntitlement", root="entitlements",
                    many=True)
    def get(self, request, external_id: str):
        return Response({"entitlements": subscription_entitlements(_subscription(request, external_id))})

    @lago_operation("updateSubscriptionEntitlements", request=EntitlementsIn, response="SubscriptionEntitlement",
                    root="entitlements", many=True)
    def patch(self, request, external_id: str):
        subscription = _subscription(request, external_id)
        subscription_entitlements_update(subscription=subscription, entitlements=_entitlements_in(request))
        return Response({"entitlements": subscription_entitlements(subscription)})


class SubscriptionEntitlementDetailView(APIView):
    @lago_operation("destroySubscriptionEntitlement", response="SubscriptionEntitlement", root="entitlement")
    def delete(self, request, external_id: str, feature_code: str):
        subscription = _subscription(request, external_id)
        return Response({"entitlement": subscription_feature_remove(subscription=subscription,
                                                                    feature_code=feature_code)})


class SubscriptionEntitlementPrivilegeView(APIView):
    @lago_operation("destroySubscriptionEntitlementPrivilege", response="SubscriptionEntitlement", root="entitlement")
    def delete(self, request, external_id: str, feature_code: str, privilege_code: str):
        subscription = _subscription(request, external_id)
        return Response({"entitlement": subscription_privilege_remove(
            subscription=subscription, feature_code=feature_code, privilege_code=privilege_code)})


urlpatterns = [
    path("features", FeatureListView.as_view()),
    path("features/<str:code>", FeatureDetailView.as_view()),
    path("features/<str:code>/privileges/<str:privilege_code>", FeaturePrivilegeView.as_view()),
    path("plans/<str:code>/entitlements", PlanEntitlementListView.as_view()),
    path("plans/<str:code>/entitlements/<str:feature_code>", PlanEntitlementDetailView.as_view()),
    path("plans/<str:code>/entitlements/<str:feature_code>/privileges/<str:privilege_code>",
         PlanEntitlementPrivilegeView.as_view()),
    path("subscriptions/<str:external_id>/entitlements", SubscriptionEntitlementListView.as_view()),
    path("subscriptions/<str:external_id>/entitlements/<str:feature_code>", SubscriptionEntitlementDetailView.as_view()),
    path("subscriptions/<str:external_id>/entitlements/<str:feature_code>/privileges/<str:privilege_code>",
         SubscriptionEntitlementPrivilegeView.as_view()),
]

"""Lago's coupons (`/coupons`) and their application to customers (`/applied_coupons`)."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.models import AppliedCoupon
from apps.catalog.representations import applied_coupon_out, coupon_out
from apps.catalog.selectors import applied_coupon_get, applied_coupon_list, coupon_get, coupon_list
from apps.catalog.services import (
    applied_coupon_create,
    applied_coupon_terminate,
    coupon_create,
    coupon_delete,
    coupon_update,
)
from apps.customers.selectors import account_link_get

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..serializers.catalog import AppliedCouponIn, CouponIn
from ..serializers.common import root_payload


APPLIED_FILTERS = [query("status", enum=AppliedCoupon.Status.values), query("coupon_code", many=True)]


class CouponListCreateView(APIView):
    @lago_operation("createCoupon", request=CouponIn, root="coupon", response="Coupon")
    def post(self, request):
        serializer = CouponIn(data=root_payload(request, "coupon"))
        serializer.is_valid(raise_exception=True)
        values, plan_codes, metric_codes = serializer.model_values()
        service = request.auth.service
        coupon = coupon_create(service=service, values=values, plan_codes=plan_codes, metric_codes=metric_codes)
        return Response({"coupon": coupon_out(coupon_get(service=service, code=coupon.code))})

    @lago_operation("findAllCoupons", response="Coupon", plural="coupons")
    def get(self, request):
        coupons = coupon_list(service=request.auth.service)
        return Response(paginate(request, coupons, "coupons", lambda items: [coupon_out(c) for c in items]))


class CouponDetailView(APIView):
    @lago_operation("findCoupon", response="Coupon", root="coupon")
    def get(self, request, code: str):
        return Response({"coupon": coupon_out(coupon_get(service=request.auth.service, code=code))})

    @lago_operation("updateCoupon", request=CouponIn, root="coupon", partial=True, response="Coupon")
    def put(self, request, code: str):
        service = request.auth.service
        coupon = coupon_get(service=service, code=code)
        serializer = CouponIn(data=root_payload(request, "coupon"), partial=True)
        serializer.is_valid(raise_exception=True)
        values, plan_codes, metric_codes = serializer.model_values()
        coupon = coupon_update(coupon=coupon, values=values, plan_codes=plan_codes, metric_codes=metric_codes)
        return Response({"coupon": coupon_out(coupon_get(service=service, code=coupon.code))})

    @lago_operation("destroyCoupon", response="Coupon", root="coupon")
    def delete(self, request, code: str):
        coupon = coupon_delete(coupon=coupon_get(service=request.auth.service, code=code))
        return Response({"coupon": coupon_out(coupon)})


def _list(request, external_customer_id: str | None):
    params = request.query_params
    status = params.get("status") or None
    rows = applied_coupon_list(
        service=request.auth.service,
        external_customer_id=external_customer_id,
        status=status if status in AppliedCoupon.Status.values else None,
        coupon_codes=params.getlist("coupon_code[]") or params.getlist("coupon_code") or None,
    )
    return Response(paginate(request, rows, "applied_coupons", lambda items: [applied_coupon_out(a, with_credits=True) for a in items]))


class AppliedCouponListCreateView(APIView):
    @lago_operation("applyCoupon", request=AppliedCouponIn, root="applied_coupon", response="AppliedCoupon")
    def post(self, request):
        serializer = AppliedCouponIn(data=root_payload(request, "applied_coupon"))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        service = request.auth.service
        link = account_link_get(service=service, external_id=data.pop("external_customer_id"))
        applied = applied_coupon_create(service=service, link=link, coupon_code=data.pop("coupon_code"), overrides=data)
        return Response({"applied_coupon": applied_coupon_out(applied)})

    @lago_operation("findAllAppliedCoupons", response="AppliedCoupon", plural="applied_coupons",
                    parameters=[query("external_customer_id"), *APPLIED_FILTERS])
    def get(self, request):
        return _list(request, request.query_params.get("external_customer_id") or None)


class CustomerAppliedCouponListView(APIView):
    @lago_operation("findAllCustomerAppliedCoupons", response="AppliedCoupon", plural="applied_coupons",
                    parameters=APPLIED_FILTERS)
    def get(self, request, external_id: str):
        account_link_get(service=request.auth.service, external_id=external_id)  # 404 customer_not_found
        return _list(request, external_id)


class CustomerAppliedCouponDetailView(APIView):
    @lago_operation("deleteAppliedCoupon", response="AppliedCoupon", root="applied_coupon")
    def delete(self, request, external_id: str, lago_id: str):
        account_link_get(service=request.auth.service, external_id=external_id)
        applied = applied_coupon_get(service=request.auth.service, external_customer_id=external_id, lago_id=lago_id)
        return Response({"applied_coupon": applied_coupon_out(applied_coupon_terminate(applied=applied))})


urlpatterns = [
    path("coupons", CouponListCreateView.as_view()),
    path("coupons/<str:code>", CouponDetailView.as_view()),
    path("applied_coupons", AppliedCouponListCreateView.as_view()),
    # Before the catch-all customers/<external_id> route.
    path("customers/<str:external_id>/applied_coupons", CustomerAppliedCouponListView.as_view()),
    path("customers/<str:external_id>/applied_coupons/<str:lago_id>", CustomerAppliedCouponDetailView.as_view()),
]

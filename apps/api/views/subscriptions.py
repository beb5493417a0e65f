from __future__ import annotations

from rest_framework.response import Response
from django.utils import timezone
from rest_framework.views import APIView

from apps.catalog.selectors import plan_get
from apps.core.exceptions import ValidationFailed
from apps.invoicing.progressive import lifetime_usage_ensure, lifetime_usage_state, lifetime_usage_update
from apps.invoicing.representations import lifetime_usage_out
from apps.subscriptions.models import Subscription
from apps.subscriptions.representations import subscription_out
from apps.subscriptions.selectors import subscription_get, subscription_list
from apps.subscriptions.overrides import subscription_create_overridden, subscription_update_overridden
from apps.subscriptions.services import SubscriptionRequest, subscription_terminate

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..serializers.common import root_payload
from ..serializers.subscriptions import LifetimeUsageIn, SubscriptionIn, SubscriptionUpdateIn, plan_overrides_of


def _status_param(request) -> str | None:
    status = request.query_params.get("status")
    if status and status not in Subscription.Status.values:
        raise ValidationFailed("bad status", details={"status": ["value_is_invalid"]})
    return status


STATUS = query("status", description="Which of the id's subscriptions (default: the active one).",
               enum=Subscription.Status.values)


SUBSCRIPTION_FILTERS = [query("plan_code"), query("status", many=True, enum=Subscription.Status.values)]


class SubscriptionListCreateView(APIView):
    @lago_operation("createSubscription", request=SubscriptionIn, root="subscription", response="Subscription")
    def post(self, request):
        serializer = SubscriptionIn(data=root_payload(request, "subscription"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        service = request.auth.service
        plan = plan_get(service=service, code=data["plan_code"])
        subscription = subscription_create_overridden(
            service=service,
            overrides=plan_overrides_of(root_payload(request, "subscription")),
            request=SubscriptionRequest(
                external_id=data["external_id"],
                external_customer_id=data["external_customer_id"],
                plan=plan,
                name=data.get("name", ""),
                billing_time=data["billing_time"],
                subscription_at=data.get("subscription_at"),
                ending_at=data.get("ending_at"),
            ),
        )
        return Response({"subscription": subscription_out(subscription, with_plan=True)})

    @lago_operation("findAllSubscriptions", response="Subscription", plural="subscriptions", parameters=[
        query("external_customer_id"), *SUBSCRIPTION_FILTERS])
    def get(self, request):
        return Response(subscriptions_page(request, request.query_params.get("external_customer_id")))


def subscriptions_page(request, external_customer_id: str | None) -> dict:
    """One page of the service's subscriptions with Lago's filters (also GET /customers/{id}/subscriptions)."""
    statuses = request.query_params.getlist("status[]") or request.query_params.getlist("status")
    bad = [s for s in statuses if s not in Subscription.Status.values]
    if bad:
        raise ValidationFailed("bad status", details={"status": ["value_is_invalid"]})
    subscriptions = subscription_list(
        service=request.auth.service,
        external_customer_id=external_customer_id,
        plan_code=request.query_params.get("plan_code"),
        statuses=statuses or None,
    )
    return paginate(request, subscriptions, "subscriptions", lambda items: [subscription_out(s) for s in items])


class SubscriptionDetailView(APIView):
    @lago_operation("findSubscription", response="Subscription", root="subscription", parameters=[STATUS])
    def get(self, request, external_id: str):
        subscription = subscription_get(service=request.auth.service, external_id=external_id, status=_status_param(request))
        return Response({"subscription": subscription_out(subscription, with_plan=True)})

    @lago_operation("updateSubscription", request=SubscriptionUpdateIn, root="subscription", partial=True,
                    response="Subscription")
    def put(self, request, external_id: str):
        status = request.data.get("status") if isinstance(request.data, dict) else None
        if status not in (None, "active", "pending"):
            raise ValidationFailed("bad status", details={"status": ["value_is_invalid"]})
        subscription = subscription_get(service=request.auth.service, external_id=external_id, status=status)
        serializer = SubscriptionUpdateIn(data=root_payload(request, "subscription"), partial=True)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        overrides = plan_overrides_of(root_payload(request, "subscription"))
        subscription = subscription_update_overridden(subscription=subscription, values=values, overrides=overrides)
        return Response({"subscription": subscription_out(subscription, with_plan=True)})

    @lago_operation("destroySubscription", response="Subscription", root="subscription", parameters=[
        STATUS, query("on_termination_credit_note", enum=["credit", "skip"])])
    def delete(self, request, external_id: str):
        subscription = subscription_get(service=request.auth.service, external_id=external_id, status=_status_param(request))
        subscription = subscription_terminate(
            subscription_id=subscription.pk,
            on_termination_credit_note=request.query_params.get("on_termination_credit_note"),
        )
        return Response({"subscription": subscription_out(subscription, with_plan=True)})


class LifetimeUsageView(APIView):
    @lago_operation("getSubscriptionLifetimeUsage", response="LifetimeUsage", root="lifetime_usage")
    def get(self, request, external_id: str):
        subscription = subscription_get(service=request.auth.service, external_id=external_id)
        lifetime_usage_ensure(subscription=subscription)
        return Response({"lifetime_usage": _lifetime_usage_body(subscription)})

    @lago_operation("updateSubscriptionLifetimeUsage", request=LifetimeUsageIn, root="lifetime_usage",
                    response="LifetimeUsage")
    def put(self, request, external_id: str):
        subscription = subscription_get(service=request.auth.service, external_id=external_id)
        serializer = LifetimeUsageIn(data=root_payload(request, "lifetime_usage"))
        serializer.is_valid(raise_exception=True)
        lifetime_usage_update(subscription=subscription, **serializer.validated_data)
        return Response({"lifetime_usage": _lifetime_usage_body(subscription)})


def _lifetime_usage_body(subscription: Subscription) -> dict:
    now = timezone.now()
    state = lifetime_usage_state(subscription, at=now)
    thresholds = list(subscription.plan.usage_thresholds.all())
    return lifetime_usage_out(state, thresholds=thresholds, now=now)

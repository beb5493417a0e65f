"""/subscriptions/{external_id}/alerts: Lago's subscription usage alerts (apps/invoicing/alerts.py)."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.invoicing.alerts import alert_get, alert_list, alert_update, alerts_create, alerts_delete
from apps.invoicing.representations import alert_out
from apps.subscriptions.selectors import subscription_get

from ..errors import MissingRootKey
from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.alerts import AlertIn, AlertUpdateIn
from ..serializers.common import root_payload


def _subscription(request, external_id: str):
    return subscription_get(service=request.auth.service, external_id=external_id)


class AlertListView(APIView):
    @lago_operation("getSubscriptionAlerts", response="UsageAlert", plural="alerts")
    def get(self, request, external_id: str):
        alerts = alert_list(subscription=_subscription(request, external_id))
        return Response(paginate(request, alerts, "alerts", lambda items: [alert_out(a) for a in items]))

    @lago_operation("createSubscriptionAlert", request=AlertIn, root="alert", response="UsageAlert",
                    description="One alert under `alert`, or Lago's batch under `alerts` (answered as `alerts`).")
    def post(self, request, external_id: str):
        subscription = _subscription(request, external_id)
        data = request.data if isinstance(request.data, dict) else {}
        if isinstance(data.get("alerts"), list) and data["alerts"]:
            serializer = AlertIn(data=data["alerts"], many=True)
            serializer.is_valid(raise_exception=True)
            created = alerts_create(subscription=subscription, items=list(serializer.validated_data))
            return Response({"alerts": [alert_out(alert) for alert in _reloaded(subscription, created)]})
        if "alerts" in data:
            raise MissingRootKey("alerts")
        serializer = AlertIn(data=root_payload(request, "alert"))
        serializer.is_valid(raise_exception=True)
        [alert] = alerts_create(subscription=subscription, items=[serializer.validated_data])
        return Response({"alert": alert_out(_reloaded(subscription, [alert])[0])})

    @lago_operation("deleteAllSubscriptionAlerts", response=None)
    def delete(self, request, external_id: str):
        alerts_delete(alerts=list(alert_list(subscription=_subscription(request, external_id))))
        return Response()


class AlertDetailView(APIView):
    @lago_operation("getSubscriptionAlert", response="UsageAlert", root="alert")
    def get(self, request, external_id: str, code: str):
        return Response({"alert": alert_out(alert_get(subscription=_subscription(request, external_id), code=code))})

    @lago_operation("updateSubscriptionAlert", request=AlertUpdateIn, root="alert", partial=True,
                    response="UsageAlert")
    def put(self, request, external_id: str, code: str):
        subscription = _subscription(request, external_id)
        alert = alert_get(subscription=subscription, code=code)
        serializer = AlertUpdateIn(data=root_payload(request, "alert"), partial=True)
        serializer.is_valid(raise_exception=True)
        alert = alert_update(alert=alert, values=dict(serializer.validated_data))
        return Response({"alert": alert_out(alert_get(subscription=subscription, code=alert.code))})

    @lago_operation("deleteSubscriptionAlert", response="UsageAlert", root="alert")
    def delete(self, request, external_id: str, code: str):
        alert = alert_get(subscription=_subscription(request, external_id), code=code)
        body = alert_out(alert)
        alerts_delete(alerts=[alert])
        return Response({"alert": body})


def _reloaded(subscription, alerts):
    by_pk = {alert.pk: alert for alert in alert_list(subscription=subscription).filter(pk__in=[a.pk for a in alerts])}
    return [by_pk[alert.pk] for alert in alerts]


urlpatterns = [
    path("subscriptions/<str:external_id>/alerts", AlertListView.as_view()),
    path("subscriptions/<str:external_id>/alerts/<str:code>", AlertDetailView.as_view()),
]

"""A subscription's entitlements (Lago): its plan's, with the subscription's own privilege values and removals."""
from __future__ import annotations

from django.db import transaction

from apps.catalog.entitlements import (
    plan_entitlement_list,
    privilege_out,
    privilege_value_cast,
    privilege_value_text,
)
from apps.catalog.models import Feature
from apps.core.exceptions import NotFound

from .models import Subscription, SubscriptionEntitlementOverride, SubscriptionFeatureRemoval


def subscription_entitlements(subscription: Subscription) -> list[dict]:
    """Lago's SubscriptionEntitlementObject list: each plan feature not removed, values overridden where set, and
    features granted to the subscription alone (overrides of features its plan lacks)."""
    removed = set(SubscriptionFeatureRemoval.objects.filter(subscription=subscription).values_list("feature_id", flat=True))
    overrides = {row.privilege_id: row.value for row in
                 SubscriptionEntitlementOverride.objects.filter(subscription=subscription).select_related("privilege")}
    out, seen = [], set()
    for entitlement in plan_entitlement_list(plan=subscription.plan):
        feature = entitlement.feature
        if feature.pk in removed:
            continue
        seen.add(feature.pk)
        plan_values = {value.privilege_id: value.value for value in entitlement.values.all()}
        out.append(_entitlement_out(feature, plan_values, overrides))
    own = (Feature.objects.filter(privileges__id__in=list(overrides)).exclude(pk__in=seen | removed).distinct()
           .prefetch_related("privileges").order_by("id"))
    out.extend(_entitlement_out(feature, {}, overrides) for feature in own)
    return out


def _entitlement_out(feature: Feature, plan_values: dict, overrides: dict) -> dict:
    privileges = []
    for privilege in feature.privileges.all():
        if privilege.pk not in plan_values and privilege.pk not in overrides:
            continue
        plan_value = privilege_value_cast(privilege, plan_values.get(privilege.pk))
        override = privilege_value_cast(privilege, overrides.get(privilege.pk))
        privileges.append({**privilege_out(privilege), "value": override if override is not None else plan_value,
                           "plan_value": plan_value, "override_value": override})
    return {
        "code": feature.code,
        "name": feature.name or None,
        "description": feature.description or None,
        "privileges": privileges,
        "overrides": {p["code"]: p["override_value"] for p in privileges if p["override_value"] is not None},
    }


@transaction.atomic
def subscription_entitlements_update(*, subscription: Subscription, entitlements: dict) -> None:
    """Lago's PATCH: set the subscription's own privilege values (a removed feature listed is granted again)."""
    features = {f.code: f for f in Feature.objects.filter(service=subscription.service, code__in=list(entitlements))
                .prefetch_related("privileges")}
    for code, values in entitlements.items():
        feature = features.get(code)
        if feature is None:
            raise NotFound("feature")
        SubscriptionFeatureRemoval.objects.filter(subscription=subscription, feature=feature).delete()
        privileges = {p.code: p for p in feature.privileges.all()}
        for privilege_code, value in (values or {}).items():
            privilege = privileges.get(privilege_code)
            if privilege is None:
                raise NotFound("privilege")
            SubscriptionEntitlementOverride.objects.update_or_create(
                subscription=subscription, privilege=privilege,
                defaults={"value": privilege_value_text(privilege, value)},
            )


def _feature(subscription: Subscription, code: str) -> Feature:
    feature = Feature.objects.filter(service=subscription.service, code=code).first()
    if feature is None:
        raise NotFound("feature")
    return feature


@transaction.atomic
def subscription_feature_remove(*, subscription: Subscription, feature_code: str) -> dict:
    """Lago's DELETE of a subscription entitlement: the feature is removed for this subscription; return it as it was."""
    feature = _feature(subscription, feature_code)
    before = next((e for e in subscription_entitlements(subscription) if e["code"] == feature.code), None)
    if before is None:
        raise NotFound("entitlement")
    SubscriptionEntitlementOverride.objects.filter(subscription=subscription, privilege__feature=feature).delete()
    SubscriptionFeatureRemoval.objects.get_or_create(subscription=subscription, feature=feature)
    return before


@transaction.atomic
def subscription_privilege_remove(*, subscription: Subscription, feature_code: str, privilege_code: str) -> dict:
    """Drop the subscription's own value of one privilege (back to the plan's); return the entitlement after."""
    feature = _feature(subscription, feature_code)
    SubscriptionEntitlementOverride.objects.filter(
        subscription=subscription, privilege__feature=feature, privilege__code=privilege_code
    ).delete()
    after = next((e for e in subscription_entitlements(subscription) if e["code"] == feature.code), None)
    if after is None:
        raise NotFound("entitlement")
    return after

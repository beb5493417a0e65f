"""Lago's features and plan entitlements (app/services/entitlement/*): catalog data the service's apps read, with
no effect on billing. A plan override (a child plan) grants what its parent grants."""
from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.core.exceptions import NotFound, ValidationFailed
from apps.core.representations import ts
from apps.customers.models import Service

from .models import Feature, FeaturePrivilege, Plan, PlanEntitlement, PlanEntitlementValue

_TRUE, _FALSE = ("true", "1", "t"), ("false", "0", "f")


def privilege_value_text(privilege: FeaturePrivilege, value) -> str:
    """Validate `value` for the privilege's type and return it as stored (Lago's text); 422 when it does not fit."""
    kind = privilege.value_type
    bad = ValidationFailed("privilege value", details={"privilege.value": ["value_is_invalid"]})
    if kind == FeaturePrivilege.ValueType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise bad
        return str(int(value))
    if kind == FeaturePrivilege.ValueType.BOOLEAN:
        text = str(value).lower()
        if text not in _TRUE + _FALSE:
            raise bad
        return "true" if text in _TRUE else "false"
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise bad
    if kind == FeaturePrivilege.ValueType.SELECT and str(value) not in (privilege.config or {}).get("select_options", []):
        raise bad
    return str(value)


def privilege_value_cast(privilege: FeaturePrivilege, text: str | None):
    """A stored value as Lago sends it: integer, boolean or string."""
    if text is None:
        return None
    if privilege.value_type == FeaturePrivilege.ValueType.INTEGER:
        return int(text)
    if privilege.value_type == FeaturePrivilege.ValueType.BOOLEAN:
        return text == "true"
    return text


def _privileges_set(feature: Feature, items: list[dict], *, partial: bool) -> None:
    codes = [item["code"] for item in items]
    if len(codes) != len(set(codes)):
        raise ValidationFailed("privileges", details={"privilege.code": ["value_is_duplicated"]})
    existing = {privilege.code: privilege for privilege in feature.privileges.all()}
    for item in items:
        found = existing.get(item["code"])
        if found is None:
            kind = item.get("value_type") or FeaturePrivilege.ValueType.STRING
            config = item.get("config") or {}
            if kind == FeaturePrivilege.ValueType.SELECT and not config.get("select_options"):
                raise ValidationFailed("privileges", details={"privilege.config": ["invalid_format"]})
            FeaturePrivilege.objects.create(feature=feature, code=item["code"], name=item.get("name") or "",
                                            value_type=kind, config=config)
            continue
        if "name" in item:
            found.name = item["name"] or ""
        options = (item.get("config") or {}).get("select_options")
        if options:  # Lago only adds options (values already granted stay valid)
            found.config = {**found.config, "select_options": list(dict.fromkeys(
                [*found.config.get("select_options", []), *options]))}
        found.save()
    if not partial:
        feature.privileges.exclude(code__in=codes).delete()


@transaction.atomic
def feature_create(*, service: Service, values: dict) -> Feature:
    try:
        with transaction.atomic():
            feature = Feature.objects.create(service=service, code=values["code"], name=values.get("name") or "",
                                             description=values.get("description") or "")
    except IntegrityError:
        raise ValidationFailed("feature", details={"code": ["value_already_exist"]}) from None
    _privileges_set(feature, values.get("privileges") or [], partial=True)
    return feature


@transaction.atomic
def feature_update(*, feature: Feature, values: dict) -> Feature:
    """Lago's PUT: name and description; privileges listed are created or updated, the others kept."""
    feature = Feature.objects.select_for_update().get(pk=feature.pk)
    for field in ("name", "description"):
        if field in values:
            setattr(feature, field, values[field] or "")
    feature.save()
    _privileges_set(feature, values.get("privileges") or [], partial=True)
    return feature


@transaction.atomic
def feature_delete(*, feature: Feature) -> None:
    feature.delete()  # with its privileges and every plan's entitlement to it


@transaction.atomic
def feature_privilege_delete(*, feature: Feature, code: str) -> None:
    if not feature.privileges.filter(code=code).delete()[0]:
        raise NotFound("privilege")


def feature_list(*, service: Service):
    return Feature.objects.filter(service=service).prefetch_related("privileges").order_by("-created_at", "-id")


def feature_get(*, service: Service, code: str) -> Feature:
    feature = feature_list(service=service).filter(code=code).first()
    if feature is None:
        raise NotFound("feature")
    return feature


def entitlement_plan(plan: Plan) -> Plan:
    """The plan whose entitlements apply: a child plan (plan override) grants its parent's."""
    return plan.parent if plan.parent_id else plan


@transaction.atomic
def plan_entitlements_set(*, plan: Plan, entitlements: dict, partial: bool) -> None:
    """Lago's POST (replace: features and privileges not listed are dropped) and PATCH (`partial`: merge)."""
    plan = entitlement_plan(plan)
    features = {f.code: f for f in Feature.objects.filter(service=plan.service, code__in=list(entitlements))
                .prefetch_related("privileges")}
    if not partial:
        plan.entitlements.exclude(feature__code__in=list(entitlements)).delete()
    for code, values in entitlements.items():
        feature = features.get(code)
        if feature is None:
            raise NotFound("feature")
        entitlement, _ = PlanEntitlement.objects.get_or_create(plan=plan, feature=feature)
        privileges = {p.code: p for p in feature.privileges.all()}
        values = values or {}
        if not partial:
            entitlement.values.exclude(privilege__code__in=list(values)).delete()
        for privilege_code, value in values.items():
            privilege = privileges.get(privilege_code)
            if privilege is None:
                raise NotFound("privilege")
            PlanEntitlementValue.objects.update_or_create(
                entitlement=entitlement, privilege=privilege,
                defaults={"value": privilege_value_text(privilege, value)},
            )


def plan_entitlement_get(*, plan: Plan, feature_code: str) -> PlanEntitlement:
    found = plan_entitlement_list(plan=plan).filter(feature__code=feature_code).first()
    if found is None:
        raise NotFound("entitlement")
    return found


def plan_entitlement_list(*, plan: Plan):
    return (PlanEntitlement.objects.filter(plan=entitlement_plan(plan))
            .select_related("feature").prefetch_related("feature__privileges", "values").order_by("created_at", "id"))


@transaction.atomic
def plan_entitlement_delete(*, entitlement: PlanEntitlement) -> None:
    entitlement.delete()


@transaction.atomic
def plan_entitlement_privilege_delete(*, entitlement: PlanEntitlement, privilege_code: str) -> None:
    if not entitlement.values.filter(privilege__code=privilege_code).delete()[0]:
        raise NotFound("privilege")


def privilege_out(privilege: FeaturePrivilege) -> dict:
    return {"code": privilege.code, "name": privilege.name or None, "value_type": privilege.value_type,
            "config": privilege.config or {}}


def feature_out(feature: Feature) -> dict:
    return {
        "code": feature.code,
        "name": feature.name or None,
        "description": feature.description or None,
        "privileges": [privilege_out(p) for p in feature.privileges.all()],
        "created_at": ts(feature.created_at),
    }


def plan_entitlement_out(entitlement: PlanEntitlement) -> dict:
    feature = entitlement.feature
    values = {value.privilege_id: value.value for value in entitlement.values.all()}
    return {
        "code": feature.code,
        "name": feature.name or None,
        "description": feature.description or None,
        "privileges": [
            {**privilege_out(p), "value": privilege_value_cast(p, values[p.pk])}
            for p in feature.privileges.all() if p.pk in values
        ],
    }

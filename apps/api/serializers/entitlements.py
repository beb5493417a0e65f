from __future__ import annotations

from rest_framework import serializers

from apps.catalog.models import FeaturePrivilege

from .common import BlankableCharField


class PrivilegeConfigIn(serializers.Serializer):
    select_options = serializers.ListField(child=serializers.CharField(max_length=255), required=False)


class PrivilegeIn(serializers.Serializer):
    code = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    value_type = serializers.ChoiceField(choices=FeaturePrivilege.ValueType.values, required=False)
    config = PrivilegeConfigIn(required=False)


class FeatureIn(serializers.Serializer):
    code = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    description = BlankableCharField()
    privileges = PrivilegeIn(many=True, required=False)

    def values(self) -> dict:
        data = dict(self.validated_data)
        if "privileges" in data:
            data["privileges"] = [{**item, "config": dict(item.get("config") or {})} for item in data["privileges"]]
        return data


class EntitlementsIn(serializers.Serializer):
    """Lago's EntitlementUpdateInput: {feature code: {privilege code: value}}."""

    entitlements = serializers.DictField(child=serializers.DictField(allow_empty=True), allow_empty=True)

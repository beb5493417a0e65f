"""Shared pieces of the Lago-shaped contract."""
from __future__ import annotations

from rest_framework import serializers

from ..errors import MissingRootKey


def root_payload(request, key: str) -> dict:
    """Return the body's root object (`{"customer": {...}}` -> {...}); Lago answers 400 when absent."""
    data = request.data
    if not isinstance(data, dict) or not isinstance(data.get(key), dict) or not data.get(key):
        raise MissingRootKey(key)
    return data[key]


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class BlankableCharField(serializers.CharField):
    """A text field where JSON null means empty (Lago clients send null for 'unset')."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if data is None:
            return True, ""
        return super().validate_empty_values(data)


BIGINT_MAX = 2**63 - 1


class StrictIntegerField(serializers.IntegerField):
    """An integer that refuses floats and numeric strings with a fraction (money in cents).

    Bounded by PostgreSQL's bigint unless a narrower range is given: past it the INSERT fails as a 500.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", -BIGINT_MAX)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or isinstance(data, float):
            self.fail("invalid")
        if isinstance(data, str) and not data.strip().isascii():  # int() reads "١٢" as 12
            self.fail("invalid")
        return super().to_internal_value(data)

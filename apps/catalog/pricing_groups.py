"""A charge's pricing group keys (Lago's `pricing_group_keys`, formerly `grouped_by`): how they are read from its
properties, stored and returned. Catalog facts, read by the catalog's representations, the usage store's
aggregation and the invoicing's rating alike (so they sit below all three)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def group_keys_field(properties: Mapping[str, Any]) -> str:
    """The property naming the charge's pricing group keys: `pricing_group_keys` (Lago 1.51) unless absent or
    null, then the deprecated `grouped_by` (Lago still reads it)."""
    return "pricing_group_keys" if properties.get("pricing_group_keys") is not None else "grouped_by"


def pricing_group_keys(properties: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The event property names a charge (or filter) bills one fee per distinct combination of (Lago's
    `Charge#pricing_group_keys`: `pricing_group_keys` if present, else `grouped_by`); () for none."""
    if not properties:
        return ()
    keys = properties.get("pricing_group_keys") or properties.get("grouped_by") or ()
    return tuple(keys) if isinstance(keys, list) else ()


def properties_group_keys_normalized(properties: Any) -> Any:
    """Properties as stored: the group keys under `pricing_group_keys` only (Lago's FilterProperties slice moves
    `grouped_by` there and drops it). Anything not a valid mapping is returned as is (validation refuses it)."""
    if not isinstance(properties, Mapping) or "grouped_by" not in properties:
        return properties
    if not isinstance(properties["grouped_by"], (list, type(None))):
        return properties  # refused by validation, under the name the caller sent
    out = dict(properties)
    grouped_by = out.pop("grouped_by")
    if grouped_by and not out.get("pricing_group_keys"):
        out["pricing_group_keys"] = grouped_by
    return out


def properties_group_keys_out(properties: Mapping[str, Any] | None) -> dict:
    """Properties as Lago 1.51's ChargeSerializer returns them: group keys under both names when set."""
    out = dict(properties or {})
    keys = pricing_group_keys(out)
    if keys:
        out["pricing_group_keys"] = out["grouped_by"] = list(keys)
    return out

"""How one attribute value is shown. Sensitive values never are."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reconciler.plan import refs

SENSITIVE = "(sensitive)"
SENSITIVE_CHANGE = "(sensitive, will change)"


def show(value: Any, *, sensitive: bool = False, indent: str = "") -> str:
    if sensitive:
        return SENSITIVE
    if value is None:
        return "null"
    if isinstance(value, (str, int, float)):  # most values: nothing inside to look for
        return json.dumps(value)
    if refs.is_unknown(value):
        return refs.KNOWN_AFTER_APPLY
    value = known(value)
    text = json.dumps(value, sort_keys=True)
    if len(text) <= 70 or not isinstance(value, (dict, list)):
        return text
    pretty = json.dumps(value, sort_keys=True, indent=2)
    return pretty.replace("\n", "\n" + indent)


def flatten(attributes: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, Any]]:
    """Attribute rows for a create/delete listing: nested mappings become dotted paths
    (an empty mapping stays one row), everything else is one row."""
    rows: list[tuple[str, Any]] = []
    attributes = attributes or {}
    for key in sorted(attributes):
        value = attributes[key]
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "policy" and not refs.is_unknown(value):
            rows.extend(flatten(value, path + "."))
        else:
            rows.append((path, value))
    return rows


def known(value: Any) -> Any:
    """``value`` with every value known only after apply shown as such (inside documents too)."""
    if refs.is_unknown(value):
        return refs.KNOWN_AFTER_APPLY
    if isinstance(value, Mapping):
        return {k: known(v) for k, v in value.items()}
    if isinstance(value, list):
        return [known(v) for v in value]
    return value


def masked_value(value: Any) -> Any:
    """A sensitive value as shown: the placeholder (``None`` stays: absent)."""
    return None if value is None else SENSITIVE


def masked(attributes: Mapping[str, Any] | None, sensitive: Any) -> dict[str, Any] | None:
    """The attributes with every sensitive one replaced by the placeholder."""
    if attributes is None:
        return None
    return {k: (masked_value(v) if k in sensitive else v) for k, v in attributes.items()}

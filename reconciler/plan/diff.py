"""Attribute-level diff of JSON-shaped values. Pure and exact: dicts are
compared key by key (so a changed tag shows as ``tags.team``), everything
else (strings, numbers, lists) as a whole."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

MISSING = None


@dataclasses.dataclass(frozen=True, slots=True)
class AttributeChange:
    path: str
    before: Any
    after: Any
    sensitive: bool = False

    @property
    def top(self) -> str:
        return self.path.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        if self.sensitive:
            return {"path": self.path, "sensitive": True}
        return {"path": self.path, "before": self.before, "after": self.after}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _diff(path: str, before: Any, after: Any, sensitive: frozenset[str],
          out: list[AttributeChange]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            _diff(f"{path}.{key}" if path else str(key), before.get(key), after.get(key), sensitive, out)
        return
    if _canonical(before) != _canonical(after):
        secret = path in sensitive or path.split(".", 1)[0] in sensitive
        out.append(AttributeChange(path, before, after, secret))


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, *,
         keys: set[str] | None = None,
         sensitive: frozenset[str] = frozenset()) -> list[AttributeChange]:
    """Changes from ``before`` to ``after``, limited to top-level ``keys`` if given."""
    before = before or {}
    after = after or {}
    names = keys if keys is not None else set(before) | set(after)
    out: list[AttributeChange] = []
    for key in sorted(names):
        _diff(key, before.get(key), after.get(key), sensitive, out)
    return out

"""Attribute-level diff of JSON-shaped values. Pure and exact, with explicit
operations (kopf's add / change / remove): a key missing on one side is an
add or a remove, never a change from or to null. Mappings are compared key
by key (a changed tag shows as ``tags.team``); lists of documents (policy
statements, grants) element by element, by ``Sid`` when every element has a
distinct one, else by position (``policy.Statement[Sid=Admin].Action``,
``grants[1]``); IAM policy documents by meaning, statement by statement
(``policydoc``: a reordered or respelled but equal document is no change);
everything else (strings, numbers, lists of scalars) whole.

Hand-written rather than deepdiff: our values are JSON-shaped and small, the
paths must read as the manifest's fields (deepdiff's are ``root['a'][0]``),
missing-versus-null and Sid matching would need translating anyway, and the
core stays free of dependencies."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.plan import policydoc

MISSING = None  # what ``before`` / ``after`` hold for a side that has no value (see ``op``)
_ABSENT: Any = object()
_TOP = re.compile(r"[.\[]")


class DiffOperation(enum.StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


@dataclasses.dataclass(frozen=True, slots=True)
class AttributeChange:
    path: str
    before: Any
    after: Any
    sensitive: bool = False
    op: DiffOperation | None = None  # None: from the values, ``None`` read as missing (older plans)

    @property
    def operation(self) -> DiffOperation:
        if self.op is not None:
            return self.op
        if self.before is None:
            return DiffOperation.ADD
        if self.after is None:
            return DiffOperation.REMOVE
        return DiffOperation.CHANGE

    @property
    def top(self) -> str:
        """The top-level attribute the path is under."""
        return _TOP.split(self.path, 1)[0]

    def to_json(self) -> dict[str, Any]:
        if self.sensitive:
            return {"path": self.path, "op": self.operation.value, "sensitive": True}
        return {"path": self.path, "op": self.operation.value, "before": self.before, "after": self.after}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributeChange:
        op = data.get("op")
        return cls(data["path"], data.get("before"), data.get("after"), data.get("sensitive", False),
                   DiffOperation(op) if op else None)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _documents(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _by_sid(items: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]] | None:
    sids = [item.get("Sid") for item in items]
    if any(not isinstance(s, str) or not s for s in sids) or len(set(sids)) != len(sids):
        return None
    return {str(item["Sid"]): item for item in items}


def _diff_documents(path: str, before: list[Any], after: list[Any], out: list[AttributeChange],
                    sensitive: frozenset[str]) -> None:
    """Lists of documents, element by element (by Sid when both sides name every statement)."""
    old, new = _by_sid(before), _by_sid(after)
    if old is not None and new is not None:
        for sid in [*old, *(s for s in new if s not in old)]:
            _diff(f"{path}[Sid={sid}]", old.get(sid, _ABSENT), new.get(sid, _ABSENT), sensitive, out)
        return
    for index in range(max(len(before), len(after))):
        _diff(f"{path}[{index}]", before[index] if index < len(before) else _ABSENT,
              after[index] if index < len(after) else _ABSENT, sensitive, out)


_SCALARS = (str, int, float, bool)


def _diff(path: str, before: Any, after: Any, sensitive: frozenset[str], out: list[AttributeChange]) -> None:
    if type(before) is type(after) and type(before) in _SCALARS and before == after:
        return  # the same scalar (most of a no-op plan): nothing to compare by meaning
    if policydoc.is_document(before) and policydoc.is_document(after):  # by meaning: see policydoc
        out.extend(policydoc.changes(path, before, after,
                                     sensitive=path in sensitive or _TOP.split(path, 1)[0] in sensitive))
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            _diff(f"{path}.{key}" if path else str(key), before.get(key, _ABSENT), after.get(key, _ABSENT),
                  sensitive, out)
        return
    if _documents(before) and _documents(after):
        _diff_documents(path, before, after, out, sensitive)
        return
    if before is _ABSENT and after is _ABSENT:
        return
    secret = path in sensitive or _TOP.split(path, 1)[0] in sensitive
    if before is _ABSENT:
        out.append(AttributeChange(path, MISSING, after, secret, DiffOperation.ADD))
    elif after is _ABSENT:
        out.append(AttributeChange(path, before, MISSING, secret, DiffOperation.REMOVE))
    elif _canonical(before) != _canonical(after):
        out.append(AttributeChange(path, before, after, secret, DiffOperation.CHANGE))


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, *,
         keys: set[str] | None = None,
         sensitive: frozenset[str] = frozenset()) -> list[AttributeChange]:
    """Changes from ``before`` to ``after``, limited to top-level ``keys`` if given."""
    before = before or {}
    after = after or {}
    names = keys if keys is not None else set(before) | set(after)
    out: list[AttributeChange] = []
    for key in sorted(names):
        _diff(key, before.get(key, _ABSENT), after.get(key, _ABSENT), sensitive, out)
    return out

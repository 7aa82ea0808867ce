"""Unmanaged objects (``drift --unmanaged``): live AWS objects that state
does not record although they look like this stack's, found by the kinds'
optional ``unmanaged`` hook (kinds/base.py ListsUnmanaged), reported apart
from drift by the renderers. Pure values: no AWS here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

TAGGED = "tagged"  # carries this stack's reconciler:stack tag (warning)
PREFIX = "prefix"  # under an alias or path prefix the stack's own objects use (info)
SEVERITY = {TAGGED: "warning", PREFIX: "info"}


@dataclasses.dataclass(frozen=True, slots=True)
class Unmanaged:
    """One live object state does not record. ``kind``: the kind that would
    manage it (KmsProvider, IamRole...); ``type``: what AWS calls it
    (``kms:key``, ``iam:role``...); ``id``: its ARN (or name where it has
    none); ``found_by``: TAGGED or PREFIX; ``reason`` and ``hint`` in words;
    ``address``: the address its reconciler:address tag names ("" when none)."""

    kind: str
    type: str
    id: str
    region: str
    found_by: str
    reason: str
    hint: str = ""
    address: str = ""

    @property
    def severity(self) -> str:
        return SEVERITY[self.found_by]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": self.type, "id": self.id, "region": self.region,
                "found_by": self.found_by, "severity": self.severity, "reason": self.reason,
                "hint": self.hint, "address": self.address}


def ordered(items: Sequence[Unmanaged]) -> tuple[Unmanaged, ...]:
    """Tagged ones first, then by kind, region and id; one item per object
    (an object both tagged and under a prefix is reported as tagged)."""
    seen: dict[tuple[str, str], Unmanaged] = {}
    for item in sorted(items, key=lambda i: (i.found_by != TAGGED, i.kind, i.region, i.id)):
        seen.setdefault((item.type, item.id), item)
    return tuple(seen.values())


def prefix_of(name: str) -> str | None:
    """The path prefix of ``team/app/key`` (``team/app/``), None without one:
    a bare name says nothing about what else is the stack's."""
    head, slash, _ = name.rpartition("/")
    return f"{head}/" if slash and head.strip("/") else None

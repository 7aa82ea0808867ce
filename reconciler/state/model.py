"""The state model and its JSON format. Pure: no file access here.

State never holds a plaintext secret nor an unsalted hash of one: kinds put
only AWS ids and non-secret attributes into ``attributes``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler import errors

FORMAT_VERSION = 1
MAX_APPLIED_PLANS = 200


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceState:
    kind: str
    name: str
    mode: str  # "managed" | "adopted" | "read"
    ids: Mapping[str, Any]
    attributes: Mapping[str, Any]
    connection: Mapping[str, Any]  # region and auth (env var *names* only)
    dependencies: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "mode": self.mode, "ids": dict(self.ids),
                "attributes": dict(self.attributes), "connection": dict(self.connection),
                "dependencies": list(self.dependencies)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceState:
        return cls(data["kind"], data["name"], data.get("mode", "managed"), data.get("ids", {}),
                   data.get("attributes", {}), data.get("connection", {}),
                   tuple(data.get("dependencies", ())))


@dataclasses.dataclass(frozen=True, slots=True)
class Deposed:
    """An object replaced but not yet deleted (Terraform's *deposed*): kept in
    state until its deletion succeeds, so a failed replace never forgets it."""

    id: str  # short, unique among the deposed objects of one address
    resource: ResourceState

    @classmethod
    def of(cls, resource: ResourceState) -> Deposed:
        return cls(uuid.uuid4().hex[:8], resource)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.resource.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deposed:
        return cls(str(data["id"]), ResourceState.from_json(data))


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    lineage: str | None = None  # None: no state written yet
    serial: int = 0
    resources: Mapping[str, ResourceState] = dataclasses.field(default_factory=dict)
    leases: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    journal: tuple[Mapping[str, Any], ...] = ()
    applied_plans: tuple[str, ...] = ()
    deposed: Mapping[str, tuple[Deposed, ...]] = dataclasses.field(default_factory=dict)  # by address

    @classmethod
    def empty(cls) -> State:
        return cls()

    def with_resource(self, resource: ResourceState) -> State:
        resources = dict(self.resources)
        resources[resource.address] = resource
        return dataclasses.replace(self, resources=resources)

    def without_resource(self, address: str) -> State:
        resources = {k: v for k, v in self.resources.items() if k != address}
        return dataclasses.replace(self, resources=resources)

    def with_deposed(self, address: str, deposed: Deposed) -> State:
        table = dict(self.deposed)
        table[address] = (*table.get(address, ()), deposed)
        return dataclasses.replace(self, deposed=table)

    def without_deposed(self, address: str, deposed_id: str) -> State:
        table = dict(self.deposed)
        left = tuple(d for d in table.get(address, ()) if d.id != deposed_id)
        if left:
            table[address] = left
        else:
            table.pop(address, None)
        return dataclasses.replace(self, deposed=table)

    def deposed_object(self, address: str, deposed_id: str) -> Deposed | None:
        return next((d for d in self.deposed.get(address, ()) if d.id == deposed_id), None)

    def with_applied_plan(self, plan_id: str) -> State:
        plans = (self.applied_plans + (plan_id,))[-MAX_APPLIED_PLANS:]
        return dataclasses.replace(self, applied_plans=plans)

    def next_serial(self) -> State:
        """The state as written next: serial + 1, and a lineage if it had none."""
        return dataclasses.replace(self, lineage=self.lineage or str(uuid.uuid4()), serial=self.serial + 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "resources": {k: v.to_json() for k, v in sorted(self.resources.items())},
            "leases": dict(self.leases),
            "journal": list(self.journal),
            "appliedPlans": list(self.applied_plans),
            "deposed": {k: [d.to_json() for d in v] for k, v in sorted(self.deposed.items())},
        }

    @classmethod
    def from_json(cls, data: Any, *, origin: str = "state") -> State:
        if not isinstance(data, dict) or "lineage" not in data or "serial" not in data:
            raise errors.StateError(f"{origin}: not a reconciler state file")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise errors.StateError(f"{origin}: state format version {version} is not supported "
                                    f"(this reconciler reads version {FORMAT_VERSION})")
        try:
            resources = {k: ResourceState.from_json(v) for k, v in data.get("resources", {}).items()}
            deposed = {k: tuple(Deposed.from_json(d) for d in v) for k, v in data.get("deposed", {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise errors.StateError(f"{origin}: malformed resource entry ({exc})") from exc
        return cls(data["lineage"], int(data["serial"]), resources, data.get("leases", {}),
                   tuple(data.get("journal", ())), tuple(data.get("appliedPlans", ())),
                   {k: v for k, v in deposed.items() if v})


def successor(state: State, current: State, where: str) -> State:
    """What a backend writes over ``current``: ``state`` as the serial after
    both, keeping the lineage, and never over a state of another lineage."""
    if current.lineage and state.lineage and current.lineage != state.lineage:
        raise errors.StateError(f"{where}: state lineage changed underneath this run "
                                f"({current.lineage} != {state.lineage}); refusing to overwrite")
    return dataclasses.replace(state, lineage=state.lineage or current.lineage,
                               serial=max(current.serial, state.serial)).next_serial()


EncodeCache = dict[int, tuple[ResourceState, str]]


def dumps(state: State, cache: EncodeCache | None = None) -> str:
    """The state file's text: sorted keys, one resource per line, so a diff of
    two states is readable and writing a large state stays fast: json's C
    encoder (an indented dump is pure Python), and with ``cache`` an entry
    already encoded by this writer is not encoded again (entries are frozen
    and shared between successive states)."""
    cache = cache if cache is not None else {}

    def encode(entry: ResourceState) -> str:
        hit = cache.get(id(entry))
        if hit is None or hit[0] is not entry:
            hit = cache[id(entry)] = (entry, json.dumps(entry.to_json(), sort_keys=True))
        return hit[1]

    data = state.to_json()
    data.pop("resources")
    resources = {k: encode(v) for k, v in state.resources.items()}
    lines = ["{"]
    for key in sorted(data):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key], sort_keys=True)},")
    if resources:
        lines.append('  "resources": {')
        items = [f"    {json.dumps(k)}: {v}" for k, v in sorted(resources.items())]
        lines.append(",\n".join(items))
        lines.append("  }")
    else:
        lines.append('  "resources": {}')
    lines.append("}")
    return "\n".join(lines) + "\n"

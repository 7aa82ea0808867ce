"""Plan values: what is desired, what changes, what drifted. Pure, and
round-trips through JSON for saved plan files."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler.plan import actions, diff, freshness
from reconciler.state import model as state_model

PLAN_FORMAT = "reconciler-plan/v1"
PROTECT = "protect"
PROTECT_DEFAULT = True  # the one default of `protect`, for every kind that offers it


def protect_of(attributes: Mapping[str, Any]) -> bool:
    """``protect`` as given, else the default: an object is kept unless told otherwise."""
    return bool(attributes.get(PROTECT, PROTECT_DEFAULT))


def protected(attributes: Mapping[str, Any] | None, *, offers: bool) -> bool:
    """Whether destroying or replacing is refused. ``offers``: the kind offers
    ``protect`` (its rules say so); then a missing value is the default, True,
    whatever wrote the attributes (an older state, a plan without refresh)."""
    return attributes is not None and offers and protect_of(attributes)


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """A resource as the manifests want it, normalised by its kind."""

    kind: str
    name: str
    mode: state_model.Mode
    attributes: Mapping[str, Any]
    connection: Mapping[str, Any]
    replace_on: frozenset[str] = frozenset()
    sensitive: frozenset[str] = frozenset()
    destroy_on: frozenset[str] = frozenset()  # removing something under these destroys it
    dependencies: tuple[str, ...] = ()
    lookup: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # how to find an adopted object

    @property
    def address(self) -> state_model.Address:
        return state_model.Address.of(self.kind, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "mode": self.mode,
                "attributes": dict(self.attributes), "connection": dict(self.connection),
                "replaceOn": sorted(self.replace_on), "sensitive": sorted(self.sensitive),
                "destroyOn": sorted(self.destroy_on),
                "dependencies": list(self.dependencies), "lookup": dict(self.lookup)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Desired:
        return cls(data["kind"], data["name"], state_model.Mode(data["mode"]), data["attributes"], data["connection"],
                   frozenset(data.get("replaceOn", ())), frozenset(data.get("sensitive", ())),
                   frozenset(data.get("destroyOn", ())),
                   tuple(data.get("dependencies", ())), data.get("lookup", {}))


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceChange:
    address: str
    kind: str
    name: str
    action: actions.Action
    mode: state_model.Mode
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changes: tuple[diff.AttributeChange, ...] = ()
    replace_paths: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    requires_allow_destroy: bool = False
    sensitive: tuple[str, ...] = ()  # top-level attributes never to be shown
    deposed: str = ""  # the deposed id, when the change deletes a deposed object of ``kind/name``
    subject: str = ""  # what a timed action (rotate, revoke) acts on, when not the whole resource
    adopts: bool = False  # reads the object into state first: found by its tags when state lacked it
    resumes: bool = False  # only records what an interrupted run made (no manifest change asks for it)

    @property
    def timed(self) -> bool:
        """Whether time or an interrupted run asks for it, not the manifests
        (what ``apply --only-due`` performs without a review)."""
        return self.action.timed or self.resumes

    @property
    def resource_address(self) -> state_model.Address:
        """``kind/name``: the address in state (``address`` also names a deposed object)."""
        return state_model.Address.of(self.kind, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "kind": self.kind, "name": self.name,
                "action": self.action.value, "mode": self.mode,
                "before": self.before, "after": self.after,
                "changes": [c.to_json() for c in self.changes],
                "replacePaths": list(self.replace_paths), "notes": list(self.notes),
                "requiresAllowDestroy": self.requires_allow_destroy,
                "sensitive": list(self.sensitive), "deposed": self.deposed, "subject": self.subject,
                **({"adopts": True} if self.adopts else {}),
                **({"resumes": True} if self.resumes else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceChange:
        changes = tuple(diff.AttributeChange.from_json(c) for c in data["changes"])
        return cls(data["address"], data["kind"], data["name"], actions.Action(data["action"]),
                   state_model.Mode(data["mode"]), data["before"], data["after"], changes,
                   tuple(data.get("replacePaths", ())), tuple(data.get("notes", ())),
                   data.get("requiresAllowDestroy", False), tuple(data.get("sensitive", ())),
                   data.get("deposed", ""), data.get("subject", ""), bool(data.get("adopts", False)),
                   bool(data.get("resumes", False)))


@dataclasses.dataclass(frozen=True, slots=True)
class DriftItem:
    """A difference between the recorded state and live AWS."""

    address: str
    severity: str  # "critical" | "warning" | "info" (reported, nothing to fix: see Refreshed.info)
    changes: tuple[diff.AttributeChange, ...]
    gone: bool = False
    note: str = ""
    severities: tuple[str, ...] = ()  # per attribute, parallel to ``changes``; (): each as severe as the item

    def __post_init__(self) -> None:
        if all(s == self.severity for s in self.severities):  # one way to say "as severe as the item"
            object.__setattr__(self, "severities", ())

    @property
    def attribute_severities(self) -> tuple[str, ...]:
        """How severe each changed attribute is (the item's own severity where its kind gave none)."""
        if len(self.severities) == len(self.changes):
            return self.severities
        return tuple(self.severity for _ in self.changes)

    def to_json(self) -> dict[str, Any]:
        data = {"address": self.address, "severity": self.severity, "gone": self.gone,
                "note": self.note, "changes": [c.to_json() for c in self.changes]}
        if self.severities:
            data["severities"] = list(self.severities)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftItem:
        changes = tuple(diff.AttributeChange.from_json(c) for c in data["changes"])
        return cls(data["address"], data["severity"], changes, data.get("gone", False),
                   data.get("note", ""), tuple(data.get("severities", ())))


@dataclasses.dataclass(frozen=True, slots=True)
class Refreshed:
    """What a refresh found for one resource in state: its live attributes, or
    ``None`` when the object no longer exists; and what the kind reports about
    live objects it does not manage (``info`` drift, e.g. grants AWS services made)."""

    attributes: Mapping[str, Any] | None
    ids: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    info: tuple[DriftItem, ...] = ()
    learned: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # ids state lacks (older state)
    # set when the object was found by the tags naming this stack and address (SPEC 3), not by state:
    # how it was found, in words (the plan reads it in, ``<=``, instead of creating a duplicate)
    found_by: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    id: str
    created_at: str
    stack: str
    directory: str
    manifests_hash: str
    state_lineage: str | None
    state_serial: int
    refreshed: bool
    targets: tuple[str, ...]
    changes: tuple[ResourceChange, ...]  # in execution order
    drift: tuple[DriftItem, ...]
    desired: Mapping[str, Desired]
    schedule: tuple[str, ...] = ()  # timed work to come, one line each (kinds' ``schedule`` hooks)
    read_at: str = ""  # when its refresh began (by the clock; "" without one): what apply records as read
    confirmed: tuple[str, ...] = ()  # in state, found by that refresh exactly as recorded, nothing to change
    destroy: bool = False  # ``reconciler destroy``'s: planned against no manifests
    refresh_ttl: freshness.Decision | None = None  # what --refresh-ttl decided (None: not given)
    # ids the refresh learned for entries an older reconciler recorded without them (a secret's storeVersion,
    # a key's arns): apply records them on the entries it does not write, so later refreshes read less
    learned: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def actionable(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.action is not actions.Action.NOOP)

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    @property
    def untimed(self) -> tuple[ResourceChange, ...]:
        """Actionable changes neither time nor an interrupted run asks for:
        what only a reviewed apply may perform."""
        return tuple(c for c in self.actionable if not c.timed)

    def counts(self) -> dict[str, int]:
        counts = {a.value: 0 for a in actions.Action}
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "id": self.id, "createdAt": self.created_at,
                "stack": self.stack, "directory": self.directory,
                "manifestsHash": self.manifests_hash, "stateLineage": self.state_lineage,
                "stateSerial": self.state_serial, "refreshed": self.refreshed,
                "targets": list(self.targets),
                "changes": [c.to_json() for c in self.changes],
                "drift": [d.to_json() for d in self.drift],
                "desired": {k: v.to_json() for k, v in self.desired.items()},
                **({"schedule": list(self.schedule)} if self.schedule else {}),
                **({"readAt": self.read_at} if self.read_at else {}),
                **({"confirmed": list(self.confirmed)} if self.confirmed else {}),
                **({"destroy": True} if self.destroy else {}),
                **({"refreshTtl": self.refresh_ttl.to_json()} if self.refresh_ttl is not None else {}),
                **({"learned": {k: dict(v) for k, v in self.learned.items()}} if self.learned else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(data["id"], data["createdAt"], data["stack"], data["directory"],
                   data["manifestsHash"], data["stateLineage"], data["stateSerial"],
                   data["refreshed"], tuple(data["targets"]),
                   tuple(ResourceChange.from_json(c) for c in data["changes"]),
                   tuple(DriftItem.from_json(d) for d in data["drift"]),
                   {k: Desired.from_json(v) for k, v in data["desired"].items()},
                   tuple(data.get("schedule", ())), str(data.get("readAt", "")),
                   tuple(data.get("confirmed", ())), bool(data.get("destroy", False)),
                   freshness.Decision.from_json(data["refreshTtl"]) if data.get("refreshTtl") else None,
                   {k: dict(v) for k, v in (data.get("learned") or {}).items()})

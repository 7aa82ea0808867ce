"""The state model and its JSON format. Pure: no file access here.

State never holds a plaintext secret nor an unsalted hash of one: kinds put
only AWS ids and non-secret attributes into ``attributes``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from reconciler import errors

FORMAT_VERSION = 1
MAX_APPLIED_PLANS = 200


class Address(str):
    """``Kind/name``: how state, plans, references and the journal name one
    object. A ``str`` (JSON keys, messages) that knows its parts."""

    __slots__ = ()

    @classmethod
    def of(cls, kind: str, name: str) -> Address:
        return cls(f"{kind}/{name}")

    @property
    def kind(self) -> str:
        return self.partition("/")[0]

    @property
    def name(self) -> str:
        return self.partition("/")[2]


class Mode(enum.StrEnum):
    """How reconciler holds an object: it made it and owns it; it adopted one
    made elsewhere and converges it (``keyId`` + ``manage: true``); or it only
    reads one (``keyId``), recording changes and never reverting them."""

    MANAGED = "managed"
    ADOPTED = "adopted"
    READ = "read"


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceState:
    kind: str
    name: str
    mode: Mode
    ids: Mapping[str, Any]
    attributes: Mapping[str, Any]
    connection: Mapping[str, Any]  # region and auth (env var *names* only)
    dependencies: tuple[str, ...] = ()
    # when the attributes were last confirmed against live AWS (ISO-8601, to the second): written by
    # apply for what it changed or found unchanged; "" when not known (``plan --refresh-ttl`` refreshes)
    read_at: str = ""

    @property
    def address(self) -> Address:
        return Address.of(self.kind, self.name)

    def read(self, at: str) -> ResourceState:
        """This entry as confirmed against live AWS at ``at``."""
        return self if self.read_at == at else dataclasses.replace(self, read_at=at)

    def unread(self) -> ResourceState:
        """This entry with no read time: not known to match live AWS."""
        return dataclasses.replace(self, read_at="") if self.read_at else self

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "mode": self.mode, "ids": dict(self.ids),
                "attributes": dict(self.attributes), "connection": dict(self.connection),
                "dependencies": list(self.dependencies), **({"readAt": self.read_at} if self.read_at else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceState:
        """An entry as written; every field checked, so a damaged one is a
        clear StateError naming it, never a crash later."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object, got {_shape(data)}")
        for field in ("kind", "name"):
            if not isinstance(data.get(field), str) or not data[field]:
                raise ValueError(f"{field}: expected a name, got {_shape(data.get(field))}")
        for field in ("ids", "attributes", "connection"):
            if not isinstance(data.get(field, {}), Mapping):
                raise ValueError(f"{field}: expected an object, got {_shape(data.get(field))}")
        dependencies = data.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise ValueError(f"dependencies: expected a list of addresses, got {_shape(dependencies)}")
        read_at = data.get("readAt", "")
        if read_at != "" and parse_time(read_at) is None:
            raise ValueError(f"readAt: expected an ISO-8601 time with its zone, got {_shape(read_at)}")
        return cls(data["kind"], data["name"], Mode(data.get("mode", Mode.MANAGED)), data.get("ids", {}),
                   data.get("attributes", {}), data.get("connection", {}), tuple(dependencies), read_at)


def parse_time(value: Any) -> datetime.datetime | None:
    """A time as state records it (ISO-8601 with its zone), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


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


class Operation(enum.StrEnum):
    """What a journal entry records: multi-step work in flight."""

    CREATE = "create"  # an AWS object about to be created (its creation tagged with the operation id)
    WRITE = "write"  # a value about to be stored (Secret)
    COPY = "copy"  # versions about to be re-sealed in place or copied to another store (Vault)
    MOVE = "move"  # versions about to move to another vault (Secret)
    ROTATE = "rotate"  # an access key about to be replaced (AccessKeyRotation: evict, create, verify, write)


@dataclasses.dataclass(frozen=True, slots=True)
class JournalEntry:
    """Multi-step work in flight (SPEC 3): recorded before the first AWS call
    that creates or stores something, dropped in the same state write that
    records the result, so the next run finds an interruption and resumes or
    rolls it back instead of creating a duplicate."""

    operation_id: str
    address: str
    operation: Operation
    step: str
    data: Mapping[str, Any]
    started_at: str
    attempts: int = 1
    last_error: str = ""

    @classmethod
    def begin(cls, address: str, operation: Operation, step: str, data: Mapping[str, Any],
              started_at: str) -> JournalEntry:
        return cls(uuid.uuid4().hex, address, operation, step, data, started_at)

    def advanced(self, step: str, data: Mapping[str, Any]) -> JournalEntry:
        return dataclasses.replace(self, step=step, data=data)

    def failed(self, error: str) -> JournalEntry:
        """This attempt stopped on ``error`` (one line, no secret: an error message)."""
        return dataclasses.replace(self, last_error=error)

    def retried(self) -> JournalEntry:
        """Picked up again by a later run."""
        return dataclasses.replace(self, attempts=self.attempts + 1)

    def to_json(self) -> dict[str, Any]:
        return {"operationId": self.operation_id, "address": self.address, "operation": self.operation.value,
                "step": self.step, "data": dict(self.data), "startedAt": self.started_at,
                "attempts": self.attempts, "lastError": self.last_error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalEntry:
        return cls(str(data["operationId"]), str(data["address"]), Operation(data["operation"]),
                   str(data.get("step", "")), dict(data.get("data") or {}), str(data.get("startedAt", "")),
                   int(data.get("attempts", 1)), str(data.get("lastError", "")))


LEGACY_PENDING = "pending"  # Secret ids of older states: the journal before there was one


def _legacy_journal(resources: Mapping[str, ResourceState]) -> tuple[dict[str, ResourceState], list[JournalEntry]]:
    """Older states kept a Secret's write / copy / move journal in its ids
    (``pending``): moved onto the journal, so one code path reads both."""
    moved: dict[str, ResourceState] = {}
    entries: list[JournalEntry] = []
    for address, entry in resources.items():
        pending = entry.ids.get(LEGACY_PENDING)
        if not isinstance(pending, Mapping):
            moved[address] = entry
            continue
        ids = {k: v for k, v in entry.ids.items() if k != LEGACY_PENDING}
        if "move" in pending:
            operation, step = Operation.MOVE, "copied" if pending["move"].get("copied") else "copying"
        elif "copies" in pending:
            operation, step = Operation.COPY, "copying"
        else:
            operation, step = Operation.WRITE, "storing"
        entries.append(JournalEntry(f"legacy-{address}", address, operation, step, dict(pending), ""))
        moved[address] = dataclasses.replace(entry, ids=ids)
    return moved, entries


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    lineage: str | None = None  # None: no state written yet
    serial: int = 0
    resources: Mapping[str, ResourceState] = dataclasses.field(default_factory=dict)
    leases: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    journal: tuple[JournalEntry, ...] = ()
    applied_plans: tuple[str, ...] = ()
    deposed: Mapping[str, tuple[Deposed, ...]] = dataclasses.field(default_factory=dict)  # by address
    # the name of the stack that last wrote this state (None: written before it was recorded), and the
    # names it had before a rename: envelopes bound to those are re-bound, never left undecryptable
    stack: str | None = None
    former_stacks: tuple[str, ...] = ()
    # the manifests (their parsed-documents hash) the last complete apply made live: None before one,
    # while an apply runs, and after one that did not finish (``plan --refresh-ttl`` refreshes then)
    manifests_hash: str | None = None

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

    def with_lease(self, lease: Mapping[str, Any]) -> State:
        """A lease recorded (by its ``id``; DynamicIamTemplate leases: ids, names, dates, never a secret)."""
        leases = dict(self.leases)
        leases[str(lease["id"])] = dict(lease)
        return dataclasses.replace(self, leases=leases)

    def without_lease(self, lease_id: str) -> State:
        return dataclasses.replace(self, leases={k: v for k, v in self.leases.items() if k != lease_id})

    def leases_of(self, template: str) -> list[Mapping[str, Any]]:
        """The leases of ``template`` (its metadata.name), oldest first."""
        return sorted((v for v in self.leases.values() if isinstance(v, Mapping) and v.get("template") == template),
                      key=lambda v: (str(v.get("createdAt", "")), str(v.get("id", ""))))

    def with_journal(self, entry: JournalEntry) -> State:
        """``entry`` recorded (replacing the entry of the same operation id)."""
        kept = tuple(e for e in self.journal if e.operation_id != entry.operation_id)
        return dataclasses.replace(self, journal=(*kept, entry))

    def without_journal(self, operation_id: str) -> State:
        return dataclasses.replace(self, journal=tuple(e for e in self.journal if e.operation_id != operation_id))

    def without_journal_of(self, address: str) -> State:
        """Every entry of ``address`` dropped: its action completed."""
        if not any(e.address == address for e in self.journal):
            return self
        return dataclasses.replace(self, journal=tuple(e for e in self.journal if e.address != address))

    def journal_of(self, address: str, *operations: Operation) -> JournalEntry | None:
        """The open entry of ``address`` (of one of ``operations``, when given), newest first."""
        for entry in reversed(self.journal):
            if entry.address == address and (not operations or entry.operation in operations):
                return entry
        return None

    def with_applied_plan(self, plan_id: str) -> State:
        plans = (self.applied_plans + (plan_id,))[-MAX_APPLIED_PLANS:]
        return dataclasses.replace(self, applied_plans=plans)

    def written_by(self, stack: str) -> State:
        """This state as written by the stack ``stack``: a different recorded
        name is kept among the former names (a rename in progress)."""
        if self.stack == stack:
            return self
        former = self.former_stacks
        if self.stack and self.stack not in former:
            former = (*former, self.stack)
        return dataclasses.replace(self, stack=stack, former_stacks=tuple(f for f in former if f != stack))

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
            "journal": [e.to_json() for e in self.journal],
            "appliedPlans": list(self.applied_plans),
            "deposed": {k: [d.to_json() for d in v] for k, v in sorted(self.deposed.items())},
            **({"stack": self.stack} if self.stack else {}),
            **({"formerStacks": list(self.former_stacks)} if self.former_stacks else {}),
            **({"manifestsHash": self.manifests_hash} if self.manifests_hash else {}),
        }

    @classmethod
    def from_json(cls, data: Any, *, origin: str = "state") -> State:
        if not isinstance(data, dict) or "lineage" not in data or "serial" not in data:
            raise errors.StateError(f"{origin}: not a reconciler state file")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise errors.StateError(f"{origin}: state format version {version} is not supported "
                                    f"(this reconciler reads version {FORMAT_VERSION})")
        _check_top_level(data, origin)
        resources: dict[str, ResourceState] = {}
        for address, entry in data.get("resources", {}).items():
            try:
                resources[address] = ResourceState.from_json(entry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise errors.StateError(f"{origin}: resources.{address}: malformed entry ({exc}){_REPAIR}") from None
            if resources[address].address != address:
                raise errors.StateError(f"{origin}: resources.{address}: the entry is "
                                        f"{resources[address].address}{_REPAIR}")
        try:
            deposed = {k: tuple(Deposed.from_json(d) for d in v) for k, v in data.get("deposed", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise errors.StateError(f"{origin}: malformed deposed entry ({exc}){_REPAIR}") from None
        try:
            journal = [JournalEntry.from_json(e) for e in data.get("journal") or ()]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise errors.StateError(f"{origin}: malformed journal entry ({exc}){_REPAIR}") from exc
        for lease_id, lease in (data.get("leases") or {}).items():
            problem = _lease_problem(lease)
            if problem:
                raise errors.StateError(f"{origin}: leases.{lease_id}: malformed lease ({problem}){_REPAIR}")
        resources, legacy = _legacy_journal(resources)
        return cls(data["lineage"], int(data["serial"]), resources, data.get("leases", {}),
                   tuple(journal + legacy), tuple(data.get("appliedPlans", ())),
                   {k: v for k, v in deposed.items() if v}, data.get("stack"),
                   tuple(data.get("formerStacks") or ()), data.get("manifestsHash") or None)


_REPAIR = "; restore the previous version (state.json.backup, or the S3 key's .backup) or fix it by hand"
REPAIR = _REPAIR  # the hint other state modules end a damaged-state message with


LEASE_FIELDS = ("id", "template", "userName", "createdAt", "expiresAt", "maxExpiresAt")


def _lease_problem(lease: Any) -> str:
    """What is wrong with a recorded lease ("" when nothing): every field it is read by."""
    if not isinstance(lease, Mapping):
        return f"expected an object, got {_shape(lease)}"
    for field in LEASE_FIELDS:
        if not isinstance(lease.get(field), str) or not lease[field]:
            return f"{field}: expected a string, got {_shape(lease.get(field))}"
    if not isinstance(lease.get("connection", {}), Mapping):
        return f"connection: expected an object, got {_shape(lease.get('connection'))}"
    attempts = lease.get("revokeAttempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        return f"revokeAttempts: expected a whole number >= 0, got {_shape(attempts)}"
    return ""


def _shape(value: Any) -> str:
    """What a damaged field holds, named by its JSON type (never its content)."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case Mapping():
            return "an object"
        case _:
            return type(value).__name__


def _check_top_level(data: Mapping[str, Any], origin: str) -> None:
    """The fields every state file has, each of its JSON type: a damaged one is
    named, never a crash in whatever reads it later."""
    problems = []
    if not (data["lineage"] is None or isinstance(data["lineage"], str)):
        problems.append(f"lineage: expected a string, got {_shape(data['lineage'])}")
    serial = data["serial"]
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        problems.append(f"serial: expected a whole number >= 0, got {_shape(serial)}")
    for field, kind in (("resources", Mapping), ("leases", Mapping), ("deposed", Mapping)):
        if field in data and not isinstance(data[field], kind):
            problems.append(f"{field}: expected an object, got {_shape(data[field])}")
    for field in ("journal", "appliedPlans"):
        if field in data and data[field] is not None and not isinstance(data[field], list):
            problems.append(f"{field}: expected a list, got {_shape(data[field])}")
    if data.get("stack") is not None and not isinstance(data["stack"], str):
        problems.append(f"stack: expected a string, got {_shape(data['stack'])}")
    if data.get("manifestsHash") is not None and not isinstance(data["manifestsHash"], str):
        problems.append(f"manifestsHash: expected a string, got {_shape(data['manifestsHash'])}")
    former = data.get("formerStacks")
    if former is not None and not (isinstance(former, list) and all(isinstance(f, str) for f in former)):
        problems.append("formerStacks: expected a list of stack names")
    plans = data.get("appliedPlans") or []
    if isinstance(plans, list) and not all(isinstance(p, str) for p in plans):
        problems.append("appliedPlans: expected a list of plan ids")
    deposed = data.get("deposed") or {}
    if isinstance(deposed, Mapping) and not all(isinstance(v, list) for v in deposed.values()):
        problems.append("deposed: expected a list of objects per address")
    if problems:
        raise errors.StateError(f"{origin}: {problems[0]}{_REPAIR}")


def current_of(previous: bytes | None, parse: Callable[[bytes], State], *, tolerate_damage: bool) -> State:
    """The state a backend is about to write over (``previous``, its bytes as
    read; empty when none). ``tolerate_damage``: `state push --force` over a
    damaged state, which is kept as the backup."""
    if previous is None:
        return State.empty()
    try:
        return parse(previous)
    except errors.StateError:
        if tolerate_damage:
            return State.empty()
        raise


def above_backup(current: State, backup: State | None) -> State:
    """``current`` counted from its backup's serial when that is higher (a state
    restored from an older copy, gone on with --force): the next write never
    reuses a serial this lineage already had."""
    if backup is not None and backup.lineage == current.lineage and backup.serial > current.serial:
        return dataclasses.replace(current, serial=backup.serial)
    return current


def successor(state: State, current: State, where: str, *, replace_lineage: bool = False) -> State:
    """What a backend writes over ``current``: ``state`` as the serial after
    both, keeping the lineage, and never over a state of another lineage
    (unless ``replace_lineage``: `state push --force` of another lineage)."""
    if replace_lineage and state.lineage:
        return dataclasses.replace(state, serial=max(current.serial, state.serial)).next_serial()
    if current.lineage and state.lineage and current.lineage != state.lineage:
        raise errors.StateError(f"{where}: state lineage changed underneath this run "
                                f"({current.lineage} != {state.lineage}); refusing to overwrite")
    return dataclasses.replace(state, lineage=state.lineage or current.lineage,
                               serial=max(current.serial, state.serial)).next_serial()


EncodeCache = dict[int, tuple[ResourceState, str, str]]  # id(entry) -> (entry, its address, its line)


def dumps(state: State, cache: EncodeCache | None = None) -> str:
    """The state file's text: sorted keys, one resource per line, so a diff of
    two states is readable and writing a large state stays fast: json's C
    encoder (an indented dump is pure Python), and with ``cache`` an entry
    already encoded by this writer is not encoded again (entries are frozen
    and shared between successive states): a save of 10,000 entries after one
    action encodes that action's entries, and joins the others' lines."""
    cache = cache if cache is not None else {}

    def line(address: str, entry: ResourceState) -> str:
        hit = cache.get(id(entry))
        if hit is None or hit[0] is not entry or hit[1] != address:
            hit = cache[id(entry)] = (entry, address, f"    {json.dumps(address)}: "
                                                      f"{json.dumps(entry.to_json(), sort_keys=True)}")
        return hit[2]

    data = dataclasses.replace(state, resources={}).to_json()  # the header: entries are encoded below, once
    data.pop("resources")
    lines = ["{"]
    for key in sorted(data):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key], sort_keys=True)},")
    if state.resources:
        lines.append('  "resources": {')
        lines.append(",\n".join([line(k, state.resources[k]) for k in sorted(state.resources)]))
        lines.append("  }")
    else:
        lines.append('  "resources": {}')
    lines.append("}")
    return "\n".join(lines) + "\n"

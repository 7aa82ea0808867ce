"""What a kind tells the planner: its rules as values and pure callables,
handed in by the engine (a registry by kind), so the planner knows no kind
by name and plan/ imports nothing from kinds/. A kind subclasses ``Rules``
and overrides only the hooks it has; the defaults are a kind without rules."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.plan import actions, model
from reconciler.state import model as state_model

Action = actions.Action


class Severity(enum.StrEnum):
    INFO = "info"  # reported, nothing to fix
    WARNING = "warning"
    HIGH = "high"  # a risk that must not stay silent (a credential we did not issue, a rotation overdue)
    CRITICAL = "critical"  # something no longer works (a key disabled, a value lost)

    @property
    def rank(self) -> int:
        match self:
            case Severity.INFO:
                return 0
            case Severity.WARNING:
                return 1
            case Severity.HIGH:
                return 2
            case Severity.CRITICAL:
                return 3


def worst(severities: list[Severity]) -> Severity:
    """The most severe of several (a drift item is as severe as its worst attribute)."""
    return max(severities, key=lambda s: s.rank, default=Severity.WARNING)


@dataclasses.dataclass(frozen=True, slots=True)
class Timed:
    """An action time asks for (rotation due, lease expired), not the manifests."""

    action: Action  # ROTATE or REVOKE
    reason: str  # shown as the change's note: why now
    subject: str = ""  # what it acts on, when not the whole resource (a lease id, an access key id)
    destroys: bool = False  # deletes something no lease or state records (an orphan): needs --allow-destroy
    notes: tuple[str, ...] = ()  # more lines under the reason (each lease it revokes)

    def __post_init__(self) -> None:
        if not self.action.timed:
            raise ValueError(f"{self.action} is not a timed action")


Condition = tuple[str, str, tuple[str, ...]]  # (operator, condition key, values): ("StringEquals", "kms:KeySpec", ("RSA_4096",))


@dataclasses.dataclass(frozen=True, slots=True)
class Permission:
    """IAM actions a kind's AWS calls need, on exact resource ARNs where known,
    narrowed by ``conditions`` where AWS offers condition keys (and where it
    offers no resource ARN at all, say why in ``note``: the policy command prints it)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actions": list(self.actions), "resources": list(self.resources)}
        if self.conditions:
            out["conditions"] = [[op, key, list(values)] for op, key, values in self.conditions]
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Review:
    """A kind's verdict on one planned change: notes to show, problems that refuse the plan."""

    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PlanContext:
    """Everything a kind's plan rules may look at: the whole plan, not only its own change."""

    desired: Mapping[str, model.Desired]
    prior: state_model.State
    changes: Mapping[str, model.ResourceChange]  # by resource address, before the kinds' reviews
    now: datetime.datetime


class Rules:
    """A kind without rules of its own: every hook is a no-op, none raises."""

    noun = "object"  # how plan refusals name one object of the kind ("key")
    replace_order = Action.CREATE_THEN_DELETE  # where AWS allows old and new to coexist
    protected_replace_hint = "set protect: false and apply with --allow-destroy"
    offers_protect = False  # whether `protect` (default true) guards its objects

    def review(self, change: model.ResourceChange, context: PlanContext) -> Review:
        """Notes and refusals for a change, knowing the rest of the plan."""
        return Review()

    def severity(self, path: str, before: Any, after: Any) -> Severity:
        """How bad one drifted attribute is (recorded ``before``, live ``after``)."""
        return Severity.WARNING

    def ids_changed_by(self, change: model.ResourceChange) -> frozenset[str]:
        """Ids an in-place update changes (a key's replica ARNs when replicas are
        added or removed): references to them are known only after apply."""
        return frozenset()

    def claims(self, change: model.ResourceChange) -> frozenset[str]:
        """Names in the account the change may take or give up (a key's alias
        in each region): changes sharing one never run side by side, they run
        in the plan's order (a check-then-write on a shared name must not race)."""
        return frozenset()

    def pending(self, path: str, live: Any) -> str:
        """Why a live value differs from the recorded one by reconciler's own doing,
        not out of band ("" when it does not: drift). A secret still bound to the
        stack's former name is a re-bind the plan carries out, reported as info."""
        return ""

    def drift_note(self, entry: state_model.ResourceState) -> str:
        """What attribute drift of this kind means, in words."""
        return ""

    def malformed(self, entry: state_model.ResourceState) -> str:
        """What is wrong with a recorded entry's ids or attributes, in the shape
        this kind reads them ("" when nothing): damaged state is one clear error."""
        return ""

    def recreate(self, entry: state_model.ResourceState, desired: model.Desired) -> tuple[str, bool]:
        """How a create in place of a recorded object that no longer exists
        (and that nothing tagged for the stack stands in for) is planned: the
        note to show, and whether it needs --allow-destroy (whatever the old
        object held is lost: never a silent re-create)."""
        return (f"the {self.noun} recorded in state ({_ids_text(entry)}) no longer exists in AWS and none "
                "tagged for this stack and address was found: whatever it held is lost; a new one is made "
                "only with --allow-destroy"), True

    def interrupted(self, entry: state_model.ResourceState) -> bool:
        """A recorded object a crash left before it was written: its absence is not drift."""
        return False

    def unreadable(self, entry: state_model.ResourceState, prior: state_model.State,
                   refreshed: Mapping[str, model.Refreshed]) -> model.DriftItem | None:
        """One critical item standing in for attribute drift: the object is there but
        unusable (a secret whose key is gone or disabled), and what to do about it."""
        return None

    def timed(self, desired: model.Desired, entry: state_model.ResourceState,
              now: datetime.datetime, live: model.Refreshed | None = None,
              prior: state_model.State | None = None) -> tuple[Timed, ...]:
        """Actions due at ``now`` for a resource in state (rotation due, lease expired);
        ``live``: what this plan's refresh read of it (None without refresh);
        ``prior``: the whole recorded state (its leases, its journal)."""
        return ()

    def forced(self, desired: model.Desired, entry: state_model.ResourceState) -> Timed | None:
        """The action ``reconciler rotate`` asks for now, whatever the schedule
        (None: the kind has nothing to rotate)."""
        return None

    def schedule(self, desired: model.Desired, entry: state_model.ResourceState | None,
                 now: datetime.datetime, live: model.Refreshed | None = None) -> tuple[str, ...]:
        """What timed work comes next and when (a rotation due at T, a key to
        deactivate after its grace period): one line each, shown under the plan."""
        return ()

    def permissions(self, desired: model.Desired, stack: Mapping[str, model.Desired],
                    prior: state_model.State) -> tuple[Permission, ...]:
        """The IAM actions and resources this kind's AWS calls need for ``desired``
        (``stack``: every desired resource; ``prior``: state, for ARNs already known)."""
        return ()

    def granted(self, desired: model.Desired, stack: Mapping[str, model.Desired],
                prior: state_model.State) -> tuple[Permission, ...]:
        """What an identity this kind declares is allowed to do (an IamRole's
        grants; later a rotation or dynamic-template manager): ``policy --for``
        prints it. Empty: the kind declares no identity."""
        return ()


def _ids_text(entry: state_model.ResourceState) -> str:
    """The one id that names a recorded object best (its key id, name or ARN)."""
    for key in ("keyId", "name", "arn"):
        if isinstance(entry.ids.get(key), str):
            return f"{key} {entry.ids[key]}"
    return entry.address


DEFAULT = Rules()
Registry = Mapping[str, Rules]


def rules_for(registry: Registry, kind: str) -> Rules:
    return registry.get(kind, DEFAULT)


def check_state(prior: state_model.State, registry: Registry) -> None:
    """Every recorded entry in the shape its kind reads it, else StateError naming it."""
    for address, entry in sorted(prior.resources.items()):
        problem = rules_for(registry, entry.kind).malformed(entry)
        if problem:
            raise errors.StateError(f"{address}: its state entry is malformed ({problem}); restore the previous "
                                    "version (state.json.backup, or the S3 key's .backup) or fix the entry by hand")


def permissions_of(desired: Mapping[str, model.Desired], prior: state_model.State,
                   registry: Registry) -> tuple[Permission, ...]:
    """Every permission the stack's kinds need (what the ``policy`` command
    collects), merged: one entry per set of resources and conditions, actions
    sorted, notes kept once each."""
    merged: dict[tuple[tuple[str, ...], tuple[Condition, ...]], tuple[set[str], dict[str, None]]] = {}
    for _address, want in sorted(desired.items()):
        for permission in rules_for(registry, want.kind).permissions(want, desired, prior):
            found, notes = merged.setdefault((permission.resources, tuple(sorted(permission.conditions))),
                                             (set(), {}))
            found.update(permission.actions)
            if permission.note:
                notes[permission.note] = None
    return tuple(Permission(tuple(sorted(found)), resources, conditions, "\n".join(notes))
                 for (resources, conditions), (found, notes) in sorted(merged.items()))

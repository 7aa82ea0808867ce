"""What every kind provides, and the context its AWS side runs in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from reconciler.kinds import context
from reconciler.manifest import model as manifest
from reconciler.plan import actions
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import model as state_model

Checkpoint = Callable[[state_model.ResourceState], None]


AwsContext = context.ApplyContext  # the name kinds have always used (see kinds/context.py)


class Handler(Protocol):
    """What every reconciled kind implements: its desired form and how to read it
    back. What it can do to AWS objects is in the capability protocols below;
    the executor checks them for every change before the first write."""

    kind: str

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        """The normalised attributes the manifests ask for. ``resolve_values``
        False: leave out what needs secret values (env vars), for commands
        that only read."""

    def refresh(self, aws: AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        """Live attributes of a resource in state (None when it is gone)."""

    def check(self, aws: AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """Problems live AWS raises against this desired resource that must
        refuse the plan before any write (say, an alias held by a key this
        stack does not manage): one line each, starting with the address.
        Called at plan time, after refresh, for every desired resource."""


@runtime_checkable
class Creates(Protocol):
    def create(self, aws: AwsContext, desired: plan_model.Desired,
               checkpoint: Checkpoint) -> state_model.ResourceState: ...


@runtime_checkable
class Updates(Protocol):
    def update(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: Checkpoint) -> state_model.ResourceState: ...


@runtime_checkable
class Replaces(Protocol):
    """Makes the successor of an object while the old one still exists (create-then-delete)."""

    def replace(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: Checkpoint) -> state_model.ResourceState: ...


@runtime_checkable
class Deletes(Protocol):
    def delete(self, aws: AwsContext, entry: state_model.ResourceState) -> None: ...


@runtime_checkable
class Adopts(Protocol):
    """Takes over (or only reads) an object that exists outside this stack."""

    def lookup(self, aws: AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        """Find an object to adopt, by ``desired.lookup``."""

    def read(self, aws: AwsContext, desired: plan_model.Desired) -> state_model.ResourceState: ...


@runtime_checkable
class Imports(Protocol):
    """``reconciler import`` of a kind that is not adopted by a plain lookup
    (``Adopts.read`` of ``desired.lookup``): the state entry for the object
    ``aws_id`` names, refused in one line (errors.ConfigError / PlanError)
    when that object cannot be taken over as ``desired``, and a sentence
    saying what the next plan does with it."""

    def import_object(self, aws: AwsContext, desired: plan_model.Desired,
                      aws_id: str) -> tuple[state_model.ResourceState, str]: ...


@runtime_checkable
class FindsOwned(Protocol):
    """Finds the object this stack made for an address by what names it as
    ours (SPEC 3: the reconciler:stack and reconciler:address tags, or a vault
    entry bound to this stack, vault and name), when state does not record it
    (state lost, restored from an older copy, or an entry pointing at an
    object that no longer exists). Its ``read`` (Adopts) then reads that
    object into state for a managed resource, instead of creating a duplicate."""

    def find_owned(self, aws: AwsContext, desired: plan_model.Desired) -> planner.Refreshed | None:
        """The live attributes and ids of the object found, with ``found_by``
        saying how it was found (None: nothing carries this stack's name for it)."""


@runtime_checkable
class RunsTimed(Protocol):
    """Carries out the actions its rules' ``timed`` hook plans (rotate, revoke)."""

    def run_timed(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                  change: plan_model.ResourceChange, checkpoint: Checkpoint) -> state_model.ResourceState: ...


def needs(action: actions.Action, *, adopting: bool = False) -> tuple[type, ...]:
    """The capabilities a kind needs to carry out ``action`` (``adopting``: an
    update of an object not yet in state reads it in first)."""
    match action:
        case actions.Action.NOOP:
            return ()
        case actions.Action.CREATE:
            return (Creates,)
        case actions.Action.READ:
            return (Adopts,)
        case actions.Action.UPDATE:
            return (Updates, Adopts) if adopting else (Updates,)
        case actions.Action.CREATE_THEN_DELETE:
            return (Replaces, Deletes)
        case actions.Action.DELETE_THEN_CREATE:
            return (Deletes, Creates)
        case actions.Action.DELETE:
            return (Deletes,)
        case actions.Action.ROTATE | actions.Action.REVOKE:
            return (RunsTimed,)


def missing(handler: object, action: actions.Action, *, adopting: bool = False) -> str | None:
    """Why ``handler`` cannot carry out ``action`` (the first capability it lacks), or None."""
    for capability in needs(action, adopting=adopting):
        if not isinstance(handler, capability):
            return f"a {getattr(handler, 'kind', '?')} cannot be {_DONE[capability]} ({action.value})"
    return None


_DONE: dict[type, str] = {Creates: "created", Updates: "updated", Replaces: "replaced",
                          Deletes: "deleted", Adopts: "adopted or read", RunsTimed: "rotated or revoked"}


class ResolvesValues(Protocol):
    """Optional hooks of a Handler (the engine calls them when a kind has them)."""

    def resolve(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState | None,
                live: planner.Refreshed | None) -> tuple[plan_model.Desired, planner.Refreshed | None]:
        """At plan time, after refresh: fill in desired values that need AWS
        (a fromEnv fingerprint under the vault's KMS key), and re-express
        ``live`` in the same terms where an older token means the same value."""

    def preflight(self, aws: AwsContext, desired: plan_model.Desired,
                  resource: manifest.Resource | None) -> list[str]:
        """At apply, before the first write: problems that refuse the plan (a
        fromEnv value unset, empty or changed since the plan), one line each."""


class ListsUnmanaged(Protocol):
    """Optional hook of a Handler, called once per kind by ``drift --unmanaged``."""

    def unmanaged(self, aws: AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        """The live objects of this kind that state does not record although
        they carry this stack's ``reconciler:stack`` tag (warning), or that sit
        under the alias / path prefixes the stack's own objects use (info), in
        the regions the stack's resources (desired and recorded) use."""

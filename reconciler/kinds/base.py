"""What every kind provides, and the context its AWS side runs in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reconciler.kinds import context
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.state import model as state_model

Checkpoint = Callable[[state_model.ResourceState], None]


AwsContext = context.ApplyContext  # the name kinds have always used (see kinds/context.py)


class Handler(Protocol):
    kind: str

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        """The normalised attributes the manifests ask for. ``resolve_values``
        False: leave out what needs secret values (env vars), for commands
        that only read."""

    def refresh(self, aws: AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        """Live attributes of a resource in state (None when it is gone)."""

    def lookup(self, aws: AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        """Find an object to adopt, by ``desired.lookup``."""

    def check(self, aws: AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """Problems live AWS raises against this desired resource that must
        refuse the plan before any write (say, an alias held by a key this
        stack does not manage): one line each, starting with the address.
        Called at plan time, after refresh, for every desired resource."""

    def create(self, aws: AwsContext, desired: plan_model.Desired,
               checkpoint: Checkpoint) -> state_model.ResourceState: ...

    def read(self, aws: AwsContext, desired: plan_model.Desired) -> state_model.ResourceState: ...

    def update(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: Checkpoint) -> state_model.ResourceState: ...

    def replace(self, aws: AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: Checkpoint) -> state_model.ResourceState: ...

    def delete(self, aws: AwsContext, entry: state_model.ResourceState) -> None: ...


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

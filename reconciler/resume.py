"""Open journal entries first: before plan and apply look at anything else,
every entry an interrupted run left is resumed or rolled back by its kind's
``recover`` hook (kinds/recovery.py), and the plan says so. Plan applies the
outcome to the state it plans against, in memory; apply writes it (under the
state lock) before its first change."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from reconciler import errors, kinds
from reconciler.kinds import context, recovery
from reconciler.plan import actions
from reconciler.plan import model as plan_model
from reconciler.state import backend as state_backend
from reconciler.state import model as state_model

Progress = Callable[[str], None]


def recover(state: state_model.State, aws: context.ApplyContext,
            progress: Progress = lambda _m: None) -> tuple[state_model.State, tuple[recovery.Recovery, ...]]:
    """``state`` with every open journal entry resumed or rolled back (those a
    change continues stay open), and what became of each. No AWS call when
    the journal is empty."""
    found: list[recovery.Recovery] = []
    for entry in state.journal:
        handler = kinds.HANDLERS.get(entry.address.split("/", 1)[0])
        hook = getattr(handler, "recover", None)
        if hook is None:
            continue  # a kind that journals nothing: its entry waits for a version that knows it
        aws.state = state
        try:
            outcome: recovery.Recovery = hook(aws, entry)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{entry.address}: resuming operation {entry.operation_id}: ") from None
        state = outcome.applied(state)
        found.append(outcome)
        progress(outcome.note)
    aws.state = state
    return state, tuple(found)


def recover_written(backend: state_backend.Backend, aws: context.ApplyContext,
                    progress: Progress = lambda _m: None) -> tuple[recovery.Recovery, ...]:
    """Recover and write the outcome (the caller holds the state lock)."""
    state = backend.read()
    recovered, found = recover(state, aws, progress)
    if recovered != state:
        aws.state = backend.write(recovered)
    return found


def noted(plan: plan_model.Plan, found: Sequence[recovery.Recovery]) -> plan_model.Plan:
    """The plan saying what became of each open entry, on the change of the
    address that resumes it. A resumed object with nothing else to change is
    an update all the same: apply records it (a plan without changes applies
    nothing)."""
    if not found:
        return plan
    notes: dict[str, list[str]] = {}
    resumed: set[str] = set()
    for outcome in found:
        notes.setdefault(outcome.address, []).append(outcome.note)
        if outcome.outcome is recovery.Outcome.RESUMED:
            resumed.add(outcome.address)
    changes = []
    for change in plan.changes:
        extra = tuple(notes.get(change.address, ()))
        if extra and change.action is actions.Action.NOOP and change.address in resumed:
            change = dataclasses.replace(change, action=actions.Action.UPDATE)
        changes.append(dataclasses.replace(change, notes=extra + change.notes) if extra else change)
    return dataclasses.replace(plan, changes=tuple(changes))

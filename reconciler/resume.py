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
        handler = kinds.HANDLERS.get(state_model.Address(entry.address).kind)
        hook = getattr(handler, "recover", None)
        if hook is None:
            continue  # a kind that journals nothing: its entry waits for a version that knows it
        aws.state = state
        try:
            outcome: recovery.Recovery = hook(aws, entry)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{entry.address}: resuming operation {entry.operation_id}: ") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise errors.StateError(
                f"{entry.address}: journal entry {entry.operation_id} ({entry.operation.value}, step "
                f"{entry.step}) is malformed ({type(exc).__name__}: {exc}); check what it was doing in "
                "AWS, then remove it from the state's journal by hand (the previous state is in "
                "state.json.backup)") from None
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


def left_open(found: Sequence[recovery.Recovery], changing: set[str] | None) -> tuple[plan_model.DriftItem, ...]:
    """Entries a change was to continue, as warnings naming the operation:
    in a plan, those nothing changes any more (the manifest went back); for
    drift (``changing`` None), every one as info: reconciler's own unfinished
    work is not an out-of-band change, and a nightly drift check never pages
    for it."""
    why = ("nothing in this plan changes it any more; re-apply the change that started it to finish it"
           if changing is not None else "an apply of the change that started it finishes it (plan says)")
    severity = "warning" if changing is not None else "info"  # our own unfinished work never pages
    return tuple(plan_model.DriftItem(
        o.address, severity, (),
        note=(f"{o.note}: operation {o.journal.operation_id} ({o.journal.operation.value}, step "
              f"{o.journal.step}) is still open; {why}"))
        for o in found if o.outcome is recovery.Outcome.CONTINUES
        and (changing is None or o.address not in changing))


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
            change = dataclasses.replace(change, action=actions.Action.UPDATE, resumes=True)
        changes.append(dataclasses.replace(change, notes=extra + change.notes) if extra else change)
    changing = {c.address for c in changes if c.action is not actions.Action.NOOP}
    return dataclasses.replace(plan, changes=tuple(changes), drift=plan.drift + left_open(found, changing))

"""The executor: walks a plan's changes in order and saves state after every
completed action (and at checkpoints inside multi-step ones), so a crash
keeps what was done. A replace records the old object as *deposed* before the
kind creates its successor, and forgets it only once its deletion succeeded.
Kinds journal multi-step work (State.journal) through the same state writer
(``ApplyContext.persist``); an action that completes closes its entries."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from reconciler import errors, kinds
from reconciler.kinds import base
from reconciler.plan import actions, model, refs
from reconciler.state import backend as state_backend
from reconciler.state import model as state_model

Action = actions.Action
Progress = Callable[[str], None]


class Completed(str):
    """A progress message saying an action of the plan is done (and recorded
    in state): what the CLI logs, one line each, where no terminal shows a
    live display (CI logs are the audit trail)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyResult:
    state: state_model.State
    done: tuple[tuple[str, actions.Action], ...]


def check_preconditions(plan: model.Plan, *, allow_destroy: bool) -> None:
    """Everything that can refuse the plan before any AWS call is made."""
    needs = [c.address for c in plan.actionable if c.requires_allow_destroy]
    if needs and not allow_destroy:
        raise errors.PlanError(
            f"this plan destroys or replaces {', '.join(needs)}; re-run apply with --allow-destroy "
            "if that is intended")
    for change in plan.actionable:
        lacking = base.missing(kinds.handler_for(change.kind), change.action, adopting=change.adopts)
        if lacking:
            raise errors.PlanError(f"{change.address}: {lacking}")


def apply_plan(plan: model.Plan, backend: state_backend.Backend, aws: base.AwsContext, *, allow_destroy: bool,
               progress: Progress = lambda _m: None) -> ApplyResult:
    check_preconditions(plan, allow_destroy=allow_destroy)
    state = backend.read()
    aws.desired, aws.state = plan.desired, state
    done: list[tuple[str, actions.Action]] = []
    total = len(plan.actionable)

    def save(new_state: state_model.State) -> None:
        nonlocal state
        new_state = new_state.written_by(plan.stack)  # a renamed stack keeps its former names
        if new_state == state:
            return  # already written (a kind that settled its journal recorded this very result)
        state = backend.write(new_state)
        aws.state = state

    aws.persist = save  # the journal of multi-step work is written through the same writer

    for index, change in enumerate(plan.actionable, 1):
        handler = kinds.handler_for(change.kind)
        desired = plan.desired.get(change.resource_address)
        entry = state.resources.get(change.resource_address)
        started = time.monotonic()
        progress(f"[{index}/{total}] {change.action.symbol} {change.address}: {change.action.value}...")

        def checkpoint(resource: state_model.ResourceState) -> None:
            save(state.with_resource(resource))

        try:
            if desired is not None:  # references to what this apply made before are known now
                desired = refs.resolve_desired(desired, state)
            match change.action:
                case Action.CREATE:
                    assert desired is not None and isinstance(handler, base.Creates)
                    result = handler.create(aws, desired, checkpoint)
                    save(state.with_resource(result))  # `state` as the checkpoints left it
                case Action.READ:
                    assert desired is not None and isinstance(handler, base.Adopts)
                    result = handler.read(aws, desired)
                    save(state.with_resource(result))
                case Action.UPDATE:
                    assert desired is not None and isinstance(handler, base.Updates)
                    if entry is None or change.adopts:  # adopting (or found by its tags) and updating in one go
                        if not isinstance(handler, base.Adopts):
                            raise errors.PlanError(base.missing(handler, Action.READ) or "")
                        entry = handler.read(aws, desired)
                        checkpoint(entry)
                    result = handler.update(aws, desired, entry, change, checkpoint)
                    save(state.with_resource(result))
                case Action.CREATE_THEN_DELETE:
                    assert desired is not None and entry is not None
                    assert isinstance(handler, base.Replaces) and isinstance(handler, base.Deletes)
                    deposed = state_model.Deposed.of(entry)
                    for stale in state.deposed.get(change.address, ()):
                        if stale.resource.ids == entry.ids:  # left by a run stopped right here
                            state = state.without_deposed(change.address, stale.id)
                    save(state.with_deposed(change.address, deposed))  # before the new object exists
                    try:
                        result = handler.replace(aws, desired, entry, checkpoint)
                    except errors.ReconcilerError:
                        # no successor recorded and none possibly made (no create left open in the
                        # journal): the old object is simply current again. Otherwise it stays
                        # deposed until the journal's recovery finds what the create made.
                        open_create = any(j.address == change.address for j in state.journal)
                        if state.resources.get(change.address) == entry and not open_create:
                            save(state.without_deposed(change.address, deposed.id))
                        raise
                    save(state.with_resource(result))
                    handler.delete(aws, entry)
                    save(state.without_deposed(change.address, deposed.id))
                case Action.DELETE_THEN_CREATE:
                    assert desired is not None and entry is not None
                    assert isinstance(handler, base.Deletes) and isinstance(handler, base.Creates)
                    handler.delete(aws, entry)
                    save(state.without_resource(change.address))  # gone: a crash here plans a create
                    result = handler.create(aws, desired, checkpoint)
                    save(state.with_resource(result))
                case Action.ROTATE | Action.REVOKE:
                    assert desired is not None and entry is not None and isinstance(handler, base.RunsTimed)
                    result = handler.run_timed(aws, desired, entry, change, checkpoint)
                    save(state.with_resource(result))
                case Action.DELETE if change.deposed:
                    assert isinstance(handler, base.Deletes)
                    address = change.resource_address
                    gone = state.deposed_object(address, change.deposed)
                    current = state.resources.get(address)
                    if gone is not None and (current is None or current.ids != gone.resource.ids):
                        handler.delete(aws, gone.resource)
                    save(state.without_deposed(address, change.deposed))
                case Action.DELETE:
                    assert entry is not None and isinstance(handler, base.Deletes)
                    handler.delete(aws, entry)
                    save(state.without_resource(change.address))
                case Action.NOOP:
                    continue
        except errors.ReconcilerError as exc:
            _record_failure(save, state, change.resource_address, exc)
            applied = f"{len(done)} of {total} changes were applied and recorded in state"
            raise errors.prefixed(
                exc, f"{change.address}: ", f" ({applied}; run plan to see what is left)") from None
        if state.journal_of(change.resource_address) is not None and not change.deposed:
            save(state.without_journal_of(change.resource_address))  # its multi-step work is complete
        done.append((change.address, change.action))
        progress(Completed(f"[{index}/{total}] {change.action.symbol} {change.address}: {change.action.value} "
                           f"done ({time.monotonic() - started:.1f}s)"))
    save(state.with_applied_plan(plan.id))
    return ApplyResult(state, tuple(done))


def _record_failure(save: Callable[[state_model.State], None], state: state_model.State, address: str,
                    exc: errors.ReconcilerError) -> None:
    """An open journal entry of ``address`` keeps why its step stopped (the
    error's first line: no secret ever reaches an error), for the next run."""
    entry = state.journal_of(address)
    if entry is None:
        return
    try:
        save(state.with_journal(entry.failed(exc.message.splitlines()[0] if exc.message else type(exc).__name__)))
    except errors.ReconcilerError:
        pass  # the original failure is what the user needs to see

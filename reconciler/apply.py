"""The executor: walks a plan's changes in order and saves state after every
completed action (and at checkpoints inside multi-step ones), so a crash
keeps what was done. A replace records the old object as *deposed* before the
kind creates its successor, and forgets it only once its deletion succeeded.
Kinds journal multi-step work (State.journal) through the same state writer
(``ApplyContext.persist``); an action that completes closes its entries."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import heapq
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from reconciler import clock, errors, kinds
from reconciler.kinds import base
from reconciler.plan import actions, model, refs, schedule
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
               progress: Progress = lambda _m: None, parallelism: int = 1) -> ApplyResult:
    """Run ``plan``: in its order with ``parallelism`` 1; else up to ``parallelism``
    actions side by side, each started once what it waits for completed
    (plan/schedule.py). A failure stops the starting of further actions; the
    ones running finish (and are recorded) before its error is raised."""
    check_preconditions(plan, allow_destroy=allow_destroy)
    initial = backend.read()
    writer = _Writer(backend, plan.stack, initial)
    if initial.manifests_hash:  # under way: until it completes, the state is not known to match them
        writer.save(dataclasses.replace(initial, manifests_hash=None), writer.state)
    aws.desired, aws.state = plan.desired, writer.state
    if parallelism <= 1 or len(plan.actionable) <= 1:
        done = _run_in_order(plan, writer, aws, progress)
    else:
        done = _run_side_by_side(plan, writer, aws, progress, parallelism)
    aws.state = writer.save(completed(plan, initial, writer.state.with_applied_plan(plan.id)), writer.state)
    return ApplyResult(aws.state, tuple(done))


def completed(plan: model.Plan, initial: state_model.State, state: state_model.State) -> state_model.State:
    """``state`` once every action of ``plan`` is done (``initial``: as it was
    before the first). A complete plan records the manifests it made live
    (``plan --refresh-ttl`` trusts a state only under them); a targeted one
    keeps what was recorded if it planned the same manifests, else forgets
    it, and a destroy forgets it.
    What the plan's refresh found exactly as recorded, and this apply did not
    write again, is recorded as read when that refresh began; what it found
    drifted is no longer known to match live AWS; ids it learned for entries
    an older reconciler recorded without them are added (never replacing one)."""
    if plan.destroy:
        recorded = None  # what is live is no longer what the manifests say
    elif not plan.targets:
        recorded = plan.manifests_hash or None
    else:
        recorded = initial.manifests_hash if initial.manifests_hash == plan.manifests_hash else None
    read_at = state_model.parse_time(plan.read_at)
    resources: dict[str, state_model.ResourceState] = dict(state.resources)
    for address in plan.confirmed:
        entry = resources.get(address)
        if read_at is None or entry is None or entry is not initial.resources.get(address):
            continue  # written by this apply, read then
        before = state_model.parse_time(entry.read_at)
        if before is None or before < read_at:
            resources[address] = entry.read(plan.read_at)
    for item in plan.drift:
        entry = resources.get(item.address)
        if entry is not None and entry is initial.resources.get(item.address):
            resources[item.address] = entry.unread()
    for address, ids in sorted(plan.learned.items()):  # what an older reconciler did not record: now it is
        entry = resources.get(address)
        if entry is not None and initial.resources.get(address) is not None \
                and entry.ids == initial.resources[address].ids and any(k not in entry.ids for k in ids):
            resources[address] = dataclasses.replace(entry, ids={**entry.ids, **{k: v for k, v in ids.items()
                                                                                 if k not in entry.ids}})
    kept = all(resources[a] is e for a, e in state.resources.items())
    return dataclasses.replace(state, resources=state.resources if kept else resources, manifests_hash=recorded)


class _Writer:
    """The one state writer of a run: every write of the executor and of the
    kinds' journals (``ApplyContext.persist``) goes through ``save``, one at a
    time. A write states the state it was computed from (``base``, the view of
    the action that made it): when other actions wrote since, what it changed
    is applied to the state they left, never written over it."""

    def __init__(self, backend: state_backend.Backend, stack: str, state: state_model.State) -> None:
        self.backend, self.stack, self.state = backend, stack, state
        self._lock = threading.Lock()

    def save(self, new_state: state_model.State, base: state_model.State) -> state_model.State:
        with self._lock:
            if base is not self.state:
                new_state = rebase(base, new_state, self.state)
            new_state = new_state.written_by(self.stack)  # a renamed stack keeps its former names
            if new_state != self.state:  # else already written (a kind that settled its journal recorded it)
                self.state = self.backend.write(new_state)
            return self.state


def _view(aws: base.AwsContext, writer: _Writer) -> base.AwsContext:
    """A context for one action running beside others: its own view of the
    state (as it stood when the action started, then as each of its writes left
    it), written through ``writer`` with that view as the base."""
    view = aws.fork()
    view.state = writer.state

    def persist(new_state: state_model.State) -> None:
        view.state = writer.save(new_state, view.state)

    view.persist = persist
    return view


def _run_in_order(plan: model.Plan, writer: _Writer, aws: base.AwsContext,
                  progress: Progress) -> list[tuple[str, actions.Action]]:
    """One action at a time, in the plan's order (``--parallelism 1``)."""
    done: list[tuple[str, actions.Action]] = []
    total = len(plan.actionable)

    def persist(new_state: state_model.State) -> None:
        aws.state = writer.save(new_state, aws.state)

    aws.persist = persist  # the journal of multi-step work is written through the same writer
    for index, change in enumerate(plan.actionable, 1):
        started = time.monotonic()
        progress(f"[{index}/{total}] {change.action.symbol} {change.address}: {change.action.value}...")
        try:
            _apply_one(plan, change, aws)
        except errors.ReconcilerError as exc:
            raise _failed(change, exc, len(done), total) from None
        done.append((change.address, change.action))
        progress(Completed(f"[{index}/{total}] {change.action.symbol} {change.address}: {change.action.value} "
                           f"done ({time.monotonic() - started:.1f}s)"))
    return done


def _run_side_by_side(plan: model.Plan, writer: _Writer, aws: base.AwsContext, progress: Progress,
                      parallelism: int) -> list[tuple[str, actions.Action]]:
    """Up to ``parallelism`` actions at a time, each in a worker thread with its
    own view of the state; scheduling (what may start) stays in this thread."""
    plan_schedule = schedule.schedule(plan, writer.state, kinds.RULES)
    changes = plan_schedule.changes
    total = len(changes)
    dependents = plan_schedule.dependents()
    waiting = [len(w) for w in plan_schedule.waits]
    unfinished = collections.Counter(plan_schedule.phases)  # per phase: changes not yet completed
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)  # the plan's order among what may start
    done: list[tuple[str, actions.Action]] = []
    failures: list[tuple[model.ResourceChange, errors.ReconcilerError]] = []
    crash: BaseException | None = None

    def run(change: model.ResourceChange) -> float:
        started = time.monotonic()
        _apply_one(plan, change, _view(aws, writer))
        return time.monotonic() - started

    def startable() -> int | None:
        if not ready or failures or crash is not None:
            return None
        phase = plan_schedule.phases[ready[0]]
        if any(unfinished[p] for p in range(phase)):
            return None  # an earlier phase is still running
        return heapq.heappop(ready)

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallelism,
                                               thread_name_prefix="reconciler-apply") as pool:
        running: dict[concurrent.futures.Future[float], int] = {}
        while True:
            while len(running) < parallelism and (index := startable()) is not None:
                running[pool.submit(run, changes[index])] = index
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in sorted(finished, key=running.__getitem__):
                index = running.pop(future)
                change = changes[index]
                exc = future.exception()
                if isinstance(exc, errors.ReconcilerError):
                    failures.append((change, exc))
                    continue
                if exc is not None:
                    crash = crash or exc  # the process dying (a kill, ^C): no more starts, then re-raised
                    continue
                done.append((change.address, change.action))
                unfinished[plan_schedule.phases[index]] -= 1
                progress(Completed(f"[{len(done)}/{total}] {change.action.symbol} {change.address}: "
                                   f"{change.action.value} done ({future.result():.1f}s)"))
                for later in dependents[index]:
                    waiting[later] -= 1
                    if waiting[later] == 0:
                        heapq.heappush(ready, later)
    aws.state = writer.state
    if crash is not None:
        raise crash
    if failures:
        change, exc = failures[0]
        others = f", {len(failures) - 1} more failed" if len(failures) > 1 else ""
        raise _failed(change, exc, len(done), total, others) from None
    return done


K = TypeVar("K")
V = TypeVar("V")


def rebase(base: state_model.State, new: state_model.State, current: state_model.State) -> state_model.State:
    """What ``new`` changed relative to ``base`` (the state one action's writes
    were computed from), applied to ``current`` (the state as the actions beside
    it left it): entries of resources, deposed objects, leases and the journal
    it set or removed, by key; the rest as ``current`` has it. Actions side by
    side touch different addresses, so nothing of theirs is lost."""
    base_journal = {e.operation_id: e for e in base.journal}
    new_journal = {e.operation_id: e for e in new.journal}
    set_journal = [e for e in new.journal if base_journal.get(e.operation_id) is not e]
    dropped = (base_journal.keys() - new_journal.keys()) | {e.operation_id for e in set_journal}
    journal = current.journal
    if set_journal or dropped:
        journal = (*(e for e in current.journal if e.operation_id not in dropped), *set_journal)
    merged = dict(resources=_rebased(base.resources, new.resources, current.resources),
                  deposed=_rebased(base.deposed, new.deposed, current.deposed),
                  leases=_rebased(base.leases, new.leases, current.leases), journal=journal,
                  applied_plans=new.applied_plans if new.applied_plans != base.applied_plans
                  else current.applied_plans)
    if all(value is getattr(current, name) for name, value in merged.items()):
        return current
    return dataclasses.replace(current, **merged)  # type: ignore[arg-type]


def _rebased(base: Mapping[K, V], new: Mapping[K, V], current: Mapping[K, V]) -> Mapping[K, V]:
    if new is base:
        return current
    missing = object()
    changed = {k: v for k, v in new.items() if base.get(k, missing) is not v}
    removed = [k for k in base if k not in new]
    if not changed and not removed:
        return current
    out: dict[K, V] = {**current, **changed}
    for key in removed:
        out.pop(key, None)
    return out


def _failed(change: model.ResourceChange, exc: errors.ReconcilerError, applied: int, total: int,
            others: str = "") -> errors.ReconcilerError:
    recorded = f"{applied} of {total} changes were applied and recorded in state{others}"
    return errors.prefixed(exc, f"{change.address}: ", f" ({recorded}; run plan to see what is left)")


def _apply_one(plan: model.Plan, change: model.ResourceChange, aws: base.AwsContext) -> None:
    """One action, its state written through ``aws.persist`` after every step
    (``aws.state``: the state as the action's own writes left it)."""
    handler = kinds.handler_for(change.kind)
    desired = plan.desired.get(change.resource_address)
    entry = aws.state.resources.get(change.resource_address)
    persist = aws.persist
    assert persist is not None
    started = clock.stamp()  # what the action records is what live AWS held at the latest by then

    def save(new_state: state_model.State) -> None:
        persist(new_state)

    def checkpoint(resource: state_model.ResourceState) -> None:
        save(aws.state.with_resource(resource.unread()))  # half-way: not known to match live AWS

    def done(resource: state_model.ResourceState) -> None:
        save(aws.state.with_resource(resource.read(started)))

    try:
        if desired is not None:  # references to what this apply made before are known now
            desired = refs.resolve_desired(desired, aws.state)
        match change.action:
            case Action.CREATE:
                assert desired is not None and isinstance(handler, base.Creates)
                result = handler.create(aws, desired, checkpoint)
                done(result)  # the state as the checkpoints left it
            case Action.READ:
                assert desired is not None and isinstance(handler, base.Adopts)
                result = handler.read(aws, desired)
                done(result)
            case Action.UPDATE:
                assert desired is not None and isinstance(handler, base.Updates)
                if entry is None or change.adopts:  # adopting (or found by its tags) and updating in one go
                    if not isinstance(handler, base.Adopts):
                        raise errors.PlanError(base.missing(handler, Action.READ) or "")
                    entry = handler.read(aws, desired)
                    checkpoint(entry)
                result = handler.update(aws, desired, entry, change, checkpoint)
                done(result)
            case Action.CREATE_THEN_DELETE:
                assert desired is not None and entry is not None
                assert isinstance(handler, base.Replaces) and isinstance(handler, base.Deletes)
                deposed = state_model.Deposed.of(entry)
                state = aws.state
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
                    open_create = any(j.address == change.address for j in aws.state.journal)
                    if aws.state.resources.get(change.address) == entry and not open_create:
                        save(aws.state.without_deposed(change.address, deposed.id))
                    raise
                done(result)
                handler.delete(aws, entry)
                save(aws.state.without_deposed(change.address, deposed.id))
            case Action.DELETE_THEN_CREATE:
                assert desired is not None and entry is not None
                assert isinstance(handler, base.Deletes) and isinstance(handler, base.Creates)
                handler.delete(aws, entry)
                save(aws.state.without_resource(change.address))  # gone: a crash here plans a create
                result = handler.create(aws, desired, checkpoint)
                done(result)
            case Action.ROTATE | Action.REVOKE:
                assert desired is not None and entry is not None and isinstance(handler, base.RunsTimed)
                result = handler.run_timed(aws, desired, entry, change, checkpoint)
                done(result)
            case Action.DELETE if change.deposed:
                assert isinstance(handler, base.Deletes)
                address = change.resource_address
                gone = aws.state.deposed_object(address, change.deposed)
                current = aws.state.resources.get(address)
                if gone is not None and (current is None or current.ids != gone.resource.ids):
                    handler.delete(aws, gone.resource)
                save(aws.state.without_deposed(address, change.deposed))
            case Action.DELETE:
                assert entry is not None and isinstance(handler, base.Deletes)
                handler.delete(aws, entry)
                save(aws.state.without_resource(change.address))
            case Action.NOOP:
                return
    except errors.ReconcilerError as exc:
        _record_failure(save, aws.state, change.resource_address, exc)
        raise
    if aws.state.journal_of(change.resource_address) is not None and not change.deposed:
        save(aws.state.without_journal_of(change.resource_address))  # its multi-step work is complete


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

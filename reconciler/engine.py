"""Orchestration: manifests + state + AWS -> plan, apply, drift. The pure
pieces (model, planner, renderers) do the thinking; refresh.py reads live
AWS, workspace.py opens a stack, planfile.py and importer.py handle saved
plans and imports; this module puts a plan together and hands it on."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import uuid
from collections.abc import Callable, Mapping, Sequence

from reconciler import apply as executor
from reconciler import clock, errors, kinds, resume
from reconciler import graph as graph_model
from reconciler import refresh as refreshing
from reconciler.aws import factory, session
from reconciler.kinds import base, context, recovery
from reconciler.manifest import model as manifest
from reconciler.plan import actions, diff, freshness
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import backend as state_backend
from reconciler.render import values
from reconciler.state import model as state_model
from reconciler.workspace import Workspace, open_stack  # noqa: F401 - the engine is the CLI's one entry point

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def desired_of(config: manifest.Config, *, resolve_values: bool = True) -> dict[str, plan_model.Desired]:
    """Every resource as its kind normalises it, with its dependencies.
    Computed side by side: a fromEnv fingerprint is a deliberately slow
    scrypt, and hashlib releases the GIL while it runs."""
    unsupported = [f"{r.position()}: {a}: kind {r.kind} is validated but not yet reconciled by this "
                   "version of reconciler" for a, r in config.resources.items() if r.kind not in kinds.HANDLERS]
    if unsupported:
        raise errors.PlanError("\n".join(unsupported))

    def one(resource: manifest.Resource) -> plan_model.Desired:
        want = kinds.handler_for(resource.kind).desired(resource, config, resolve_values=resolve_values)
        deps = tuple(sorted({ref.target for ref in manifest.references(resource, config)}))
        return dataclasses.replace(want, dependencies=deps)

    def batch(resources: list[manifest.Resource]) -> list[plan_model.Desired]:
        return [one(resource) for resource in resources]

    # A batch per thread, not a task per resource: at 10,000 resources the
    # executor's own bookkeeping cost more than the work. Interleaved, so
    # slow ones (fromEnv) spread over the threads.
    resources = list(config.resources.values())
    threads = min(os.cpu_count() or 2, max(1, len(resources)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(batch, [resources[i::threads] for i in range(threads)]))
    wanted = [parts[i % threads][i // threads] for i in range(len(resources))]  # the manifests' order
    return {want.address: want for want in wanted}


def preflight(plan: plan_model.Plan, workspace: Workspace, aws: base.AwsContext) -> None:
    """Everything a plan's inputs can refuse before its first write (each kind's
    optional ``preflight`` hook: say, a fromEnv value unset, empty or changed
    since a saved plan was made), every problem reported at once."""
    if aws.state.lineage is None:
        aws.state = workspace.backend.read()
    problems: list[str] = []
    for address, want in sorted(plan.desired.items()):
        hook = getattr(kinds.handler_for(want.kind), "preflight", None)
        if hook is not None:
            problems.extend(hook(aws, want, workspace.config.resources.get(address)))
    if not plan.refreshed:  # a --no-refresh plan never looked for what the stack made by its tags: now
        for change in plan.actionable:
            handler, wanted = kinds.handler_for(change.kind), plan.desired.get(change.resource_address)
            if change.action is not actions.Action.CREATE or wanted is None \
                    or not isinstance(handler, base.FindsOwned) or change.resource_address in aws.state.resources:
                continue
            found = handler.find_owned(aws, wanted)
            if found is not None and found.attributes is not None:
                problems.append(f"{change.address}: this plan was made with --no-refresh, and {found.found_by.split(':')[0]}"
                                "; run plan again with refresh (it reads that object in instead of creating a duplicate)")
    if problems:
        raise errors.PlanError("\n".join(problems))


def make_plan(workspace: Workspace, aws: base.AwsContext, *, refresh_live: bool = True,
              targets: Sequence[str] = (), state: state_model.State | None = None,
              progress: Progress = _quiet, regenerate_lost: bool = False,
              forced: Sequence[str] = (), parallelism: int | None = None,
              destroy: bool = False, force: bool = False,
              refresh_ttl: datetime.timedelta | None = None) -> plan_model.Plan:
    """``regenerate_lost``: generated secrets whose KMS key is gone get a new
    value (never by default: whoever used the old one breaks). ``forced``:
    addresses to rotate now, whatever the schedule. ``parallelism``: AWS
    calls side by side at most (default refresh.PARALLELISM). ``destroy``:
    plan against an empty desired set (``destroy_plan``). ``force``: go on
    with a state whose serial went backwards (state_backend.check_rollback).
    ``refresh_ttl`` (``--refresh-ttl``): skip the refresh when the state says
    nothing can have changed and every object in scope was read within it
    (plan/freshness.py); a plan from the recorded state that would change
    anything is made again with the refresh."""
    config = workspace.config
    desired = {} if destroy else desired_of(config)
    prior = state if state is not None else workspace.backend.read()
    state_backend.check_rollback(workspace.backend, prior, force=force)
    check_stack_name(workspace, prior)
    plan_rules.check_state(prior, kinds.RULES)
    aws.desired, aws.state = desired, prior
    aws.regenerate_lost = regenerate_lost
    graph = config.dependency_graph()
    for address, entry in prior.resources.items():
        for dep in entry.dependencies:
            graph.add_edge(address, dep)
    scope = (graph.ancestors(targets) | set(targets)) if targets else None
    refreshing.check_connections({a: d for a, d in desired.items() if scope is None or a in scope}, aws, config)
    decision = None
    if refresh_live and refresh_ttl is not None and not destroy:
        decision = freshness.decide(refresh_ttl, clock.now(), prior, stack=config.stack.name,
                                    manifests_hash=config.source.content_hash, desired=desired, scope=scope,
                                    behind_backup=force and _behind_backup(workspace.backend, prior))
        if decision.skipped and regenerate_lost:
            decision = decision.refreshed_after_all("--regenerate-lost looks for keys that are gone")
    prior, recovered = resume.recover(prior, aws, progress)  # open journal entries first

    def planned(live: bool) -> plan_model.Plan:
        return _planned(workspace, aws, desired, prior, recovered, graph, scope, live, targets=targets,
                        progress=progress, parallelism=parallelism, forced=forced)

    if decision is None or not decision.skipped:
        the_plan = planned(refresh_live)
    else:
        the_plan = planned(False)
        if the_plan.has_changes:  # a change is never planned against what state merely remembers
            decision = decision.refreshed_after_all(freshness.CHANGES_WITHOUT_REFRESH)
            the_plan = planned(True)
    return dataclasses.replace(the_plan, destroy=destroy, refresh_ttl=decision)


def _behind_backup(backend: state_backend.Backend, state: state_model.State) -> bool:
    """Whether check_rollback would refuse ``state`` without --force."""
    try:
        state_backend.check_rollback(backend, state, force=False)
    except errors.StateError:
        return True
    return False


def _planned(workspace: Workspace, aws: base.AwsContext, wanted: dict[str, plan_model.Desired],
             prior: state_model.State, recovered: Sequence[recovery.Recovery], graph: graph_model.Graph,
             scope: set[str] | None, refresh_live: bool, *, targets: Sequence[str], progress: Progress,
             parallelism: int | None, forced: Sequence[str]) -> plan_model.Plan:
    """The plan over ``prior`` (its journal recovered), reading live AWS or not."""
    config = workspace.config
    desired = wanted
    aws.desired, aws.state = desired, prior
    read_at = clock.stamp() if refresh_live else ""  # before the first read: what apply records as read
    if refresh_live:
        refreshed, adopted = refreshing.refresh(desired, prior, aws, scope, progress, parallelism)
    else:
        refreshed = {}
        adopt = {a: d for a, d in desired.items() if a not in prior.resources
                 and d.mode in ("adopted", "read") and (scope is None or a in scope)}
        _, adopted = refreshing.refresh(adopt, state_model.State.empty(), aws, scope, progress, parallelism)
    desired, refreshed = refreshing.resolve_values(desired, prior, refreshed, aws, scope, parallelism)
    prior = planner.with_learned(prior, refreshed)
    aws.desired = desired
    try:
        if refresh_live:
            refreshing.check_live(desired, prior, aws, scope, parallelism)
        the_plan = hide_sensitive(resume.noted(planner.make_plan(
            plan_id=str(uuid.uuid4()), now=clock.now(), stack=config.stack.name,
            directory=str(config.source.directory.resolve()), manifests_hash=config.source.content_hash,
            desired=desired, prior=prior, refreshed=refreshed, adopted=adopted, refresh=refresh_live,
            targets=tuple(targets), dependency_graph=graph, rules=kinds.RULES, forced=tuple(forced)), recovered))
    except errors.PlanError as exc:
        raise errors.PlanError("\n".join(_placed(line, config) for line in exc.message.splitlines())) from None
    learned = {address: dict(found.learned) for address, found in sorted(refreshed.items())
               if found.learned and address in prior.resources and found.attributes is not None}
    return dataclasses.replace(the_plan, read_at=read_at, confirmed=_confirmed(the_plan, prior, refreshed),
                               learned=learned)


def _confirmed(plan: plan_model.Plan, prior: state_model.State,
               refreshed: Mapping[str, planner.Refreshed]) -> tuple[str, ...]:
    """What the refresh found exactly as state records it, with nothing to
    change: apply records those as read when the refresh began."""
    drifted = {item.address for item in plan.drift}
    changing = {c.resource_address for c in plan.actionable}
    return tuple(sorted(
        address for address, found in refreshed.items()
        if address in prior.resources and address not in drifted and address not in changing
        and found.attributes is not None and not found.found_by and not found.learned and not found.info))


def record_confirmed(plan: plan_model.Plan, workspace: Workspace,
                     state: state_model.State) -> state_model.State | None:
    """An apply with nothing to change still records what its plan's refresh
    confirmed (no AWS call): each object found as recorded was read when that
    refresh began, and these manifests are live (``executor.completed``), so a
    later ``plan --refresh-ttl`` may trust the state. The written state, or
    None when there was nothing to record (a plan that did not refresh, one
    whose confirmations state already holds, a state with an open journal
    entry: not known to match until recovered). Call with the lock held.
    ``apply --refresh-ttl`` asks for it: the write moves the serial on, which
    makes every plan saved before it stale."""
    if plan.has_changes or not (plan.refreshed or plan.learned) or state.journal:
        return None
    recorded = executor.completed(plan, state, state).written_by(workspace.config.stack.name)
    if recorded == state:
        return None
    return workspace.backend.write(recorded)


def destroy_plan(workspace: Workspace, aws: base.AwsContext, *, state: state_model.State,
                 progress: Progress = _quiet, parallelism: int | None = None) -> plan_model.Plan:
    """``reconciler destroy``: the removal of everything in state, planned by
    the planner against an empty desired set, so every protection of apply
    holds (a protected key refused, keys only scheduled for deletion with
    their window, never while kept secret versions still need them). A
    resource the manifests protect is refused too, even when state does not
    record it so yet (protect: true added, not yet applied)."""
    problems = _protected_in_manifests(workspace.config, state)
    try:
        plan = make_plan(workspace, aws, state=state, progress=progress, parallelism=parallelism, destroy=True)
    except errors.PlanError as exc:
        problems = [*exc.message.splitlines(), *problems]
    if problems:
        raise errors.PlanError("\n".join([*problems, "Nothing was destroyed: destroy removes everything in state, "
                                           "or nothing"]))
    return plan


def _protected_in_manifests(config: manifest.Config, state: state_model.State) -> list[str]:
    """Managed resources in state that the manifests protect though state does
    not record them so (the planner refuses those state or live protects)."""
    problems = []
    for address, want in sorted(desired_of(config, resolve_values=False).items()):
        offers = plan_rules.rules_for(kinds.RULES, want.kind).offers_protect
        entry = state.resources.get(address)
        if entry is not None and entry.mode == "managed" and plan_model.protected(want.attributes, offers=offers) \
                and not plan_model.protected(entry.attributes, offers=offers):
            where = config.resources[address].position("protect", key=True)
            problems.append(f"{where}: {address}: refusing to destroy a protected resource (protect: true in "
                            "the manifests, not yet applied)")
    return problems


def rotation_plan(workspace: Workspace, aws: base.AwsContext, name: str, *, state: state_model.State,
                  progress: Progress = _quiet) -> plan_model.Plan:
    """``reconciler rotate NAME``: a plan that rotates NAME now (or issues its
    first key), and nothing else. What it depends on must have nothing left
    to apply: rotate never applies a change that was not reviewed as a plan."""
    config = workspace.config
    address = name if "/" in name else f"AccessKeyRotation/{name}"
    if address not in config.resources:
        rotations = sorted(r.name for r in config.resources.values() if r.kind == "AccessKeyRotation")
        raise errors.ConfigError(f"rotate {name}: no {address} in the manifests"
                                 f"{'; declared: ' + ', '.join(rotations) if rotations else ''}")
    plan = make_plan(workspace, aws, targets=(address,), state=state, progress=progress, forced=(address,))
    others = [c.address for c in plan.actionable if c.resource_address != address]
    if others:
        raise errors.PlanError(f"rotate {name}: {', '.join(others)} must be applied first (`reconciler plan` "
                               "shows the changes); rotate performs only the rotation")
    return dataclasses.replace(plan, changes=tuple(c for c in plan.changes if c.resource_address == address))


LISTED = 5  # changes an --only-due refusal names; the rest are counted


def _named(changes: Sequence[plan_model.ResourceChange]) -> str:
    names = [f"{c.address} {c.action.value}" for c in changes[:LISTED]]
    rest = len(changes) - LISTED
    return ", ".join(names) + (f" and {rest} more" if rest > 0 else "")


def only_due(plan: plan_model.Plan) -> plan_model.Plan:
    """``apply --only-due``: the plan, if it holds only timed work (due
    rotations, expired or failed revokes, interrupted runs to finish); else
    PlanError naming what else it holds: a change to the manifests (or one
    reverting drift) is applied only after review, and while one waits not
    even the due work is done (it would run against manifests nobody approved)."""
    others = plan.untimed
    if not others:
        return plan
    due = [c for c in plan.actionable if c.timed]
    waits = f"the due work ({_named(due)}) was not done either" if due else "nothing was due"
    raise errors.PlanError(
        f"apply --only-due: refusing, the plan also holds {len(others)} change{'s' if len(others) != 1 else ''} "
        f"that {'are' if len(others) != 1 else 'is'} not timed work ({_named(others)}); nothing was changed and "
        f"{waits}; review them with `reconciler plan` and apply them through the reviewed path first")


def require_remote_state(workspace: Workspace) -> None:
    """ConfigError unless the stack keeps its state remotely (``--require-remote-state``,
    RECONCILER_REQUIRE_REMOTE_STATE=1): a CI runner's disk, and local state with it,
    is gone after the job."""
    stack = workspace.config.stack
    if "local" not in stack.backend:
        return
    where = f"{stack.document.position(('spec', 'backend'), key=True)}: " if stack.document is not None else ""
    raise errors.ConfigError(
        f"{where}Stack/{stack.name} keeps its state locally (backend: local), which a CI runner loses after "
        "the job; declare spec.backend.s3 (bucket, key) for this stack (remote state is required here: "
        "--require-remote-state or RECONCILER_REQUIRE_REMOTE_STATE=1)")


def _sensitive_of(kind: str) -> frozenset[str]:
    """The attributes a kind never shows (a Secret's value token), known even
    for a resource that is only in state, being deleted or drifting."""
    handler = kinds.HANDLERS.get(kind)
    return frozenset(getattr(handler, "sensitive", frozenset()))


def _hidden_changes(changes: Sequence[diff.AttributeChange], sensitive: frozenset[str],
                    ) -> tuple[diff.AttributeChange, ...]:
    return tuple(dataclasses.replace(c, before=values.masked_value(c.before), after=values.masked_value(c.after),
                                     sensitive=True, op=c.operation)
                 if c.sensitive or c.top in sensitive else c for c in changes)


def hide_sensitive(plan: plan_model.Plan) -> plan_model.Plan:
    """The plan with every value-derived token replaced by ``(sensitive)`` in
    every change (deletes included) and drift item, so no renderer and no
    saved plan file ever holds one; ``desired`` keeps what apply needs."""
    changes = []
    for change in plan.changes:
        sensitive = frozenset(change.sensitive) | _sensitive_of(change.kind)
        changes.append(dataclasses.replace(
            change, sensitive=tuple(sorted(sensitive)), before=values.masked(change.before, sensitive),
            after=values.masked(change.after, sensitive), changes=_hidden_changes(change.changes, sensitive)))
    return dataclasses.replace(plan, changes=tuple(changes), drift=hide_sensitive_drift(plan.drift))


def hide_sensitive_drift(items: Sequence[plan_model.DriftItem]) -> tuple[plan_model.DriftItem, ...]:
    """Drift items with their kind's sensitive attributes masked."""
    return tuple(dataclasses.replace(item, changes=_hidden_changes(
        item.changes, _sensitive_of(state_model.Address(item.address).kind))) for item in items)


def _placed(line: str, config: manifest.Config) -> str:
    """Prefix a refusal about a declared resource with where it is declared."""
    address = line.split(": ", 1)[0]
    resource = config.resources.get(address)
    if resource is None:
        return line
    return f"{resource.document.position(('metadata', 'name'))}: {line}"


def drift(workspace: Workspace, aws: base.AwsContext, progress: Progress = _quiet,
          parallelism: int | None = None, force: bool = False) -> list[plan_model.DriftItem]:
    prior = workspace.backend.read()
    state_backend.check_rollback(workspace.backend, prior, force=force)
    check_stack_name(workspace, prior)
    plan_rules.check_state(prior, kinds.RULES)
    desired = desired_of(workspace.config, resolve_values=False)
    aws.desired, aws.state = desired, prior
    prior, recovered = resume.recover(prior, aws, progress)  # an interrupted write that landed is not drift
    refreshed, _ = refreshing.refresh({a: d for a, d in desired.items() if a in prior.resources}, prior, aws,
                                      None, progress, parallelism)
    found = planner.detect_drift(prior, refreshed, desired, rules=kinds.RULES)
    return list(hide_sensitive_drift([*found, *resume.left_open(recovered, None)]))


def unmanaged(workspace: Workspace, aws: base.AwsContext,
              parallelism: int | None = None) -> tuple[unmanaged_model.Unmanaged, ...]:
    """``drift --unmanaged``: live objects that look like this stack's but that
    state does not record, from every kind's optional ``unmanaged`` hook
    (base.ListsUnmanaged), the kinds side by side. Run after ``drift`` (the
    context then holds the desired resources and the recovered state)."""
    if aws.state.lineage is None and not aws.desired:
        aws.desired, aws.state = desired_of(workspace.config, resolve_values=False), workspace.backend.read()
    hooks = [(kind, getattr(handler, "unmanaged")) for kind, handler in sorted(kinds.HANDLERS.items())
             if getattr(handler, "unmanaged", None) is not None]

    def one(hook: tuple[str, Callable[..., list[unmanaged_model.Unmanaged]]]) -> list[unmanaged_model.Unmanaged]:
        kind, listed = hook
        try:
            return listed(aws, aws.desired, aws.state)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"drift --unmanaged ({kind}): ") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=refreshing.workers(parallelism)) as pool:
        found = [item for items in pool.map(one, hooks) for item in items]
    return unmanaged_model.ordered(found)


def check_stack_name(workspace: Workspace, state: state_model.State) -> None:
    """A state written under another stack name is a rename only when the Stack
    says so (``spec.formerNames``): otherwise this stack's backend points at
    another stack's state, and nothing of it may be taken as this stack's."""
    stack = workspace.config.stack
    recorded = state.stack
    if not recorded or recorded == stack.name or recorded in stack.former_names:
        return
    where = f"{stack.document.position(('metadata', 'name'))}: " if stack.document is not None else ""
    raise errors.ConfigError(
        f"{where}Stack/{stack.name}: its state ({workspace.backend.describe()}) was written by stack {recorded}; "
        f"if this stack was renamed, list {recorded} under spec.formerNames (the plan then re-binds its "
        "envelopes); if not, point its backend at its own state")


def new_context(workspace: Workspace | None = None) -> base.AwsContext:
    if workspace is None:
        return context.ApplyContext(factory.Adapters(session.ClientFactory()))
    config = workspace.config
    aws = context.ApplyContext(factory.Adapters(session.ClientFactory(), config.source.directory),
                               stack=config.stack.name, directory=config.source.directory,
                               default_connection={"region": config.stack.region,
                                                   "auth": dict(config.stack.auth or {"defaultChain": {}})})
    aws.former_names = config.stack.former_names
    return aws


def apply(plan: plan_model.Plan, workspace: Workspace, aws: base.AwsContext, *, allow_destroy: bool,
          progress: Progress = _quiet, parallelism: int | None = None) -> executor.ApplyResult:
    """Run ``plan``: up to ``parallelism`` actions side by side (default
    refresh.PARALLELISM), in dependency order; 1 runs them one at a time in the
    plan's order."""
    refreshing.check_connections(plan.desired, aws, workspace.config)
    aws.desired = plan.desired
    clock.now()  # a bad RECONCILER_NOW refuses the apply before its first write, not half-way
    resume.recover_written(workspace.backend, aws, progress)  # open journal entries first, written
    preflight(plan, workspace, aws)
    return executor.apply_plan(plan, workspace.backend, aws, allow_destroy=allow_destroy,
                               progress=progress, parallelism=refreshing.workers(parallelism))

"""Orchestration: manifests + state + AWS -> plan, apply, drift. The pure
pieces (model, planner, renderers) do the thinking; this module fetches."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import uuid
from collections.abc import Callable, Mapping, Sequence

from reconciler import apply as executor
from reconciler import clock, errors, kinds, resume
from reconciler.aws import factory, session
from reconciler.kinds import base, context
from reconciler.manifest import model as manifest
from reconciler.plan import actions, diff
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.state import backend as state_backend
from reconciler.state import local
from reconciler.state import s3 as s3_state
from reconciler.render import values
from reconciler.state import model as state_model

Progress = Callable[[str], None]
DEFAULT_STATE_PATH = ".reconciler/state.json"
REFRESH_WORKERS = 8


def _quiet(_message: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Workspace:
    config: manifest.Config
    backend: state_backend.Backend
    warnings: tuple[errors.Diagnostic, ...]


def backend_for(config: manifest.Config) -> state_backend.Backend:
    match dict(config.stack.backend):
        case {"local": spec}:
            path = pathlib.Path(spec.get("path", DEFAULT_STATE_PATH))
            if not path.is_absolute():
                path = config.source.directory / path
            return local.LocalBackend(path)
        case {"s3": spec}:
            region = spec.get("region") or config.stack.region
            if not region:
                raise errors.ConfigError(f"Stack/{config.stack.name}: the s3 backend needs a region "
                                         "(backend.s3.region or spec.region)")
            adapters = factory.Adapters(session.ClientFactory(), config.source.directory)
            return s3_state.S3Backend(adapters.s3_objects(region, config.stack.auth, spec["bucket"]), spec["key"])
        case other:
            raise errors.ConfigError(f"Stack/{config.stack.name}: unknown backend {sorted(other)}")


def open_stack(directory: str | pathlib.Path) -> Workspace:
    config, warnings = manifest.load_or_raise(str(directory))
    return Workspace(config, backend_for(config), tuple(warnings))


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

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        wanted = list(pool.map(one, config.resources.values()))
    return {want.address: want for want in wanted}


def refresh(desired: Mapping[str, plan_model.Desired], prior: state_model.State, aws: base.AwsContext,
            scope: set[str] | None = None, progress: Progress = _quiet,
            ) -> tuple[dict[str, planner.Refreshed], dict[str, planner.Refreshed]]:
    """Live attributes of everything in state, and of adopted objects not yet in it."""
    refreshed: dict[str, planner.Refreshed] = {}
    adopted: dict[str, planner.Refreshed] = {}
    todo = [a for a in sorted(prior.resources) if scope is None or a in scope]
    adopt = [a for a, d in sorted(desired.items()) if a not in prior.resources
             and d.mode in ("adopted", "read") and (scope is None or a in scope)]
    total = len(todo) + len(adopt)
    done = 0

    def one(address: str) -> tuple[str, planner.Refreshed]:
        try:
            if address in prior.resources:
                entry = prior.resources[address]
                return address, kinds.handler_for(entry.kind).refresh(aws, entry, desired.get(address))
            want = desired[address]
            adopter = kinds.handler_for(want.kind)
            if not isinstance(adopter, base.Adopts):
                raise errors.PlanError(base.missing(adopter, actions.Action.READ) or "")
            return address, adopter.lookup(aws, want)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None

    # Reads are independent: run them side by side (boto3 clients are thread-safe).
    with concurrent.futures.ThreadPoolExecutor(max_workers=REFRESH_WORKERS) as pool:
        futures = [pool.submit(one, address) for address in todo + adopt]
        try:
            for future in concurrent.futures.as_completed(futures):
                address, found = future.result()
                (refreshed if address in prior.resources else adopted)[address] = found
                done += 1
                progress(f"[{done}/{total}] refreshed {address}")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return refreshed, adopted


def check_live(desired: Mapping[str, plan_model.Desired], prior: state_model.State,
               aws: base.AwsContext, scope: set[str] | None = None) -> None:
    """Every kind's plan-time checks against live AWS (``Handler.check``),
    side by side; every problem found refuses the plan, all reported at once."""
    todo = [a for a in sorted(desired) if scope is None or a in scope]

    def one(address: str) -> list[str]:
        want = desired[address]
        try:
            return kinds.handler_for(want.kind).check(aws, want, prior.resources.get(address))
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=REFRESH_WORKERS) as pool:
        problems = [line for found in pool.map(one, todo) for line in found]
    if problems:
        raise errors.PlanError("\n".join(problems))


def check_connections(desired: Mapping[str, plan_model.Desired], aws: base.AwsContext,
                      config: manifest.Config | None = None) -> None:
    """Resolve every auth block (env refs, token files, source credentials)
    before any change, so a missing variable fails fast, alone, and pointing
    at the field that names it (in the resource, or the Stack it inherits from)."""
    checked: set[str] = set()
    for address, want in sorted(desired.items()):
        key = json.dumps(want.connection.get("auth"), sort_keys=True)  # one session per auth
        if key in checked:
            continue
        checked.add(key)
        try:
            aws.check_connection(want.connection)
        except session.AuthError as exc:
            raise errors.ConfigError(_auth_problem(exc, address, config)) from None
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None


def _auth_problem(exc: session.AuthError, address: str, config: manifest.Config | None) -> str:
    """``file:line:col: ADDRESS: message`` at the auth field at fault."""
    resource = config.resources.get(address) if config is not None else None
    if resource is not None and "auth" in resource.spec:
        return f"{resource.position('auth', *exc.field)}: {address}: {exc.message}"
    stack = config.stack if config is not None else None
    if stack is not None and stack.auth and stack.document is not None:
        where = stack.document.position(("spec", "auth", *exc.field))
        return f"{where}: {address}: {exc.message} (auth inherited from Stack/{stack.name})"
    return f"{address}: {exc.message}"


def resolve_values(desired: Mapping[str, plan_model.Desired], prior: state_model.State,
                   refreshed: Mapping[str, planner.Refreshed], aws: base.AwsContext,
                   scope: set[str] | None = None,
                   ) -> tuple[dict[str, plan_model.Desired], dict[str, planner.Refreshed]]:
    """Plan-time values that need AWS, by each kind's optional ``resolve`` hook
    (base.ResolvesValues), after refresh: a fromEnv fingerprint under its
    vault's KMS key costs one unwrap per vault, nothing without fromEnv."""
    resolved, live = dict(desired), dict(refreshed)
    todo = [a for a, want in sorted(desired.items()) if (scope is None or a in scope)
            and getattr(kinds.handler_for(want.kind), "resolve", None) is not None]

    def one(address: str) -> tuple[str, plan_model.Desired, planner.Refreshed | None, bool]:
        entry = prior.resources.get(address)
        found = refreshed.get(address)
        if found is None and entry is not None:
            found = planner.Refreshed(dict(entry.attributes), dict(entry.ids))  # --no-refresh
        try:
            want, now = getattr(kinds.handler_for(desired[address].kind), "resolve")(
                aws, desired[address], entry, found)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None
        return address, want, now, now is not found

    # side by side: unwraps are cached per key, and a legacy scrypt comparison releases the GIL
    with concurrent.futures.ThreadPoolExecutor(max_workers=REFRESH_WORKERS) as pool:
        for address, want, now, changed in pool.map(one, todo):
            resolved[address] = want
            if changed and now is not None:
                live[address] = now
    return resolved, live


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
    if problems:
        raise errors.PlanError("\n".join(problems))


def make_plan(workspace: Workspace, aws: base.AwsContext, *, refresh_live: bool = True,
              targets: Sequence[str] = (), state: state_model.State | None = None,
              progress: Progress = _quiet, regenerate_lost: bool = False) -> plan_model.Plan:
    """``regenerate_lost``: generated secrets whose KMS key is gone get a new
    value (never by default: whoever used the old one breaks)."""
    config = workspace.config
    desired = desired_of(config)
    prior = state if state is not None else workspace.backend.read()
    aws.desired, aws.state = desired, prior
    aws.regenerate_lost = regenerate_lost
    graph = config.dependency_graph()
    for address, entry in prior.resources.items():
        for dep in entry.dependencies:
            graph.add_edge(address, dep)
    scope = (graph.ancestors(targets) | set(targets)) if targets else None
    check_connections({a: d for a, d in desired.items() if scope is None or a in scope}, aws, config)
    prior, recovered = resume.recover(prior, aws, progress)  # open journal entries first
    if refresh_live:
        refreshed, adopted = refresh(desired, prior, aws, scope, progress)
    else:
        refreshed = {}
        wanted = {a: d for a, d in desired.items() if a not in prior.resources
                  and d.mode in ("adopted", "read") and (scope is None or a in scope)}
        _, adopted = refresh(wanted, state_model.State.empty(), aws, scope, progress)
    desired, refreshed = resolve_values(desired, prior, refreshed, aws, scope)
    prior = planner.with_learned(prior, refreshed)
    aws.desired = desired
    try:
        if refresh_live:
            check_live(desired, prior, aws, scope)
        return hide_sensitive(resume.noted(planner.make_plan(
            plan_id=str(uuid.uuid4()), now=clock.now(), stack=config.stack.name,
            directory=str(config.source.directory.resolve()), manifests_hash=config.source.content_hash,
            desired=desired, prior=prior, refreshed=refreshed, adopted=adopted, refresh=refresh_live,
            targets=tuple(targets), dependency_graph=graph, rules=kinds.RULES), recovered))
    except errors.PlanError as exc:
        raise errors.PlanError("\n".join(_placed(line, config) for line in exc.message.splitlines())) from None


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
        item.changes, _sensitive_of(item.address.split("/", 1)[0]))) for item in items)


def _placed(line: str, config: manifest.Config) -> str:
    """Prefix a refusal about a declared resource with where it is declared."""
    address = line.split(": ", 1)[0]
    resource = config.resources.get(address)
    if resource is None:
        return line
    return f"{resource.document.position(('metadata', 'name'))}: {line}"


def drift(workspace: Workspace, aws: base.AwsContext,
          progress: Progress = _quiet) -> list[plan_model.DriftItem]:
    prior = workspace.backend.read()
    desired = desired_of(workspace.config, resolve_values=False)
    aws.desired, aws.state = desired, prior
    prior, _ = resume.recover(prior, aws, progress)  # an interrupted write that landed is not drift
    refreshed, _ = refresh({a: d for a, d in desired.items() if a in prior.resources}, prior, aws,
                           None, progress)
    return list(hide_sensitive_drift(planner.detect_drift(prior, refreshed, desired, rules=kinds.RULES)))


def new_context(workspace: Workspace | None = None) -> base.AwsContext:
    if workspace is None:
        return context.ApplyContext(factory.Adapters(session.ClientFactory()))
    config = workspace.config
    return context.ApplyContext(factory.Adapters(session.ClientFactory(), config.source.directory),
                                stack=config.stack.name, directory=config.source.directory,
                                default_connection={"region": config.stack.region,
                                                    "auth": dict(config.stack.auth or {"defaultChain": {}})})


def apply(plan: plan_model.Plan, workspace: Workspace, aws: base.AwsContext, *, allow_destroy: bool,
          progress: Progress = _quiet) -> executor.ApplyResult:
    check_connections(plan.desired, aws, workspace.config)
    aws.desired = plan.desired
    resume.recover_written(workspace.backend, aws, progress)  # open journal entries first, written
    preflight(plan, workspace, aws)
    return executor.apply_plan(plan, workspace.backend, aws, allow_destroy=allow_destroy,
                               progress=progress)

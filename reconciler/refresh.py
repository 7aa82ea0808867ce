"""Reading live AWS for a plan: every recorded object refreshed side by
side, adopted objects looked up, auth resolved before any change, the kinds'
plan-time checks, and values that need AWS to compare (fromEnv fingerprints)."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Mapping

from reconciler import errors, kinds
from reconciler.aws import session
from reconciler.kinds import base
from reconciler.manifest import model as manifest
from reconciler.plan import actions
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.state import model as state_model

Progress = Callable[[str], None]
PARALLELISM = 10  # AWS calls side by side at most (--parallelism; Terraform's default too)


def workers(parallelism: int | None) -> int:
    """Threads for side-by-side reads: ``parallelism`` (default PARALLELISM),
    within 1..session.MAX_PARALLELISM. Each thread makes one call at a time,
    so this bounds the calls in flight."""
    return max(1, min(parallelism or PARALLELISM, session.MAX_PARALLELISM))


def _quiet(_message: str) -> None:
    pass


def refresh(desired: Mapping[str, plan_model.Desired], prior: state_model.State, aws: base.AwsContext,
            scope: set[str] | None = None, progress: Progress = _quiet, parallelism: int | None = None,
            ) -> tuple[dict[str, planner.Refreshed], dict[str, planner.Refreshed]]:
    """Live attributes of everything in state, and of adopted objects not yet in it."""
    refreshed: dict[str, planner.Refreshed] = {}
    adopted: dict[str, planner.Refreshed] = {}
    todo = [a for a in sorted(prior.resources) if scope is None or a in scope]
    adopt = [a for a, d in sorted(desired.items()) if a not in prior.resources
             and (d.mode in ("adopted", "read") or _finds_owned(d, prior)) and (scope is None or a in scope)]
    total = len(todo) + len(adopt)
    done = 0

    def one(address: str) -> tuple[str, planner.Refreshed]:
        try:
            if address in prior.resources:
                entry = prior.resources[address]
                live = kinds.handler_for(entry.kind).refresh(aws, entry, desired.get(address))
                want = desired.get(address)
                if live.attributes is None and want is not None and _finds_owned(want, prior, entry):
                    owner = kinds.handler_for(want.kind)
                    assert isinstance(owner, base.FindsOwned)
                    found = owner.find_owned(aws, want)  # the object recorded is gone: is another ours?
                    if found is not None and found.attributes is not None:
                        return address, found
                return address, live
            want = desired[address]
            adopter = kinds.handler_for(want.kind)
            if want.mode == "managed":
                assert isinstance(adopter, base.FindsOwned)
                return address, adopter.find_owned(aws, want) or planner.Refreshed(None)
            if not isinstance(adopter, base.Adopts):
                raise errors.PlanError(base.missing(adopter, actions.Action.READ) or "")
            return address, adopter.lookup(aws, want)
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if address not in prior.resources:
                raise
            raise errors.StateError(
                f"{address}: its state entry is malformed ({type(exc).__name__}: {exc}); restore the previous "
                "version (state.json.backup, or the S3 key's .backup) or fix the entry by hand") from None

    # Reads are independent: run them side by side (boto3 clients are thread-safe).
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers(parallelism)) as pool:
        futures = [pool.submit(one, address) for address in todo + adopt]
        try:
            for future in concurrent.futures.as_completed(futures):
                address, found = future.result()
                if address in prior.resources:
                    refreshed[address] = found
                elif found.attributes is not None:  # adopted, or found by its tags (never a duplicate)
                    adopted[address] = found
                done += 1
                progress(f"[{done}/{total}] refreshed {address}")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return refreshed, adopted


def _finds_owned(want: plan_model.Desired, prior: state_model.State,
                 entry: state_model.ResourceState | None = None) -> bool:
    """Whether to look for the object this stack made for ``want`` by its tags:
    a managed resource of a kind that can, which state lacks (or whose recorded
    object is gone), and no interrupted create of which is being recovered."""
    return (want.mode == "managed" and isinstance(kinds.handler_for(want.kind), base.FindsOwned)
            and (entry is None or entry.mode == "managed")
            and not any(j.address == want.address for j in prior.journal))


def check_live(desired: Mapping[str, plan_model.Desired], prior: state_model.State,
               aws: base.AwsContext, scope: set[str] | None = None, parallelism: int | None = None) -> None:
    """Every kind's plan-time checks against live AWS (``Handler.check``),
    side by side; every problem found refuses the plan, all reported at once."""
    todo = [a for a in sorted(desired) if scope is None or a in scope]

    def one(address: str) -> list[str]:
        want = desired[address]
        try:
            return kinds.handler_for(want.kind).check(aws, want, prior.resources.get(address))
        except errors.ReconcilerError as exc:
            raise errors.prefixed(exc, f"{address}: ") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers(parallelism)) as pool:
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
                   scope: set[str] | None = None, parallelism: int | None = None,
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

    def batch(addresses: list[str]) -> list[tuple[str, plan_model.Desired, planner.Refreshed | None, bool]]:
        return [one(address) for address in addresses]

    # side by side: unwraps are cached per key, and a legacy scrypt comparison releases the GIL;
    # a batch per thread (interleaved), not a task per resource, which at 10,000 cost more than the work
    threads = min(workers(parallelism), max(1, len(todo)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for part in pool.map(batch, [todo[i::threads] for i in range(threads)]):
            for address, want, now, changed in part:
                resolved[address] = want
                if changed and now is not None:
                    live[address] = now
    return resolved, live

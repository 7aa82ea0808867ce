"""The ``lease`` commands' work: dynamic IAM users made from a template,
renewed up to its maxTtl, revoked one by one or many side by side, listed.
Everything runs under the stack's state lock; state is written after every
lease made or revoked (kinds/dynamic_iam.py makes and deletes the users).
The CLI only parses and prints; credentials are returned to it to print once."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import clock, engine, errors, resume
from reconciler import refresh as refreshing
from reconciler.kinds import base, dynamic_iam
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.state import model as state_model


@dataclasses.dataclass(frozen=True, slots=True)
class Issued:
    lease: Mapping[str, Any]
    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)


def _context(workspace: engine.Workspace) -> base.AwsContext:
    aws = engine.new_context(workspace)
    aws.desired = engine.desired_of(workspace.config, resolve_values=False)
    aws.state = workspace.backend.read()

    def save(state: state_model.State) -> None:
        if state != aws.state:
            aws.state = workspace.backend.write(state)

    aws.persist = save
    return aws


def _template(workspace: engine.Workspace, aws: base.AwsContext, name: str) -> plan_model.Desired:
    address = f"{dynamic_iam.KIND}/{name}"
    want = aws.desired.get(address)
    if want is None:
        declared = sorted(d.name for d in aws.desired.values() if d.kind == dynamic_iam.KIND)
        raise errors.ConfigError(f"{name}: no {address} in the manifests"
                                 f"{'; declared: ' + ', '.join(declared) if declared else ''}")
    applied = aws.state.resources.get(address)
    if applied is None:
        raise errors.ConfigError(f"{address} has not been applied yet; run `reconciler apply` first")
    pending = sorted(k for k in want.attributes if k != "leaseUsers"
                     and want.attributes[k] != applied.attributes.get(k))
    if pending:  # a lease is made as reviewed and applied, never from a manifest not yet applied
        raise errors.ConfigError(f"{address} has changes not applied yet ({', '.join(pending)}); apply them "
                                 "first (`reconciler plan` shows them)")
    refreshing.check_connections({address: want}, aws, workspace.config)
    return want


def _seconds(text: str, what: str) -> int:
    try:
        seconds = manifest.parse_duration(text)
    except ValueError:
        raise errors.ConfigError(f"{what} {text}: expected a duration such as 90s, 15m, 12h or 7d") from None
    if seconds <= 0:
        raise errors.ConfigError(f"{what} {text}: must be longer than 0")
    return seconds


def create(directory: str | pathlib.Path, template: str, ttl: str | None, *, lock_timeout: float = 0.0) -> Issued:
    workspace = engine.open_stack(directory)
    with workspace.backend.lock("lease create", timeout=lock_timeout):
        aws = _context(workspace)
        want = _template(workspace, aws, template)
        cap = manifest.parse_duration(want.attributes["maxTtl"])
        seconds = _seconds(ttl or want.attributes["defaultTtl"], "--ttl" if ttl else "defaultTtl")
        if seconds > cap:
            raise errors.ConfigError(f"--ttl {ttl}: longer than {want.address}'s maxTtl ({want.attributes['maxTtl']})"
                                     "; ask for at most that")
        resume.recover_written(workspace.backend, aws)
        dynamic_iam.clean_interrupted(aws, want.address, want.connection)
        lease, key_id, secret = dynamic_iam.DynamicIamTemplateHandler().issue(aws, want, seconds)
        return Issued(lease, key_id, secret)


def renew(directory: str | pathlib.Path, lease_id: str, ttl: str | None, *,
          lock_timeout: float = 0.0) -> tuple[Mapping[str, Any], str]:
    """The lease with its new expiry, and a note when maxTtl capped it."""
    workspace = engine.open_stack(directory)
    with workspace.backend.lock("lease renew", timeout=lock_timeout):
        aws = _context(workspace)
        lease = _lease(aws.state, lease_id)
        if dynamic_iam.pending(lease):
            raise errors.ConfigError(f"lease {lease_id}: its revoke is pending; it cannot be renewed")
        want = _template(workspace, aws, str(lease["template"]))
        now = clock.now()
        if dynamic_iam.expired(lease, now):
            raise errors.ConfigError(f"lease {lease_id} expired at {lease['expiresAt']}; create a new lease")
        seconds = _seconds(ttl or want.attributes["defaultTtl"], "--ttl" if ttl else "defaultTtl")
        wanted = now + datetime.timedelta(seconds=seconds)
        cap = min(dynamic_iam._when(str(lease["maxExpiresAt"])),  # and the template's maxTtl now, if lowered
                  dynamic_iam._when(str(lease["createdAt"]))
                  + datetime.timedelta(seconds=manifest.parse_duration(want.attributes["maxTtl"])))
        note = ""
        if wanted > cap:
            wanted = cap
            note = (f"capped at {dynamic_iam._at(cap)}: a lease lives at most maxTtl "
                    f"({want.attributes['maxTtl']}) from its creation ({lease['createdAt']})")
        renewed = {**lease, "expiresAt": dynamic_iam._at(wanted)}
        aws.persist_outcome(aws.state.with_lease(renewed))
        return renewed, note


def _lease(state: state_model.State, lease_id: str) -> Mapping[str, Any]:
    lease = state.leases.get(lease_id)
    if not isinstance(lease, Mapping):
        raise errors.ConfigError(f"lease {lease_id}: no such lease in state (`reconciler lease list`)")
    return lease


def revoke(directory: str | pathlib.Path, *, lease_id: str | None = None, template: str | None = None,
           expired: bool = False, force: bool = False, workers: int = dynamic_iam.REVOKE_WORKERS,
           lock_timeout: float = 0.0) -> list[dynamic_iam.Outcome]:
    """Revoke one lease, every lease of a template, or every expired lease,
    ``workers`` at a time. ``force``: forget one lease whose user is confirmed
    gone even when its revoke keeps failing. Raises when any revoke failed (each
    failure is recorded on its lease and retried by every later apply)."""
    workspace = engine.open_stack(directory)
    with workspace.backend.lock("lease revoke", timeout=lock_timeout):
        aws = _context(workspace)
        now = clock.now()
        if lease_id is not None:
            chosen: Sequence[Mapping[str, Any]] = [_lease(aws.state, lease_id)]
        else:
            chosen = [v for v in aws.state.leases.values() if isinstance(v, Mapping)
                      and (template is None or v.get("template") == template)
                      and (not expired or dynamic_iam.expired(v, now) or dynamic_iam.pending(v))]
            if template is not None and not chosen and f"{dynamic_iam.KIND}/{template}" not in aws.state.resources:
                raise errors.ConfigError(f"--template {template}: no such template in state")
        if force:
            return [_forget(aws, lease) for lease in chosen]

        def record(outcome: dynamic_iam.Outcome) -> None:
            aws.persist_outcome(dynamic_iam.after_revoke(aws.state, outcome))

        outcomes = dynamic_iam.revoke_many(aws, chosen, record, workers)
        problem = dynamic_iam.failures(outcomes)
        if problem:
            raise errors.AwsError(problem)
        return outcomes


def _forget(aws: base.AwsContext, lease: Mapping[str, Any]) -> dynamic_iam.Outcome:
    """Forget a lease only once its user is confirmed gone."""
    client = dynamic_iam._iam(aws, lease["connection"])
    if client.user(str(lease["userName"])) is not None:
        raise errors.ConfigError(f"lease {lease['id']}: user {lease['userName']} still exists; --force forgets a "
                                 "lease only once its user is gone (revoke it without --force)")
    aws.persist_outcome(aws.state.without_lease(str(lease["id"])))
    return str(lease["id"]), [], ""


def listing(directory: str | pathlib.Path, template: str | None = None) -> list[dict[str, Any]]:
    """Every lease (of ``template``): id, template, user, dates, state, revoke attempts and last error."""
    workspace = engine.open_stack(directory)
    state = workspace.backend.read()
    now = clock.now()
    rows = []
    for lease in sorted((v for v in state.leases.values() if isinstance(v, Mapping)),
                        key=lambda v: (str(v.get("template")), str(v.get("createdAt")), str(v.get("id")))):
        if template is not None and lease.get("template") != template:
            continue
        rows.append({"id": lease["id"], "template": lease["template"], "user": lease["userName"],
                     "created": lease["createdAt"], "expires": lease["expiresAt"],
                     "state": dynamic_iam.lease_state(lease, now),
                     "revokeAttempts": int(lease.get("revokeAttempts") or 0),
                     "lastError": str(lease.get("lastError") or "")})
    return rows

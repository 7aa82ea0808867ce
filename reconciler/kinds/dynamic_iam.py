"""DynamicIamTemplate: short-lived IAM users handed out as leases (seed 004).

The template owns no AWS object of its own: its record holds the settings
every lease's user is made with (path, boundary, groups, managed and inline
policies, tags, TTLs). Leases live in the stack's state (``State.leases``:
id, template, user name, dates, revoke attempts and last error; never a
credential), under the state lock.

A lease's user (``lease create``): the lease id and user name are journaled
(Operation.CREATE) before the first IAM call; the user is created under the
template's path with its boundary and tags naming stack, template and lease
(so a lost record is found, never leaked), put in its groups, given its
policies and one access key, which is verified (sts:GetCallerIdentity, as
for rotations) before the lease is recorded and the journal closed in one
write. A create that fails or is interrupted is cleaned up: the user is
stripped and deleted (by ``lease create`` itself on failure, or the next
plan/apply: the template's ``! revoke`` of interrupted leases).

Revoking deletes the user with everything attached, in the order IAM
requires (aws/iam.py ``strip_and_delete_user``), side by side with a bounded
worker count. A revoke that fails stays recorded with its attempts and last
error and is retried by every later apply, never dropped.

Attributes (what plan compares): the settings above, and ``leaseUsers``:
"as the template" when every live lease's user matches it; refresh reports
the users that do not (a policy or group added by hand), and apply puts
them back in step (as it does when the template changes). At plan time the
users come from the account's listing (``listed_users``: one page per 1,000
users, whatever the number of leases), not user by user.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler import clock, errors
from reconciler.aws import factory
from reconciler.aws import iam as iam_adapter
from reconciler.kinds import access_key_rotation as rotation
from reconciler.kinds import base, kms, recovery
from reconciler.kinds import unmanaged as listing
from reconciler.manifest import model as manifest
from reconciler.plan import actions as plan_actions
from reconciler.plan import model as plan_model
from reconciler.plan import planner, policydoc
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import model as state_model

KIND = "DynamicIamTemplate"
INLINE_POLICY = "reconciler-lease"  # the one inline policy a lease's user gets from inlinePolicy
LEASE_TAG = "reconciler:lease"
TEMPLATE_TAG = "reconciler:template"
IN_STEP = "as the template"
MAX_USER_NAME = 64
REVOKE_WORKERS = 8
EXPIRED, INTERRUPTED, ORPHANS = "expired leases", "interrupted leases", "orphaned users"
Action = plan_actions.Action


def _at(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).isoformat(timespec="seconds")


def _when(stamp: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(stamp)
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def user_name(prefix: str, template: str, lease_id: str) -> str:
    """Readable and within IAM's 64 characters: prefix, template, lease id."""
    room = MAX_USER_NAME - len(prefix) - len(lease_id) - 1
    return f"{prefix}{template[:room]}-{lease_id}"


def _iam(aws: base.AwsContext, connection: Mapping[str, Any]) -> iam_adapter.IamAdapter:
    return iam_adapter.IamAdapter(aws.client("iam", connection, factory.GLOBAL_REGION), factory.GLOBAL_REGION)


def _tags(stack: str, address: str, lease_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {**extra, "reconciler:stack": stack, TEMPLATE_TAG: address, LEASE_TAG: lease_id}


def expired(lease: Mapping[str, Any], now: datetime.datetime) -> bool:
    return now >= _when(str(lease["expiresAt"]))


def pending(lease: Mapping[str, Any]) -> bool:
    """A revoke that failed: retried by every apply until it succeeds."""
    return int(lease.get("revokeAttempts") or 0) > 0


def lease_state(lease: Mapping[str, Any], now: datetime.datetime) -> str:
    if pending(lease):
        return "revoke-failed"
    return "expired" if expired(lease, now) else "active"


# -- making a lease's user match its template --------------------------------------------------
UserView = tuple[Mapping[str, Any], set[str], set[str], Mapping[str, Any]]  # user, groups, attached, inline


def listed_users(aws: base.AwsContext, connection: Mapping[str, Any],
                 client: iam_adapter.IamAdapter) -> Mapping[str, Mapping[str, Any]] | None:
    """The account's users with everything a lease's user is compared on (path,
    boundary, groups, managed and inline policies, tags), listed once per run
    and auth at plan time and shared by every template (and drift --unmanaged):
    GetAccountAuthorizationDetails for users, one page per 1,000 users of the
    account, instead of four or more calls per lease and a ListUserTags per
    user under the template's path. None: read user by user (during apply, or
    an identity not allowed to list)."""
    def load() -> Mapping[str, Mapping[str, Any]] | None:
        try:
            return client.user_details()
        except errors.AwsAccessDenied:
            return None
    return aws.listed("iam:users", [connection.get("auth")], load)


def _user_view(client: iam_adapter.IamAdapter, name: str,
               listed: Mapping[str, Mapping[str, Any]] | None) -> UserView | None:
    """A user as the template compares it (None: gone): from the account's
    listing when there is one, else by GetUser and the user's policy and group reads."""
    if listed is not None:
        found = listed.get(name)
        if found is None:
            return None
        return (found, {str(g) for g in found.get("GroupList") or []},
                {str(p["PolicyArn"]) for p in found.get("AttachedManagedPolicies") or []},
                dict(found.get("UserPolicyList") or {}))
    user = client.user(name)
    if user is None:
        return None
    return user, set(client.user_groups(name)), set(client.user_attached(name)), client.user_inline(name)


def _tags_of(user: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in user.get("Tags") or []}


def differences(client: iam_adapter.IamAdapter, name: str, want: Mapping[str, Any],
                listed: Mapping[str, Mapping[str, Any]] | None = None) -> list[str] | None:
    """How the user differs from the template, in words (None: the user is gone)."""
    view = _user_view(client, name, listed)
    if view is None:
        return None
    found, groups, attached, inline = view
    out: list[str] = []
    if found.get("Path", "/") != want["path"]:
        out.append(f"path {found.get('Path')} instead of {want['path']}")
    for group in sorted(groups - set(want["groups"])):
        out.append(f"added to group {group} outside reconciler")
    for group in sorted(set(want["groups"]) - groups):
        out.append(f"not in group {group}")
    for arn in sorted(attached - set(want["policyArns"])):
        out.append(f"policy {arn} attached outside reconciler")
    for arn in sorted(set(want["policyArns"]) - attached):
        out.append(f"policy {arn} not attached")
    for policy in sorted(set(inline) - ({INLINE_POLICY} if want.get("inlinePolicy") else set())):
        out.append(f"inline policy {policy} added outside reconciler")
    if want.get("inlinePolicy") and not policydoc.equal(inline.get(INLINE_POLICY), want["inlinePolicy"]):
        out.append(f"inline policy {INLINE_POLICY} differs from the template")
    boundary = (found.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    if boundary != want.get("permissionsBoundary"):
        out.append(f"permissions boundary {boundary or 'none'} instead of {want.get('permissionsBoundary') or 'none'}")
    return out


def converge_user(client: iam_adapter.IamAdapter, name: str, want: Mapping[str, Any],
                  tags: Mapping[str, str] | None = None) -> None:
    """The user as the template says (boundary, groups, managed and inline policies, tags)."""
    found = client.user(name)
    if found is None:
        return
    if found.get("Path", "/") != want["path"]:
        client.move_user(name, str(want["path"]))
    boundary = (found.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    if boundary != want.get("permissionsBoundary"):
        client.set_user_boundary(name, want.get("permissionsBoundary"))
    groups = set(client.user_groups(name))
    for group in sorted(set(want["groups"]) - groups):
        client.add_to_group(name, group)
    for group in sorted(groups - set(want["groups"])):
        client.remove_from_group(name, group)
    attached = set(client.user_attached(name))
    for arn in sorted(set(want["policyArns"]) - attached):
        client.attach_user(name, arn)
    for arn in sorted(attached - set(want["policyArns"])):
        client.detach_user(name, arn)
    inline = client.user_inline(name)
    if want.get("inlinePolicy") and not policydoc.equal(inline.get(INLINE_POLICY), want["inlinePolicy"]):
        client.put_user_inline(name, INLINE_POLICY, want["inlinePolicy"])
    for policy in sorted(set(inline) - ({INLINE_POLICY} if want.get("inlinePolicy") else set())):
        client.delete_user_inline(name, policy)
    if tags is not None:
        have = client.user_tags(name)
        client.untag_user(name, sorted(k for k in have if k not in tags and not k.startswith(kms.TAG_PREFIX)))
        client.tag_user(name, {k: v for k, v in tags.items() if have.get(k) != v})


# -- revoking many, side by side -----------------------------------------------------------------
Outcome = tuple[str, list[str] | None, str]  # lease id, what was removed (None: failed), error


def revoke_many(aws: base.AwsContext, leases: Sequence[Mapping[str, Any]],
                record: Callable[[Outcome], None], workers: int = REVOKE_WORKERS) -> list[Outcome]:
    """Delete each lease's user with everything attached, ``workers`` at a time;
    ``record`` is called (in this thread, one at a time) as each one finishes,
    so state is written after every revoke. Never raises for one lease."""

    def one(lease: Mapping[str, Any]) -> Outcome:
        try:
            removed = _iam(aws, lease["connection"]).strip_and_delete_user(str(lease["userName"]))
            return str(lease["id"]), removed, ""
        except errors.ReconcilerError as exc:
            return str(lease["id"]), None, exc.message.splitlines()[0] if exc.message else type(exc).__name__

    outcomes: list[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for outcome in pool.map(one, leases):
            record(outcome)
            outcomes.append(outcome)
    return outcomes


def after_revoke(state: state_model.State, outcome: Outcome) -> state_model.State:
    """The state once one revoke finished: the lease forgotten, or kept with one
    more attempt and its error (retried by every later apply, never dropped)."""
    lease_id, removed, error = outcome
    lease = state.leases.get(lease_id)
    if lease is None:
        return state
    if removed is not None:
        return state.without_lease(lease_id)
    return state.with_lease({**lease, "revokeAttempts": int(lease.get("revokeAttempts") or 0) + 1,
                             "lastError": error, "lastAttemptAt": clock.stamp()})


def failures(outcomes: Sequence[Outcome]) -> str:
    failed = [(i, e) for i, r, e in outcomes if r is None]
    if not failed:
        return ""
    shown = "; ".join(f"lease {i}: {e}" for i, e in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return (f"{len(failed)} of {len(outcomes)} revokes failed and stay pending (retried by every apply; "
            f"`reconciler lease list` shows them): {shown}{more}")


def clean_interrupted(aws: base.AwsContext, address: str, connection: Mapping[str, Any]) -> None:
    """Interrupted lease creates of ``address``: their users (nobody holds their
    credentials) stripped and deleted, their journal entries closed."""
    for journal in [j for j in aws.state.journal if j.address == address]:
        name = str(journal.data.get("userName") or "")
        if name:
            _iam(aws, journal.data.get("connection") or connection).strip_and_delete_user(name)
        aws.persist_outcome(aws.state.without_journal(journal.operation_id))


class DynamicIamTemplateHandler:
    kind = KIND
    sensitive: frozenset[str] = frozenset()

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        inline = spec.get("inlinePolicy")
        attrs = {"defaultTtl": spec["defaultTtl"], "maxTtl": spec["maxTtl"], "path": spec.get("path", "/"),
                 "permissionsBoundary": spec.get("permissionsBoundary"),
                 "groups": sorted(spec.get("groups") or []), "policyArns": sorted(spec.get("policyArns") or []),
                 "inlinePolicy": dict(inline) if inline else None, "userNamePrefix": spec.get("userNamePrefix", ""),
                 "tags": dict(spec.get("tags") or {}), "leaseUsers": IN_STEP}
        connection = {"region": config.region_of(resource) or factory.GLOBAL_REGION,
                      "auth": dict(config.auth_of(resource))}
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection)

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        """Each live lease's user against the template; orphans (users tagged
        for this template that no lease records) as high drift."""
        connection = dict(desired.connection if desired is not None else entry.connection)
        client = _iam(aws, connection)
        listed = listed_users(aws, connection, client)
        gone: list[str] = []
        out_of_step: list[str] = []
        for lease in aws.state.leases_of(entry.name):
            found = differences(client, str(lease["userName"]), entry.attributes, listed)
            if found is None:
                gone.append(str(lease["id"]))
            elif found and not pending(lease):  # a failed revoke took it apart: not drift, its retry deletes it
                out_of_step.append(f"lease {lease['id']} (user {lease['userName']}): {', '.join(found)}")
        orphans = self._orphans(aws, client, entry, listed)
        attributes = dict(entry.attributes)
        attributes["leaseUsers"] = (f"{len(out_of_step)} out of step: {'; '.join(out_of_step)}"
                                    if out_of_step else IN_STEP)
        info = [plan_model.DriftItem(f"{entry.address} (lease {i})", plan_rules.Severity.WARNING.value, (),
                                     gone=True, note="the lease's user was deleted outside reconciler; apply "
                                     "forgets the lease") for i in gone]
        info += [plan_model.DriftItem(f"{entry.address} (lease {lease['id']})", plan_rules.Severity.HIGH.value, (),
                                      note=f"revoking user {lease['userName']} failed {lease.get('revokeAttempts')} "
                                      f"time(s) (last error: {lease.get('lastError')}); every apply retries it")
                 for lease in aws.state.leases_of(entry.name) if pending(lease) and str(lease["id"]) not in gone]
        info += [plan_model.DriftItem(f"{entry.address} (orphan {name})", plan_rules.Severity.HIGH.value, (),
                                      note=f"IAM user {name} carries this template's tags but no lease in state "
                                      "records it; `reconciler apply --allow-destroy` deletes it") for name in orphans]
        return planner.Refreshed(attributes, {**entry.ids, "gone": gone, "orphans": orphans}, info=tuple(info))

    @staticmethod
    def _orphans(aws: base.AwsContext, client: iam_adapter.IamAdapter, entry: state_model.ResourceState,
                 listed: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
        """Users under the template's paths tagged for it whom no lease (nor an
        interrupted create) records: from the account's listing when there is
        one, else ListUsers under each path and ListUserTags per user."""
        known = {str(v.get("userName")) for v in aws.state.leases.values() if isinstance(v, Mapping)}
        opened = {str(j.data.get("userName")) for j in aws.state.journal if j.address == entry.address}
        found = []
        paths = sorted(_outermost({str(entry.attributes.get("path") or "/")} | {
            str(v.get("path")) for v in aws.state.leases_of(entry.name) if v.get("path")}))
        if listed is not None:
            users = {name: u for name, u in listed.items()
                     if any(str(u.get("Path") or "/").startswith(p) for p in paths)}
        else:
            users = {str(u["UserName"]): u for p in paths for u in client.users(p)}
        for name in users:
            if name in known or name in opened:
                continue
            tags = _tags_of(users[name]) if listed is not None else client.user_tags(name)
            if tags.get(TEMPLATE_TAG) == entry.address and aws.ours(tags.get("reconciler:stack", "")):
                found.append(name)
        return sorted(found)

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        return []

    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, {}, dict(desired.attributes),
                                         desired.connection, desired.dependencies)

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Every live lease's user made to match the (new) template."""
        client = _iam(aws, desired.connection)
        for lease in aws.state.leases_of(desired.name):
            converge_user(client, str(lease["userName"]), desired.attributes,
                          _tags(aws.stack, desired.address, str(lease["id"]), desired.attributes["tags"]))
            if lease.get("path") != desired.attributes["path"]:
                aws.persist_outcome(aws.state.with_lease({**lease, "path": desired.attributes["path"]}))
        return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, {}, dict(desired.attributes),
                                         desired.connection, desired.dependencies)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        """A template removed: every one of its leases revoked first, then the
        users of interrupted creates and any orphan tagged for it (removing a
        template needs --allow-destroy): nothing is left that nobody looks for."""
        self._revoke(aws, aws.state.leases_of(entry.name))
        clean_interrupted(aws, entry.address, entry.connection)
        client = _iam(aws, entry.connection)
        for name in self._orphans(aws, client, entry):
            client.strip_and_delete_user(name)

    def _revoke(self, aws: base.AwsContext, leases: Sequence[Mapping[str, Any]]) -> None:
        def record(outcome: Outcome) -> None:
            aws.persist_outcome(after_revoke(aws.state, outcome))
        problem = failures(revoke_many(aws, leases, record))
        if problem:
            raise errors.AwsError(problem)

    def run_timed(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                  change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        now = clock.now()
        client = _iam(aws, desired.connection)
        match change.subject:
            case _ if change.subject == EXPIRED:
                due = [lease for lease in aws.state.leases_of(desired.name)
                       if expired(lease, now) or pending(lease)
                       or client.user(str(lease["userName"])) is None]
                self._revoke(aws, due)
            case _ if change.subject == INTERRUPTED:
                clean_interrupted(aws, desired.address, desired.connection)
            case _ if change.subject == ORPHANS:
                for name in self._orphans(aws, client, entry):
                    client.strip_and_delete_user(name)
            case _:
                pass
        return aws.state.resources.get(entry.address, entry)

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """An interrupted lease create: its user (if made) has no credentials
        anyone holds; the template's ``! revoke`` of interrupted leases deletes it."""
        return recovery.Recovery.continues(
            journal, f"cleaning up {recovery.what(journal)} (lease {journal.data.get('leaseId')}, user "
            f"{journal.data.get('userName')}): the user is deleted")

    # -- leases (the lease commands call these, under the state lock) ------------------------------
    def issue(self, aws: base.AwsContext, desired: plan_model.Desired, ttl: int,
              ) -> tuple[Mapping[str, Any], str, str]:
        """A new lease: its user made and verified; (lease record, key id, secret).
        The secret is returned to the caller only (printed once), never recorded."""
        want = desired.attributes
        lease_id = uuid.uuid4().hex[:10]
        name = user_name(str(want["userNamePrefix"]), desired.name, lease_id)
        now = clock.now()
        created, expires = _at(now), _at(now + datetime.timedelta(seconds=ttl))
        cap = _at(now + datetime.timedelta(seconds=manifest.parse_duration(want["maxTtl"])))
        journal = aws.begin(desired.address, state_model.Operation.CREATE, "create-lease-user", {
            "leaseId": lease_id, "userName": name, "connection": dict(desired.connection)})
        client = _iam(aws, desired.connection)
        try:
            user = client.create_user(name, path=str(want["path"]), boundary=want.get("permissionsBoundary"),
                                      tags=_tags(aws.stack, desired.address, lease_id, want["tags"]))
            for group in want["groups"]:
                client.add_to_group(name, group)
            for arn in want["policyArns"]:
                client.attach_user(name, arn)
            if want.get("inlinePolicy"):
                client.put_user_inline(name, INLINE_POLICY, want["inlinePolicy"])
            key_id, secret = client.create_access_key(name)
            rotation.verify_key(aws, key_id, secret, str(user["Arn"]))
        except errors.ReconcilerError as exc:
            try:
                client.strip_and_delete_user(name)
            except errors.ReconcilerError:
                raise errors.AwsError(f"{exc.message}; the half-made user {name} could not be deleted now: the "
                                      "next plan/apply deletes it", getattr(exc, "code", None)) from None
            aws.persist_outcome(aws.state.without_journal(journal.operation_id))
            raise errors.AwsError(f"{exc.message}; the half-made user {name} was deleted: nothing leaked",
                                  getattr(exc, "code", None)) from None
        lease = {"id": lease_id, "template": desired.name, "userName": name, "userArn": str(user["Arn"]),
                 "path": str(want["path"]),
                 "keyId": key_id, "createdAt": created, "expiresAt": expires, "maxExpiresAt": cap,
                 "connection": dict(desired.connection), "revokeAttempts": 0, "lastError": ""}
        aws.persist_outcome(aws.state.with_lease(lease).without_journal(journal.operation_id))
        return lease, key_id, secret

    # -- drift --unmanaged --------------------------------------------------------
    def unmanaged(self, aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        """IAM users tagged for this stack that no lease in state records (those
        of a template in state are its own drift: orphans), and users under a
        path this stack's templates use (other than ``/``)."""
        names = listing.recorded(prior)
        entries = listing.entries_of(KIND, desired, prior)
        templates = {e.address for e in prior.resources.values() if e.kind == KIND}
        paths = sorted({str(a.get("path") or "/") for a, _ in entries} - {"/"})
        found: list[unmanaged_model.Unmanaged] = []
        for connection in listing.connections(aws, [(c, factory.GLOBAL_REGION) for _, c in entries],
                                              region=factory.GLOBAL_REGION):
            client = _iam(aws, connection)
            listed = listed_users(aws, connection, client)
            for user in (listed.values() if listed is not None else client.users("/")):
                name, arn, path = str(user["UserName"]), str(user["Arn"]), str(user.get("Path") or "/")
                if name in names or arn in names:
                    continue
                tags = _tags_of(user) if listed is not None else client.user_tags(name)
                template = str(tags.get(TEMPLATE_TAG, ""))
                if aws.ours(tags.get("reconciler:stack", "")):
                    if template in templates:
                        continue  # reported by the template's own refresh, as an orphan
                    found.append(unmanaged_model.Unmanaged(
                        KIND, "iam:user", arn, "global", unmanaged_model.TAGGED,
                        f"tagged reconciler:stack={aws.stack}{f', {TEMPLATE_TAG}={template}' if template else ''}; "
                        "no lease in state records it",
                        "a lease user whose lease state lost (its credentials were printed once, never kept): "
                        "delete it, or declare its template and apply, after which `apply --allow-destroy` "
                        "deletes it as an orphan", template))
                    continue
                under = next((p for p in paths if path.startswith(p)), None)
                if under is not None:
                    found.append(unmanaged_model.Unmanaged(
                        KIND, "iam:user", arn, "global", unmanaged_model.PREFIX,
                        f"user {name} is under the path {under} this stack's templates use; no lease records it",
                        "leave it if another stack or person owns it, else delete it"))
        return found


def _outermost(paths: set[str]) -> set[str]:
    """The paths none of the others contains (ListUsers PathPrefix lists inside them)."""
    return {p for p in paths if not any(o != p and p.startswith(o) for o in paths)}


# -- plan rules (pure) -----------------------------------------------------------------------------
def _user_arn(path: str) -> str:
    return f"arn:aws:iam::*:user{path}*"


class DynamicIamTemplateRules(plan_rules.Rules):
    """Expired leases and failed revokes are revoked by apply (retried with no
    cap); interrupted creates are cleaned up; orphans need --allow-destroy;
    a removed template revokes all its leases (every delete needs it)."""

    noun = "template"

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        return plan_rules.Severity.HIGH if path == "leaseUsers" else plan_rules.Severity.WARNING

    def drift_note(self, entry: state_model.ResourceState) -> str:
        return "a lease's user was changed outside reconciler (a policy or group added by hand); apply puts it back"

    def timed(self, desired: plan_model.Desired, entry: state_model.ResourceState, now: datetime.datetime,
              live: plan_model.Refreshed | None = None,
              prior: state_model.State | None = None) -> tuple[plan_rules.Timed, ...]:
        due: list[plan_rules.Timed] = []
        leases = prior.leases_of(desired.name) if prior is not None else []
        gone = set((live.ids.get("gone") if live is not None else None) or ())
        todo = [lease for lease in leases if expired(lease, now) or pending(lease) or lease["id"] in gone]
        if todo:
            notes = tuple(
                f"lease {lease['id']} (user {lease['userName']}): "
                + ("user already deleted outside reconciler: forgotten" if lease["id"] in gone else
                   f"retry {int(lease.get('revokeAttempts') or 0) + 1} (last error: {lease.get('lastError')})"
                   if pending(lease) else f"expired at {lease['expiresAt']}")
                for lease in todo)
            due.append(plan_rules.Timed(Action.REVOKE, f"revoke {len(todo)} lease{'s' if len(todo) != 1 else ''}: "
                                        "each user deleted with everything attached",
                                        EXPIRED, notes=notes))
        opened = [j for j in (prior.journal if prior is not None else ()) if j.address == desired.address]
        if opened:
            due.append(plan_rules.Timed(Action.REVOKE, "clean up interrupted lease creates: nobody holds their "
                                        "credentials", INTERRUPTED,
                                        notes=tuple(f"lease {j.data.get('leaseId')} (user {j.data.get('userName')})"
                                                    for j in opened)))
        orphans = (live.ids.get("orphans") if live is not None else None) or []
        if orphans:
            due.append(plan_rules.Timed(Action.REVOKE, "delete users tagged for this template that no lease records",
                                        ORPHANS, destroys=True,
                                        notes=tuple(f"user {name}" for name in orphans)))
        return tuple(due)

    def schedule(self, desired: plan_model.Desired, entry: state_model.ResourceState | None,
                 now: datetime.datetime, live: plan_model.Refreshed | None = None) -> tuple[str, ...]:
        return ()

    def review(self, change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        count = len(context.prior.leases_of(change.name))
        match change.action:
            case Action.DELETE if count:
                return plan_rules.Review(notes=(f"revokes its {count} lease{'s' if count != 1 else ''} first "
                                                "(each user deleted with everything attached)",))
            case Action.UPDATE if count:
                return plan_rules.Review(notes=(f"brings the users of its {count} live lease"
                                                f"{'s' if count != 1 else ''} in step with the template",))
            case _:
                return plan_rules.Review()

    def granted(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """The manager's policy: users under the template's path only; a boundary
        and managed policies it cannot change (condition keys); its groups only."""
        want = desired.attributes
        paths = {str(want["path"])} | {str(v["path"]) for v in prior.leases_of(desired.name) if v.get("path")}
        users = tuple(sorted(_user_arn(p) for p in _outermost(paths)))  # live leases under an older path too
        boundary = want.get("permissionsBoundary")
        bounded: tuple[plan_rules.Condition, ...] = (
            (("ArnEquals", "iam:PermissionsBoundary", (str(boundary),)),) if boundary else ())
        found = [
            plan_rules.Permission(("iam:CreateUser", "iam:PutUserPermissionsBoundary"), users, bounded),
            plan_rules.Permission(USER_ACTIONS, users),
        ]
        if not boundary:  # only a template that drops its boundary removes one: granted beside a boundary,
            # the manager could strip it after PutUserPolicy and escape it
            found.append(plan_rules.Permission(("iam:DeleteUserPermissionsBoundary",), users))
        if want["policyArns"]:
            found.append(plan_rules.Permission(("iam:AttachUserPolicy",), users,
                                               (("ArnEquals", "iam:PolicyARN", tuple(want["policyArns"])),)))
        found.append(plan_rules.Permission(("iam:DetachUserPolicy",), users))
        if want["groups"]:
            found.append(plan_rules.Permission(("iam:AddUserToGroup", "iam:RemoveUserFromGroup"),
                                               tuple(f"arn:aws:iam::*:group/{g}" for g in want["groups"])))
        found.append(plan_rules.Permission(("iam:DeleteVirtualMFADevice",), ("arn:aws:iam::*:mfa/*",),
                                           note="virtual MFA devices someone added to a lease's user are deleted "
                                           "with it; their ARNs are not under the user's path"))
        found.append(plan_rules.Permission(("iam:ListUsers",), ("*",),
                                           note="deleting orphaned users (apply) lists the users under the "
                                           "template's path: iam:ListUsers takes no resource ARN in AWS "
                                           "(Resource \"*\"); it only lists"))
        found.append(plan_rules.Permission(("iam:GetAccountAuthorizationDetails",), ("*",), note=LIST_USERS_NOTE))
        return tuple(found)


LIST_USERS_NOTE = ("plan reads every lease's user (and looks for orphans) from the account's listing of users, "
                   "in pages, not user by user: iam:GetAccountAuthorizationDetails takes no resource ARN "
                   "(Resource \"*\"); it only reads. Without it, plan reads each user")
USER_ACTIONS = ("iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys", "iam:DeleteUser",
                "iam:GetUser", "iam:TagUser", "iam:UntagUser", "iam:ListUserTags", "iam:ListAttachedUserPolicies",
                "iam:PutUserPolicy", "iam:GetUserPolicy", "iam:DeleteUserPolicy", "iam:ListUserPolicies",
                "iam:ListGroupsForUser", "iam:GetLoginProfile",
                "iam:DeleteLoginProfile", "iam:ListMFADevices", "iam:DeactivateMFADevice", "iam:ListSSHPublicKeys",
                "iam:DeleteSSHPublicKey", "iam:ListSigningCertificates", "iam:DeleteSigningCertificate",
                "iam:ListServiceSpecificCredentials", "iam:DeleteServiceSpecificCredential")

RULES = DynamicIamTemplateRules()

"""IamRole: a role an outside service assumes to use this stack's keys.

Attributes (what plan compares; policy documents in canonical form, so AWS's
reordering and rewriting never shows as a change):
  roleName, path            immutable: a change replaces the role (deleted first: one name)
  description, maxSessionDuration, tags
  trust                     the trust policy, rendered from ``trust``: ``awsAccount`` (the
                            account root or a principal ARN, ``sts:ExternalId`` required) or
                            ``oidc`` (the provider's ARN, ``aud`` / ``sub`` conditions)
  inlinePolicies            every inline policy by name: ``reconciler-grants`` (one statement
                            per granted key, on the exact key and replica ARNs) when there are
                            grants; one added by hand is drift, and removed
  managedPolicyArns         exactly these attached; one attached by hand is drift, and detached
Ids: roleName, arn, roleId, and ``created`` (the one clock, when this stack made it:
how the eventual-consistency retry knows a principal is new).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler import clock, errors
from reconciler.aws import factory
from reconciler.aws import iam as iam_adapter
from reconciler.aws import propagation
from reconciler.kinds import base, kms, oidc, recovery
from reconciler.kinds import unmanaged as listing
from reconciler.manifest import model as manifest
from reconciler.plan import actions as plan_actions
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.plan import refs
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import model as state_model

KIND = "IamRole"
GRANTS_POLICY = "reconciler-grants"  # the one inline policy the grants render to
VERSION = "2012-10-17"
REPLACE_ON = frozenset({"roleName", "path"})
DEFAULT_SESSION = 3600
FRESH_SECONDS = 300  # an identity this stack created this recently may not have propagated yet
KMS_ACTIONS = {
    "encrypt": ("kms:Encrypt",), "decrypt": ("kms:Decrypt",), "describe": ("kms:DescribeKey",),
    "generate-data-key": ("kms:GenerateDataKey",), "get-public-key": ("kms:GetPublicKey",),
    "re-encrypt": ("kms:ReEncryptFrom", "kms:ReEncryptTo"),
}
_LISTS = ("Action", "NotAction", "Resource", "NotResource")
_ACCOUNT = re.compile(r"^[0-9]{12}$")


# -- documents (pure) -------------------------------------------------------------------------
def _canonical(document: Any) -> dict[str, Any]:
    """A policy document in one canonical form, so equal documents compare equal:
    JSON text parsed, one statement or a list of them, every value list sorted
    (a single value is a one-element list), an empty ``Sid`` dropped, an
    account id principal as the root ARN AWS rewrites it to, statements in
    order of Sid then content. References (``$ref``/``$unknown``) are kept
    as they are, to be resolved in place.
    TODO(issue 8): swap for plan/policydoc.normalize once it lands on main."""
    doc = json.loads(document) if isinstance(document, str) else dict(document)
    statements = doc.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    out = {k: v for k, v in doc.items() if k != "Statement"}
    out["Statement"] = sorted((_statement(s) for s in statements),
                              key=lambda s: (str(s.get("Sid", "")), json.dumps(s, sort_keys=True)))
    return out


def _is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and (set(value) == {refs.REF} or set(value) == {refs.UNKNOWN})


def _values(value: Any) -> Any:
    if _is_ref(value):
        return value
    items = value if isinstance(value, list) else [value]
    unique = {json.dumps(v, sort_keys=True): v for v in items}
    return [unique[k] for k in sorted(unique)]


def _principals(kind: str, value: Any) -> Any:
    found = _values(value)
    if kind != "AWS" or not isinstance(found, list):
        return found
    return _values([f"arn:aws:iam::{v}:root" if isinstance(v, str) and _ACCOUNT.match(v) else v for v in found])


def _statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key == "Sid" and not value:
            continue
        if key in _LISTS:
            out[key] = _values(value)
        elif key in ("Principal", "NotPrincipal") and isinstance(value, Mapping):
            out[key] = {k: _principals(k, v) for k, v in value.items()}
        elif key == "Condition" and isinstance(value, Mapping):
            out[key] = {op: {k: _values(v) for k, v in dict(cond).items()} for op, cond in value.items()}
        else:
            out[key] = value
    return out


def _condition(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Exact values under StringEquals, those with ``*`` or ``?`` under StringLike."""
    found: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        op = "StringLike" if any(c in value for c in "*?") else "StringEquals"
        found.setdefault(op, {})[key] = value
    return found


def trust_policy(trust: Mapping[str, Any], config: manifest.Config) -> dict[str, Any]:
    """The trust policy a manifest's ``trust`` renders to (references unresolved)."""
    if "awsAccount" in trust:
        account = trust["awsAccount"]
        principal = account.get("principal") or f"arn:aws:iam::{account['accountId']}:root"
        statement = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole",
                     "Condition": {"StringEquals": {"sts:ExternalId": account["externalId"]}}}
    else:
        web = trust["oidc"]
        address = f"{oidc.KIND}/{web['provider']}"
        provider = config.resources.get(address)
        if provider is None:
            raise errors.PlanError(f"trust.oidc.provider: {address} is not declared")
        issuer = oidc.host_path(provider.spec["url"])
        statement = {"Effect": "Allow", "Principal": {"Federated": [refs.Ref(address, "arn").to_json()]},
                     "Action": "sts:AssumeRoleWithWebIdentity",
                     "Condition": _condition({f"{issuer}:aud": web["audience"], f"{issuer}:sub": web["subject"]})}
    return _canonical({"Version": VERSION, "Statement": [statement]})


def _sid(name: str) -> str:
    """A Sid (letters and digits only) naming the grant's key."""
    return "Use" + "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def grants_policy(grants: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One statement per key: its exact actions on every ARN it has (primary and
    replicas, known after apply for a new key)."""
    actions: dict[str, set[str]] = {}
    for grant in grants:
        actions.setdefault(grant["provider"], set()).update(a for name in grant["actions"]
                                                             for a in KMS_ACTIONS[name])
    statements = [{"Sid": _sid(name), "Effect": "Allow", "Action": sorted(found),
                   "Resource": refs.Ref(f"{kms.KIND}/{name}", "arns").to_json()}
                  for name, found in sorted(actions.items())]
    return _canonical({"Version": VERSION, "Statement": statements})


def principals_of(document: Mapping[str, Any]) -> list[str]:
    """Every principal ARN a policy names (AWS and Federated)."""
    found: list[str] = []
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        if isinstance(principal, Mapping):
            for values in principal.values():
                found.extend(v for v in (values if isinstance(values, list) else [values]) if isinstance(v, str))
    return sorted(set(found))


def _iam(aws: base.AwsContext, connection: Mapping[str, Any]) -> iam_adapter.IamAdapter:
    return oidc.iam(aws, connection)


LIST_ROLES_NOTE = ("iam:ListRoles and iam:GetAccountAuthorizationDetails take no resource ARN (Resource \"*\"): "
                   "plan reads the stack's roles from the account's listing in pages, not role by role")


ROLES_TO_LIST = 2  # from this many roles in state (per auth), refresh lists the account's roles


def _listed_roles(aws: base.AwsContext, connection: Mapping[str, Any],
                  client: iam_adapter.IamAdapter) -> Mapping[str, Any] | None:
    """The account's role details, listed once per run and auth (plan time),
    when state holds at least ROLES_TO_LIST roles reached with that auth: a
    role read alone costs three or more calls, the listing two pages per
    1,000 roles of the account. None: read each role (fewer roles, during
    apply, or an identity not allowed to list)."""
    auth = connection.get("auth")

    def count() -> collections.Counter[str]:  # roles in state by auth, once per state (not per role)
        return collections.Counter(json.dumps(e.connection.get("auth"), sort_keys=True)
                                   for e in aws.state.resources.values() if e.kind == KIND)
    if aws.keyring.per_state(aws.state, "iam.roles-by-auth", count)[json.dumps(auth, sort_keys=True)] < ROLES_TO_LIST:
        return None

    def load() -> Mapping[str, Any] | None:
        try:
            return client.role_details()
        except errors.AwsAccessDenied:
            return None
    return aws.listed("iam:roles", [auth], load)


def _fresh(aws: base.AwsContext, document: Mapping[str, Any]) -> list[str]:
    """The principals ``document`` names that this stack created moments ago (by the one clock)."""
    now = clock.now()
    made = {str(e.ids["arn"]): str(e.ids["created"]) for e in aws.state.resources.values()
            if e.ids.get("arn") and e.ids.get("created")}
    found = []
    for arn in principals_of(document):
        if arn in made:
            age = (now - _parse_time(made[arn])).total_seconds()
            if age <= FRESH_SECONDS:
                found.append(arn)
    return found


def _parse_time(stamp: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(stamp)
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


class IamRoleHandler:
    kind = KIND

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        name = str(spec.get("roleName") or resource.name)
        inline = {GRANTS_POLICY: grants_policy(list(spec["grants"]))} if spec.get("grants") else {}
        attrs: dict[str, Any] = {
            "roleName": name, "path": spec.get("path", "/"), "description": spec.get("description", ""),
            "maxSessionDuration": int(spec.get("maxSessionDuration", DEFAULT_SESSION)),
            "tags": dict(spec.get("tags") or {}), "trust": trust_policy(spec["trust"], config),
            "inlinePolicies": inline, "managedPolicyArns": sorted(set(spec.get("managedPolicyArns") or [])),
        }
        connection = {"region": config.region_of(resource) or factory.GLOBAL_REGION,
                      "auth": dict(config.auth_of(resource))}
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection, replace_on=REPLACE_ON,
                                  lookup={"roleName": name})

    # -- reading ---------------------------------------------------------------------------
    def _read(self, client: iam_adapter.IamAdapter, name: str,
              listed: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Live attributes and ids of role ``name`` (None, {} when it is gone):
        from ``listed`` (the account's role details, ``_listed_roles``) when it
        holds the role, else by GetRole and the role's policy listings."""
        if listed is not None and name in listed:
            role = listed[name]
            tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
            inline = dict(role["RolePolicyList"])
            attached = sorted(str(p["PolicyArn"]) for p in role.get("AttachedManagedPolicies") or [])
        else:
            found = client.role(name)
            if found is None:
                return None, {}
            role = found
            tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []} or client.role_tags(name)
            inline, attached = client.inline_policies(name), client.attached_policies(name)
        attrs = {"roleName": role["RoleName"], "path": role.get("Path", "/"),
                 "description": role.get("Description") or "",
                 "maxSessionDuration": int(role.get("MaxSessionDuration") or DEFAULT_SESSION),
                 "tags": kms._user_tags(tags), "trust": _canonical(role["AssumeRolePolicyDocument"]),
                 "inlinePolicies": {n: _canonical(d) for n, d in sorted(inline.items())},
                 "managedPolicyArns": attached}
        return attrs, {"roleName": role["RoleName"], "arn": role["Arn"], "roleId": role.get("RoleId")}

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        connection = dict(desired.connection if desired is not None else entry.connection)
        client = _iam(aws, connection)
        attrs, ids = self._read(client, str(entry.ids["roleName"]), _listed_roles(aws, connection, client))
        if attrs is None:
            return planner.Refreshed(None)
        return planner.Refreshed(attrs, {**entry.ids, **ids})

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """A role of that name this stack does not record refuses the plan: import it."""
        name = str(desired.attributes["roleName"])
        if entry is not None and entry.ids.get("roleName") == name:
            return []
        if any(e.kind == KIND and e.ids.get("roleName") == name for e in aws.state.resources.values()):
            return []
        role = _iam(aws, desired.connection).role(name)
        if role is None or _owned(role, aws, desired.address):
            return []  # free, or the role this stack made for this address: the plan reads it in
        return [f"{desired.address}: a role named {name} already exists; adopt it with "
                f"`reconciler import {desired.address} {name}`"]

    def find_owned(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed | None:
        """The role of the manifest's name, when its tags say this stack made it
        for this address (state lost it): read in, never refused as a stranger's."""
        name = str(desired.attributes["roleName"])
        client = _iam(aws, desired.connection)
        role = client.role(name)
        if role is None or not _owned(role, aws, desired.address):
            return None
        attrs, ids = self._read(client, name)
        if attrs is None:
            return None
        return planner.Refreshed(attrs, ids, found_by=f"found role {name} by its tags ({kms.STACK_TAG}="
                                                      f"{aws.stack}, {kms.ADDRESS_TAG}={desired.address}): "
                                                      "read into state, not created again")

    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        name = str(desired.lookup["roleName"])
        attrs, ids = self._read(_iam(aws, desired.connection), name)
        if attrs is None:
            raise errors.AwsNotFound(f"no role named {name} in this account (iam:GetRole: NoSuchEntity)",
                                     "NoSuchEntity")
        return planner.Refreshed(attrs, ids)

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        found = self.lookup(aws, desired)
        return state_model.ResourceState(KIND, desired.name, desired.mode, dict(found.ids),
                                         dict(found.attributes or {}), desired.connection, desired.dependencies)

    # -- writing ---------------------------------------------------------------------------
    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Journaled like a KMS key: intent, then CreateRole tagged with the
        operation id, then the record (as created) in one write; the policies
        follow, as an update of a recorded role."""
        want = desired.attributes
        created = {**dict(want), "inlinePolicies": {}, "managedPolicyArns": []}
        journal = aws.begin(desired.address, state_model.Operation.CREATE, "create-role",
                            {"connection": dict(desired.connection), "attributes": created,
                             "dependencies": list(desired.dependencies)})
        client = _iam(aws, desired.connection)
        trust = want["trust"]
        try:
            role = propagation.retry_new_principals(
                lambda: client.create_role(
                    want["roleName"], path=want["path"], trust=trust, description=want["description"],
                    max_session=want["maxSessionDuration"],
                    tags={**want["tags"], **kms.ownership(aws.stack, desired.address, journal.operation_id)}),
                _fresh(aws, trust), "the trust policy")
        except errors.AwsError:
            _settle_failed(self, aws, journal)
            raise
        entry = state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED,
                                          {"roleName": role["RoleName"], "arn": role["Arn"],
                                           "roleId": role.get("RoleId"), "created": clock.stamp()},
                                          created, desired.connection, desired.dependencies)
        aws.settle(journal, entry)
        return self._converge(aws, desired, entry, created)

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """An interrupted create: the role of that name, if its operation tag is this entry's."""
        left_open = recovery.unless_create(journal, "role")
        if left_open is not None:
            return left_open
        what = recovery.what(journal)
        data = journal.data
        client = _iam(aws, data["connection"])
        name = str(data["attributes"]["roleName"])
        role = client.role(name)
        tags = {t["Key"]: t["Value"] for t in (role or {}).get("Tags") or []}
        if role is None or tags.get(kms.OPERATION_TAG) != journal.operation_id:
            return recovery.Recovery.rolled_back(journal, f"rolled back {what}: no role was created")
        kind, resource = journal.address.split("/", 1)
        entry = state_model.ResourceState(kind, resource, state_model.Mode.MANAGED,
                                          {"roleName": name, "arn": role["Arn"], "roleId": role.get("RoleId"),
                                           "created": journal.started_at},
                                          dict(data["attributes"]), data["connection"],
                                          tuple(data.get("dependencies", ())))
        return recovery.Recovery.resumed(journal, entry, f"resuming {what}: found role {name}")

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._converge(aws, desired, entry, dict(change.before or entry.attributes))

    def _converge(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                  have: Mapping[str, Any]) -> state_model.ResourceState:
        want = desired.attributes
        client = _iam(aws, desired.connection)
        name = str(entry.ids["roleName"])
        if (want["description"], want["maxSessionDuration"]) != (have.get("description"),
                                                                 have.get("maxSessionDuration")):
            client.update_role(name, description=want["description"], max_session=want["maxSessionDuration"])
        if want["trust"] != have.get("trust"):
            propagation.retry_new_principals(lambda: client.set_trust(name, want["trust"]),
                                             _fresh(aws, want["trust"]), "the trust policy")
        tags, old = want["tags"], have.get("tags") or {}
        client.untag_role(name, sorted(k for k in old if k not in tags))
        client.tag_role(name, {k: v for k, v in tags.items() if old.get(k) != v})
        policies, had = want["inlinePolicies"], have.get("inlinePolicies") or {}
        for policy, document in sorted(policies.items()):
            if had.get(policy) != document:
                client.put_inline_policy(name, policy, document)
        for policy in sorted(set(had) - set(policies)):
            client.delete_inline_policy(name, policy)
        attached = set(have.get("managedPolicyArns") or [])
        for arn in sorted(set(want["managedPolicyArns"]) - attached):
            client.attach(name, arn)
        for arn in sorted(attached - set(want["managedPolicyArns"])):
            client.detach(name, arn)
        return dataclasses.replace(entry, attributes=dict(want), connection=desired.connection,
                                   dependencies=desired.dependencies)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        _iam(aws, entry.connection).delete_role(str(entry.ids["roleName"]))

    # -- drift --unmanaged --------------------------------------------------------
    def unmanaged(self, aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        """Roles tagged for this stack that state does not record, and roles
        under a path this stack's roles use (other than ``/``). Service-linked
        roles are AWS's, never ours."""
        names = listing.recorded(prior)
        entries = listing.entries_of(KIND, desired, prior)
        paths = sorted({str(a.get("path") or "/") for a, _ in entries} - {"/"})
        found: list[unmanaged_model.Unmanaged] = []
        for connection in listing.connections(aws, [(c, factory.GLOBAL_REGION) for _, c in entries],
                                              region=factory.GLOBAL_REGION):
            client = _iam(aws, connection)
            for role in client.roles():
                name, arn, path = str(role["RoleName"]), str(role["Arn"]), str(role.get("Path") or "/")
                if name in names or arn in names or path.startswith("/aws-service-role/"):
                    continue
                tags = client.role_tags(name)
                if tags.get(kms.STACK_TAG) == aws.stack:
                    found.append(listing.tagged_item(KIND, "iam:role", arn, "global", tags, prior, aws.stack, "role"))
                    continue
                under = next((p for p in paths if path.startswith(p)), None)
                if under is not None:
                    found.append(unmanaged_model.Unmanaged(
                        KIND, "iam:role", arn, "global", unmanaged_model.PREFIX,
                        f"role {name} is under the path {under} this stack's roles use; not in state",
                        f"declare it and `reconciler import IamRole/NAME {name}`, or leave it if another stack "
                        "owns it"))
        return found


def _settle_failed(handler: IamRoleHandler, aws: base.AwsContext, journal: state_model.JournalEntry) -> None:
    """After a failed CreateRole: record the role a retried call made, or roll
    the entry back; left open when even the look-up fails."""
    try:
        outcome = handler.recover(aws, journal)
    except errors.ReconcilerError:
        return
    aws.persist_outcome(outcome.applied(aws.state))


# -- plan rules (pure) ---------------------------------------------------------------------
ROLE_ACTIONS = ("iam:CreateRole", "iam:GetRole", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy",
                "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags", "iam:ListRolePolicies", "iam:GetRolePolicy",
                "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:ListAttachedRolePolicies",
                "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:ListInstanceProfilesForRole")
WIDENED_NOTE = "the role grants more than the manifests say (trust or permissions widened); apply sets it back"


def _as_set(value: Any) -> set[str]:
    if value is None:
        return set()
    items = value if isinstance(value, list) else [value]
    return {json.dumps(v, sort_keys=True) for v in items}


def widens(path: str, before: Any, after: Any) -> bool:
    """Whether a change (recorded ``before``, live ``after``) lets more in: a new
    statement, principal, action or resource, or a condition removed or changed.
    Added conditions and removed grants only narrow."""
    top = path.split(".", 1)[0].split("[", 1)[0]
    if top == "managedPolicyArns":
        return bool(_as_set(after) - _as_set(before))
    if top not in ("trust", "inlinePolicies"):
        return False
    if ".Condition" in path:
        return after is None or before is not None  # removed or changed; added only narrows
    if path.endswith(".Effect"):
        return after == "Allow"
    if isinstance(after, Mapping):  # a whole statement or policy appeared
        return before is None or json.dumps(after, sort_keys=True) != json.dumps(before, sort_keys=True)
    return bool(_as_set(after) - _as_set(before))


def _owned(role: Mapping[str, Any], aws: base.AwsContext, address: str) -> bool:
    """Whether a role's tags (as GetRole returns them) say this stack made it for ``address``."""
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    return aws.ours(tags.get(kms.STACK_TAG, "")) and tags.get(kms.ADDRESS_TAG) == address


class IamRoleRules(plan_rules.Rules):
    """Roles are replaced destroying first (a role name is unique); drift that
    widens trust or permissions is critical."""

    def recreate(self, entry: state_model.ResourceState, desired: plan_model.Desired) -> tuple[str, bool]:
        """Nothing is lost with a role gone: it is made again from the manifest
        (and the drift report says it was gone)."""
        return "the role recorded in state no longer exists in AWS; it will be created again", False

    noun = "role"
    replace_order = plan_actions.Action.DELETE_THEN_CREATE

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        return plan_rules.Severity.CRITICAL if widens(path, before, after) else plan_rules.Severity.WARNING

    def drift_note(self, entry: state_model.ResourceState) -> str:
        return "the role was changed outside reconciler; apply sets it back to the manifests"

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        entry = prior.resources.get(desired.address)
        arn = (str(entry.ids["arn"]) if entry is not None and entry.ids.get("arn") else
               f"arn:aws:iam::*:role{desired.attributes.get('path', '/')}{desired.attributes['roleName']}")
        found = [plan_rules.Permission(ROLE_ACTIONS, (arn,))]
        if sum(1 for d in stack.values() if d.kind == KIND) >= ROLES_TO_LIST:
            found.append(plan_rules.Permission(("iam:GetAccountAuthorizationDetails", "iam:ListRoles"), ("*",), (),
                                               LIST_ROLES_NOTE))
        return tuple(found)


    def granted(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """What the role may do (``policy --for``): each granted key's actions on
        its exact ARNs, as recorded; a key not created yet, in every region it
        will be in and only with the ``reconciler:address`` tag it is created
        with (the policy command adds the stack tag), never any key there."""
        found = []
        for statement in (desired.attributes.get("inlinePolicies") or {}).get(GRANTS_POLICY, {}).get("Statement", []):
            ref = refs.Ref.parse(statement.get("Resource"))
            if ref is None:
                continue
            arns, conditions = _key_scope(ref.address, stack, prior)
            found.append(plan_rules.Permission(tuple(statement["Action"]), arns, conditions))
        return tuple(found)


def _key_scope(address: str, stack: Mapping[str, plan_model.Desired], prior: state_model.State,
               ) -> tuple[tuple[str, ...], tuple[plan_rules.Condition, ...]]:
    """The ARNs of a granted key as recorded in state, else as the key's own
    permissions name it (kms.key_scope: by ownership tag, adopted keys by id or alias)."""
    entry = prior.resources.get(address)
    if entry is not None and entry.ids.get(kms.ARNS):
        return tuple(entry.ids[kms.ARNS]), ()
    key = stack.get(address)
    if key is None:
        return (), ()
    return kms.key_scope(key, prior)


RULES = IamRoleRules()

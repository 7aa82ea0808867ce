"""The key side of a grant: a KmsProvider whose key an IamRole is granted
lets exactly that role do exactly those actions in its key policy, on the
primary and every replica, and always keeps the account-root statement (so
the key stays manageable). Pure.

The statement names the role by ``aws:PrincipalArn`` under the account's
root principal rather than as the principal itself: a key policy that
names a role as principal is refused until the role exists, and the role's
own inline policy needs the key's ARN first (a cycle); the condition names
exactly the same role, needs no ordering, and does not turn into the role's
unique id (``AROA...``, a perpetual diff) when the role is recreated.

``keyUsers`` (the attribute plan compares): ``{"IamRole/name": {"role":
"/path/name", "actions": [...]}}``, read back from the live policy by the
statements this module writes (Sid ``ReconcilerKeyUser...``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.manifest import model as manifest
from reconciler.manifest import policylint
from reconciler.state import model as state_model
from reconciler.plan import policydoc

ROLE_KIND = "IamRole"
SID_PREFIX = "ReconcilerKeyUser"
ROOT_SID = "Enable IAM User Permissions"  # AWS's own name for the statement of its default key policy
VERSION = "2012-10-17"


def role_path(spec: Mapping[str, Any], name: str) -> str:
    """``/path/name`` of a role: ``roleName`` when given, else its manifest name."""
    return f"{spec.get('path') or '/'}{spec.get('roleName') or name}"


def desired_users(key: str, config: manifest.Config) -> dict[str, Any]:
    """The roles the stack grants use of KmsProvider ``key``, with their actions."""
    users: dict[str, Any] = {}
    for resource in config.of_kind(ROLE_KIND):
        actions = {a for g in resource.spec.get("grants") or [] if g.get("provider") == key
                   for a in policydoc.grant_actions(g.get("actions") or [])}
        if actions:
            users[resource.address] = {"role": role_path(resource.spec, resource.name), "actions": sorted(actions)}
    return users


def manages_users(config: manifest.Config) -> bool:
    """Whether keys carry ``keyUsers``: while the stack declares any role (so a
    grant moved or removed takes its statement off the key it named)."""
    return bool(config.of_kind(ROLE_KIND))


def sid(address: str) -> str:
    """A statement id IAM accepts (letters and digits): ``IamRole/cerby-vendor`` -> ``...CerbyVendor``."""
    name = state_model.Address(address).name
    return SID_PREFIX + "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def root(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def statement(address: str, user: Mapping[str, Any], account: str) -> dict[str, Any]:
    return {"Sid": sid(address), "Effect": "Allow", "Principal": {"AWS": root(account)},
            "Action": sorted(user["actions"]), "Resource": "*",
            "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{account}:role{user['role']}"}}}


def root_statement(account: str) -> dict[str, Any]:
    return {"Sid": ROOT_SID, "Effect": "Allow", "Principal": {"AWS": root(account)}, "Action": "kms:*",
            "Resource": "*"}


def _ours(statement_: Any) -> bool:
    return isinstance(statement_, Mapping) and str(statement_.get("Sid", "")).startswith(SID_PREFIX)


def users_of(policy: Any) -> dict[str, Any]:
    """The ``keyUsers`` a live key policy holds (the statements written here)."""
    users: dict[str, Any] = {}
    for found in policydoc.statements(policy):
        if not _ours(found):
            continue
        arns = policydoc.normalize_statement(found).get("Condition", {}).get("ArnEquals", {}).get(
            "aws:principalarn", [])
        for arn in arns:
            role = arn.split(":role", 1)[1] if ":role" in arn else arn
            users[f"{ROLE_KIND}/{role.rsplit('/', 1)[-1]}"] = {
                "role": role, "actions": sorted(policydoc.normalize_statement(found).get("Action", []))}
    return users


def compose(policy: Any, users: Mapping[str, Any], account: str) -> dict[str, Any]:
    """``policy`` (the key's live one) with its key-user statements replaced by
    ``users``'; every other statement kept as it is, and the account-root
    statement added when missing."""
    current = policydoc.parse(policy) if policy else {}
    kept = [s for s in policydoc.statements(current) if not _ours(s)]
    if not any(policylint.is_account_root(s) for s in kept):
        kept.insert(0, root_statement(account))
    composed = [*kept, *(statement(a, u, account) for a, u in sorted(users.items()))]
    head = {k: v for k, v in (current.items() if isinstance(current, Mapping) else ()) if k != "Statement"}
    return {"Version": VERSION, **head, "Statement": composed}


def account_of(arn: str) -> str:
    return arn.split(":")[4]

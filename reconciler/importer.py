"""`import KIND/NAME AWS_ID`: adopt an existing AWS object into state as a
declared resource, managed from then on.

What AWS_ID names, by kind:
  KmsProvider         a key id, key ARN or alias (of a KmsProvider that declares the key to create)
  OidcProvider        the provider's URL or ARN (it must be the manifest's url)
  IamRole             the role's name (it must be the manifest's roleName)
  Secret              VAULT/NAME: the entry already in the vault's store, bound to this stack,
                      vault and name (an envelope sealed for another binding is refused)
  Vault               ``-``: a vault owns no AWS object; it is recorded from its manifest, so
                      its secrets can be imported next (its KmsProvider must be in state)
  AccessKeyRotation   the target user's name: its one active key is adopted as the current key,
                      rotated out by the next apply (its secret was never known here) and
                      retired after the grace period (kinds/access_key_rotation.py)
DynamicIamTemplate cannot be imported: it owns no AWS object, and its lease
users' credentials were printed once and never kept (IMPORTABLE_WHY).
Kinds adopted by a plain lookup (``Adopts.read``) are in IMPORT_LOOKUP; the
others implement ``base.Imports``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler import engine, errors, kinds
from reconciler.kinds import base
from reconciler.state import model as state_model

IMPORTABLE = ("KmsProvider", "OidcProvider", "IamRole", "Secret", "Vault", "AccessKeyRotation")
# What AWS_ID is for each kind adopted by a lookup (the lookup its handler adopts by).
IMPORT_LOOKUP = {"KmsProvider": "keyId", "OidcProvider": "url", "IamRole": "roleName"}
# Settings kept in state only: the manifest's, since AWS has none to read.
LOCAL_ONLY = {"KmsProvider": ("protect", "deletionWindowDays")}
IMPORTABLE_WHY = {
    "DynamicIamTemplate": ("a template owns no AWS object of its own (apply records it, writing nothing), and "
                           "its lease users cannot be leased again: their credentials were printed once and never "
                           "kept; declare it and apply: a lease user state does not record shows as an orphan, "
                           "deleted by `apply --allow-destroy`"),
    "Stack": "the Stack document is configuration, not an AWS object",
}
OIDC_ARN = ":oidc-provider/"


def check_import_address(address: str) -> None:
    """KIND/NAME of a kind that can be imported; checked before anything is read."""
    kind, _, name = address.partition("/")
    if not kind or not name or "/" in name:
        raise errors.ConfigError(f"{address}: expected KIND/NAME, such as KmsProvider/app-data")
    if kind not in IMPORTABLE:
        why = IMPORTABLE_WHY.get(kind, "no such kind")
        raise errors.ConfigError(f"{address}: {kind} cannot be imported ({why}); importable kinds: "
                                 f"{', '.join(IMPORTABLE)}")


def import_resource(workspace: engine.Workspace, aws: base.AwsContext, address: str,
                    aws_id: str) -> tuple[state_model.ResourceState, str]:
    """Adopt an existing AWS object as the declared resource ``address``: it is
    read and recorded in state as managed, so the next plan converges it to the
    manifest (and protect / deletionWindowDays then apply to it). Returns the
    entry and a sentence on what the next plan does with it. The caller holds
    the state lock; nothing is written unless the whole import succeeds."""
    config = workspace.config
    check_import_address(address)
    resource = config.resources.get(address)
    if resource is None:
        declared = sorted(a for a, r in config.resources.items() if r.kind == address.split("/", 1)[0])
        raise errors.ConfigError(f"{address}: declare it in the manifests before importing it"
                                 f"{'; declared: ' + ', '.join(declared) if declared else ''}")
    if resource.kind == "KmsProvider" and "keyId" in resource.spec:
        raise errors.ConfigError(f"{address}: it already adopts its key with keyId; import is for a "
                                 "KmsProvider that declares the key to create (remove keyId)")
    state = workspace.backend.read()
    if address in state.resources:
        recorded = state.resources[address].ids
        named = recorded.get("arn") or recorded.get("userName") or recorded.get("version")
        raise errors.ConfigError(f"{address} is already in state{f' ({named})' if named else ''}; "
                                 f"`reconciler state rm {address}` forgets it first")
    desired = engine.desired_of(config, resolve_values=False)
    want = desired[address]
    aws.desired, aws.state = desired, state
    handler = kinds.handler_for(resource.kind)
    try:
        if isinstance(handler, base.Imports):
            entry, note = handler.import_object(aws, want, aws_id)
        else:
            entry, note = _looked_up(aws, handler, want, state, aws_id)
    except errors.ReconcilerError as exc:
        raise errors.prefixed(exc, f"{address}: ") from None
    entry = dataclasses.replace(entry, mode=state_model.Mode.MANAGED, dependencies=want.dependencies)
    workspace.backend.write(state.with_resource(entry))
    return entry, note


def _looked_up(aws: base.AwsContext, handler: base.Handler, want: Any, state: state_model.State,
               aws_id: str) -> tuple[state_model.ResourceState, str]:
    """A key, role or provider read by the lookup its kind adopts by."""
    kind, address = want.kind, want.address
    if kind == "OidcProvider" and OIDC_ARN in aws_id:
        aws_id = "https://" + aws_id.split(OIDC_ARN, 1)[1]  # the ARN is made of the URL
    taken = [a for a, e in state.resources.items() if e.kind == kind and _names(e.ids) & _names({"id": aws_id})]
    if taken:
        raise errors.ConfigError(f"{aws_id} is already in state as {taken[0]}")
    if kind == "IamRole" and aws_id != want.lookup.get("roleName"):
        raise errors.ConfigError(f"{address}: declares the role {want.lookup.get('roleName')}, not {aws_id}; "
                                 f"set roleName: {aws_id} in its manifest to import that role")
    lookup = dataclasses.replace(want, mode=state_model.Mode.MANAGED, lookup={IMPORT_LOOKUP[kind]: aws_id})
    assert isinstance(handler, base.Adopts)  # IMPORTABLE: kinds without base.Imports adopt by lookup
    entry = handler.read(aws, lookup)
    if kind == "OidcProvider" and _names({"url": aws_id}) != _names({"url": want.attributes["url"]}):
        raise errors.ConfigError(f"{address}: declares the provider for {want.attributes['url']}, not {aws_id}; "
                                 f"set url: {aws_id} in its manifest to import that provider")
    attributes = dict(entry.attributes)
    for field in LOCAL_ONLY.get(kind, ()):
        attributes[field] = want.attributes[field]
    return dataclasses.replace(entry, attributes=attributes), "run plan to see what would change"


def described(entry: state_model.ResourceState) -> str:
    """How the import names what it recorded: its ARN, else its user or entry."""
    ids = entry.ids
    if ids.get("arn"):
        return str(ids["arn"])
    if ids.get("userName"):
        return f"the rotation of user {ids['userName']}"
    return f"{entry.kind} {entry.name}"


def _names(ids: Mapping[str, Any]) -> set[str]:
    """The ways an object is named (its ids), URLs without their scheme."""
    return {v.removeprefix("https://").rstrip("/") for v in ids.values() if isinstance(v, str) and v}

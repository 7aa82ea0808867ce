"""`import KIND/NAME AWS_ID`: adopt an existing AWS object into state as a
declared resource, managed from then on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler import engine, errors, kinds
from reconciler.kinds import base
from reconciler.state import model as state_model

IMPORTABLE = ("KmsProvider", "OidcProvider", "IamRole")
# What AWS_ID is for each importable kind (the lookup its handler adopts by).
IMPORT_LOOKUP = {"KmsProvider": "keyId", "OidcProvider": "url", "IamRole": "roleName"}
# Settings kept in state only: the manifest's, since AWS has none to read.
LOCAL_ONLY = {"KmsProvider": ("protect", "deletionWindowDays")}
IMPORTABLE_WHY = {
    "Vault": "a vault owns no AWS object of its own; declare it and apply",
    "Secret": "a secret's value comes from its manifest; declare it and apply",
    "Stack": "the Stack document is configuration, not an AWS object",
}


def check_import_address(address: str) -> None:
    """KIND/NAME of a kind that can be imported; checked before anything is read."""
    kind, _, name = address.partition("/")
    if not kind or not name or "/" in name:
        raise errors.ConfigError(f"{address}: expected KIND/NAME, such as KmsProvider/app-data")
    if kind not in IMPORTABLE:
        why = IMPORTABLE_WHY.get(kind, "no such kind")
        raise errors.ConfigError(f"{address}: {kind} cannot be imported ({why}); importable kinds: "
                                 f"{', '.join(IMPORTABLE)}")


def import_resource(workspace: engine.Workspace, aws: base.AwsContext, address: str, aws_id: str) -> state_model.ResourceState:
    """Adopt an existing AWS object as the declared resource ``address``: it is
    read and recorded in state as managed, so the next plan converges it to the
    manifest (and protect / deletionWindowDays then apply to it). The caller
    holds the state lock."""
    config = workspace.config
    check_import_address(address)
    resource = config.resources.get(address)
    if resource is None:
        raise errors.ConfigError(f"{address}: declare it in the manifests before importing it")
    if resource.kind == "KmsProvider" and "keyId" in resource.spec:
        raise errors.ConfigError(f"{address}: it already adopts its key with keyId; import is for a "
                                 "KmsProvider that declares the key to create (remove keyId)")
    state = workspace.backend.read()
    if address in state.resources:
        raise errors.ConfigError(f"{address} is already in state ({state.resources[address].ids.get('arn')})")
    want = engine.desired_of(config, resolve_values=False)[address]
    lookup = dataclasses.replace(want, mode=state_model.Mode.MANAGED, lookup={IMPORT_LOOKUP[resource.kind]: aws_id})
    taken = [a for a, e in state.resources.items()
             if e.kind == resource.kind and _names(e.ids) & _names({"id": aws_id})]
    if taken:
        raise errors.ConfigError(f"{aws_id} is already in state as {taken[0]}")
    if resource.kind == "IamRole" and aws_id != want.lookup.get("roleName"):
        raise errors.ConfigError(f"{address}: declares the role {want.lookup.get('roleName')}, not {aws_id}; "
                                 f"set roleName: {aws_id} in its manifest to import that role")
    try:
        adopter = kinds.handler_for(resource.kind)
        assert isinstance(adopter, base.Adopts)  # check_import_address: importable kinds adopt
        entry = adopter.read(aws, lookup)
    except errors.ReconcilerError as exc:
        raise errors.prefixed(exc, f"{address}: ") from None
    attributes = dict(entry.attributes)
    for field in LOCAL_ONLY.get(resource.kind, ()):
        attributes[field] = want.attributes[field]
    entry = dataclasses.replace(entry, mode=state_model.Mode.MANAGED, attributes=attributes, dependencies=want.dependencies)
    workspace.backend.write(state.with_resource(entry))
    return entry


def _names(ids: Mapping[str, Any]) -> set[str]:
    """The ways an object is named (its ids), URLs without their scheme."""
    return {v.removeprefix("https://").rstrip("/") for v in ids.values() if isinstance(v, str) and v}

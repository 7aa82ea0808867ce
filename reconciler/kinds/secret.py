"""Secret: one versioned entry in a vault.

Attributes: vault, description, and ``value``, a token that stands for the
value's source without revealing it:
  encrypted  ``envelope:<sha256 of the manifest's envelope>`` (ciphertext)
  generate   ``generation:<N>`` (a new value only when N is bumped)
  fromEnv    ``env:<salted scrypt fingerprint>`` (salt per stack/vault/secret)
Refresh reads the store's newest entry and compares its digest with the one
recorded at apply: no KMS call when nothing changed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import secrets
import string
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.crypto import envelope as env
from reconciler.kinds import base
from reconciler.kinds import vault as vaults
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.state import model as state_model

KIND = "Secret"
CHANGED = "(changed outside reconciler)"
CHARSETS = {
    "alphanumeric": string.ascii_letters + string.digits,
    "ascii-printable": "".join(chr(c) for c in range(33, 127)),
    "hex": "0123456789abcdef",
    "base64url": string.ascii_letters + string.digits + "-_",
    "digits": string.digits,
}
DEFAULT_LENGTH = 32


def vault_of(resource: manifest.Resource, config: manifest.Config) -> str:
    return resource.spec.get("vault") or manifest.default_vault(config.resources) or ""


def fingerprint(value: bytes, binding: env.Binding) -> str:
    """A salted, memory-hard fingerprint (scrypt), never an unsalted hash."""
    salt = hashlib.sha256(f"reconciler/fromEnv/{binding.stack}/{binding.vault}/{binding.secret}".encode())
    derived = hashlib.scrypt(value, salt=salt.digest(), n=2 ** 14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def env_value(variable: str, address: str) -> bytes:
    value = os.environ.get(variable)
    if value is None:
        raise errors.ConfigError(f"{address}: environment variable {variable} (fromEnv) is not set")
    return value.encode()


def generate(spec: Mapping[str, Any]) -> bytes:
    alphabet = CHARSETS[spec.get("charset", "alphanumeric")]
    return "".join(secrets.choice(alphabet) for _ in range(spec.get("length", DEFAULT_LENGTH))).encode()


class SecretHandler:
    kind = KIND

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        vault = vault_of(resource, config)
        binding = env.Binding(config.stack.name, vault, resource.name)
        if "encrypted" in spec:
            token = "envelope:" + vaults.digest(spec["encrypted"].strip())
        elif "generate" in spec:
            token = f"generation:{(spec['generate'] or {}).get('generation', 1)}"
        elif resolve_values:
            token = "env:" + fingerprint(env_value(spec["fromEnv"], resource.address), binding)
        else:
            token = "env:(not read)"  # drift and secret commands need no values
        attrs = {"vault": vault, "description": spec.get("description", ""), "value": token}
        connection = {"region": config.stack.region, "auth": dict(config.stack.auth or {"defaultChain": {}})}
        return plan_model.Desired(KIND, resource.name, "managed", attrs, connection,
                                  sensitive=frozenset({"value"}),
                                  lookup={"source": {k: spec[k] for k in ("encrypted", "generate", "fromEnv")
                                                     if k in spec}})

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        try:
            info = _recorded_vault(aws, entry)
        except errors.PlanError:
            return planner.Refreshed(dict(entry.attributes), dict(entry.ids))
        latest = info.store.latest(entry.name)
        if latest is None:
            return planner.Refreshed(None)
        attrs = dict(entry.attributes)
        found = vaults.digest(latest.envelope)
        pending = entry.ids.get("pending") or {}
        if found == pending.get("digest"):  # an interrupted write that did land
            return planner.Refreshed({**pending["attributes"], "version": latest.number},
                                     vaults.recorded_ids(entry.ids, latest))
        if found != entry.ids.get("storedDigest"):
            attrs["value"] = f"{CHANGED}:{found[:12]}"
        attrs["version"] = latest.number
        return planner.Refreshed(attrs, {**entry.ids, "version": latest.number})

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        return []

    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        raise errors.PlanError(f"{desired.address}: secrets cannot be adopted")

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        raise errors.PlanError(f"{desired.address}: secrets cannot be adopted")

    def _write(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState | None,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        info = vaults.resolve(aws, desired.attributes["vault"])
        binding = info.binding(aws.stack, desired.name)
        source = desired.lookup["source"]
        if "encrypted" in source:
            sealed = env.Envelope.parse(source["encrypted"].strip())
            sealed.check_binding(binding)
            value = aws.keyring.decrypt(sealed, binding=binding, connection=info.connection)  # verifies it
            if not vaults.same_key(sealed.key_arn, info.key_arn):
                sealed = aws.keyring.encrypt(value, key_arn=info.key_arn, key_spec=info.key_spec,
                                             binding=binding, connection=info.connection)
        else:
            if "generate" in source:
                value = generate(source["generate"] or {})
            else:
                value = env_value(source["fromEnv"], desired.address)
                if "env:" + fingerprint(value, binding) != desired.attributes["value"]:
                    raise errors.PlanError(f"{desired.address}: the value of {source['fromEnv']} changed "
                                           "since the plan was made; run plan again")
            sealed = aws.keyring.encrypt(value, key_arn=info.key_arn, key_spec=info.key_spec,
                                         binding=binding, connection=info.connection)
        text = sealed.to_string()
        previous = dict(entry.ids) if entry is not None else {}
        pending = {"digest": vaults.digest(text), "attributes": dict(desired.attributes)}
        checkpoint(state_model.ResourceState(KIND, desired.name, "managed", {**previous, "pending": pending},
                                             dict(entry.attributes if entry else desired.attributes),
                                             desired.connection, desired.dependencies))
        stored = info.store.put(desired.name, text)
        return state_model.ResourceState(KIND, desired.name, "managed", vaults.recorded_ids(previous, stored),
                                         dict(desired.attributes), desired.connection, desired.dependencies)

    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._write(aws, desired, None, checkpoint)

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        paths = {c.top for c in change.changes}
        if paths <= {"description"}:
            return state_model.ResourceState(KIND, desired.name, "managed", entry.ids, dict(desired.attributes),
                                             desired.connection, desired.dependencies)
        if "vault" in paths and entry.attributes.get("vault") != desired.attributes["vault"]:
            moved = _move(aws, desired, entry, checkpoint)
            if moved is None:
                return self._write(aws, desired, entry, checkpoint)  # nothing stored to move
            if "value" not in paths:
                return moved
            checkpoint(moved)  # moved with its history; then the new value on top
            entry = moved
        return self._write(aws, desired, entry, checkpoint)

    def replace(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: base.Checkpoint) -> state_model.ResourceState:
        raise errors.PlanError(f"{desired.address}: secrets are updated in place, never replaced")

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        """Every place the entry is: a move to another vault may be halfway."""
        stored = _recorded_vault(aws, entry)
        stored.store.delete(entry.name)
        settled = vaults.stored_vault(aws, entry, settled=True)
        if settled.store.describe() != stored.store.describe():
            settled.store.delete(entry.name)


def _move(aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
          checkpoint: base.Checkpoint) -> state_model.ResourceState | None:
    """Move a secret to another vault with its value and every kept version
    (numbers and dates kept), re-sealed under the new vault's key and binding,
    never regenerated. Journaled: the copy (``pending.move``), then ``copied``
    once the new vault holds every version, then the old entry is deleted: a
    run killed anywhere resumes, reading the versions where they are complete.
    The result keeps the value as recorded (a new value is written after it).
    None when the old vault holds nothing to move."""
    settled = vaults.stored_vault(aws, entry, settled=True)
    target = vaults.resolve(aws, desired.attributes["vault"])
    move = (entry.ids.get("pending") or {}).get("move") or {}
    to = vaults.location(target.name, _vault_attributes(aws, target.name))
    if move.get("copied") and move.get("to") == to:
        versions = target.store.versions(entry.name)
    else:  # from where the versions are complete: the old vault, or an earlier copy
        copied = vaults.copy_history(aws, entry, vaults.stored_vault(aws, entry), target, checkpoint,
                                     journal={"move": {"to": to}})
        if copied is None:
            return None
        versions = copied.versions
        pending = {"digest": vaults.digest(versions[-1].envelope), "attributes": dict(entry.attributes),
                   "copies": {str(v.number): vaults.digest(v.envelope) for v in versions},
                   "move": {"to": to, "copied": True}}
        entry = dataclasses.replace(entry, ids={**entry.ids, "pending": pending})
        checkpoint(entry)
    if settled.store.describe() != target.store.describe():  # never the entry just written
        settled.store.delete(entry.name)
    attributes = {**entry.attributes, "vault": target.name, "description": desired.attributes["description"]}
    ids = {**vaults.recorded_ids(entry.ids, versions[-1], versions),
           **vaults.resealed_ids(aws, entry.ids, settled, target)}
    return state_model.ResourceState(KIND, desired.name, "managed", ids, attributes, desired.connection,
                                     desired.dependencies)


def _recorded_vault(aws: base.AwsContext, entry: state_model.ResourceState) -> vaults.VaultInfo:
    """The vault a recorded secret really lives in: as state has it, else as desired."""
    return vaults.stored_vault(aws, entry)


def _vault_attributes(aws: base.AwsContext, vault: str) -> Mapping[str, Any]:
    """The vault as recorded in state (where the entry really is), else as desired."""
    entry = aws.state.resources.get(f"Vault/{vault}")
    if entry is not None:
        return entry.attributes
    want = aws.desired.get(f"Vault/{vault}")
    if want is None:
        raise errors.PlanError(f"Vault/{vault} is neither declared nor in state")
    return want.attributes

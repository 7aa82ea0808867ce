"""Vault: where a stack's envelopes live and which KmsProvider wraps them.

Attributes: provider, store, default, keepVersions, description. A vault
owns no AWS object of its own (its entries belong to the Secrets); changing
its provider re-wraps every entry under the new key, and changing its store
copies every entry to the new store, each secret all or nothing, resumable
(an entry already under the new key is skipped)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import s3, secretsmanager, ssm
from reconciler.crypto import envelope as env
from reconciler.kinds import base
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.state import model as state_model
from reconciler.stores import base as store_base
from reconciler.stores import local

KIND = "Vault"


def digest(text: str) -> str:
    """Fingerprint of a stored envelope (ciphertext, never a plaintext)."""
    return hashlib.sha256(text.encode()).hexdigest()


def same_key(a: str, b: str) -> bool:
    """Same KMS key, a multi-Region replica counting as its primary."""
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def recorded_ids(ids: Mapping[str, Any], stored: store_base.Version) -> dict[str, Any]:
    """A Secret's ids once ``stored`` is its newest entry.

    Every write first records ``pending`` (a journal entry, SPEC 3: the digest
    about to be stored and the attributes it stands for), then stores, then
    records the result: a run killed in between leaves an entry that refresh
    recognises as ours instead of reporting it as drift (so a generated value
    is never generated twice)."""
    kept = {k: v for k, v in ids.items() if k != "pending"}
    return {**kept, "storedDigest": digest(stored.envelope), "version": stored.number,
            "keyArn": env.Envelope.parse(stored.envelope).key_arn}


@dataclasses.dataclass(frozen=True)
class VaultInfo:
    name: str
    store: Any
    key_arn: str
    key_spec: str
    connection: Mapping[str, Any]

    def binding(self, stack: str, secret: str) -> env.Binding:
        return env.Binding(stack, self.name, secret)


def open_store(ctx: base.AwsContext, spec: Mapping[str, Any], keep: int) -> Any:
    def region_of(store: Mapping[str, Any]) -> str:
        region = store.get("region") or ctx.default_connection.get("region")
        if not region:
            raise errors.ConfigError("the vault store needs a region (store region or the Stack's spec.region)")
        return str(region)

    match dict(spec):
        case {"local": {"path": path}}:
            directory = ctx.directory / path
            return local.LocalStore(directory, keep)
        case {"s3": s3_spec}:
            region = region_of(s3_spec)
            return s3.S3Store(ctx.client("s3", region=region), region, s3_spec["bucket"],
                              s3_spec.get("prefix", ""), keep)
        case {"secretsmanager": sm}:
            region = region_of(sm)
            return secretsmanager.SecretsManagerStore(ctx.client("secretsmanager", region=region), region,
                                                      sm["prefix"], keep)
        case {"ssm": ssm_spec}:
            region = region_of(ssm_spec)
            return ssm.SsmStore(ctx.client("ssm", region=region), region, ssm_spec["path"], keep)
        case other:
            raise errors.ConfigError(f"unknown vault store {sorted(other)}")


def provider_key(ctx: base.AwsContext, provider: str) -> tuple[str, str, Mapping[str, Any]]:
    """The key ARN, key spec and connection of a KmsProvider, from state."""
    entry = ctx.state.resources.get(f"KmsProvider/{provider}")
    if entry is None:
        raise errors.PlanError(f"KmsProvider/{provider} has not been applied yet; run apply first")
    return entry.ids["arn"], entry.attributes.get("keySpec", env.SYMMETRIC), entry.connection


def resolve(ctx: base.AwsContext, vault: str, *, attributes: Mapping[str, Any] | None = None) -> VaultInfo:
    """The vault as it stands: the store it uses and the key that wraps it.
    ``attributes`` overrides what state recorded (the desired ones, during apply)."""
    if attributes is None:
        want = ctx.desired.get(f"{KIND}/{vault}")
        entry = ctx.state.resources.get(f"{KIND}/{vault}")
        if want is not None:
            attributes = want.attributes
        elif entry is not None:
            attributes = entry.attributes
        else:
            raise errors.ConfigError(f"no vault named {vault} in this stack")
    key_arn, key_spec, connection = provider_key(ctx, attributes["provider"])
    store = open_store(ctx, attributes["store"], attributes.get("keepVersions", store_base.DEFAULT_KEEP))
    return VaultInfo(vault, store, key_arn, key_spec, connection)


def secrets_of(state: state_model.State, vault: str) -> list[state_model.ResourceState]:
    return [e for e in state.resources.values()
            if e.kind == "Secret" and e.attributes.get("vault") == vault]


class VaultHandler:
    kind = KIND

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        attrs = {"provider": spec["provider"], "store": spec["store"], "default": bool(spec.get("default")),
                 "keepVersions": spec.get("keepVersions", store_base.DEFAULT_KEEP),
                 "description": spec.get("description", "")}
        connection = {"region": config.stack.region, "auth": dict(config.stack.auth or {"defaultChain": {}})}
        return plan_model.Desired(KIND, resource.name, "managed", attrs, connection)

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        return planner.Refreshed(dict(entry.attributes), dict(entry.ids))

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        return []

    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        raise errors.PlanError(f"{desired.address}: vaults cannot be adopted")

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        raise errors.PlanError(f"{desired.address}: vaults cannot be adopted")

    def _entry(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        key_arn, _spec, _conn = provider_key(aws, desired.attributes["provider"])
        return state_model.ResourceState(KIND, desired.name, "managed", {"keyArn": key_arn},
                                         dict(desired.attributes), desired.connection, desired.dependencies)

    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._entry(aws, desired)

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        before, after = entry.attributes, desired.attributes
        if before.get("provider") != after["provider"] or before.get("store") != after["store"]:
            self._move(aws, desired, entry, checkpoint)
        return self._entry(aws, desired)

    def _move(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
              checkpoint: base.Checkpoint) -> None:
        """Re-wrap / copy every secret of this vault; each one all or nothing."""
        old = resolve(aws, desired.name, attributes=entry.attributes)
        new = resolve(aws, desired.name, attributes=desired.attributes)
        for secret in sorted(secrets_of(aws.state, desired.name), key=lambda e: e.name):
            binding = new.binding(aws.stack, secret.name)
            target = new.store.latest(secret.name)
            if target is not None and same_key(env.Envelope.parse(target.envelope).key_arn, new.key_arn):
                if secret.ids.get("storedDigest") != digest(target.envelope):
                    # an interrupted run stored it but died before recording it: record it now
                    checkpoint(dataclasses.replace(secret, ids=recorded_ids(secret.ids, target)))
                continue  # done already
            source = old.store.latest(secret.name)
            if source is None:
                continue  # missing entries are drift of the Secret, recreated by its own change
            sealed = env.Envelope.parse(source.envelope)
            if not same_key(sealed.key_arn, new.key_arn):
                value = aws.keyring.decrypt(sealed, binding=binding, connection=old.connection)
                sealed = aws.keyring.encrypt(value, key_arn=new.key_arn, key_spec=new.key_spec,
                                             binding=binding, connection=new.connection)
            text = sealed.to_string()
            pending = {"digest": digest(text), "attributes": dict(secret.attributes)}
            checkpoint(dataclasses.replace(secret, ids={**secret.ids, "pending": pending}))
            stored = new.store.put(secret.name, text)
            checkpoint(dataclasses.replace(secret, ids=recorded_ids(secret.ids, stored)))

    def replace(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: base.Checkpoint) -> state_model.ResourceState:
        raise errors.PlanError(f"{desired.address}: vaults are updated in place, never replaced")

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        info = resolve(aws, entry.name, attributes=entry.attributes)
        for secret in secrets_of(aws.state, entry.name):
            info.store.delete(secret.name)

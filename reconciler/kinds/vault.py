"""Vault: where a stack's envelopes live and which KmsProvider wraps them.

Attributes: provider, store, default, keepVersions, description. A vault
owns no AWS object of its own (its entries belong to the Secrets); changing
its provider re-wraps every kept version of every entry under the new key,
and changing its store copies every kept version to the new store, numbers
and dates kept, each secret all or nothing and resumable (a version already
where it belongs is skipped).

Where a recorded secret's versions are (``stored_location``): the vault as
state records it, unless the secret's ids say otherwise: ``at`` (a vault
move already moved this secret; the vault's own state follows once every
secret is moved) or a move to another vault, open in State.journal, whose
copy is complete. Each Secret's ids also record which keys its versions use
(``versionKeys``: key ARN -> [first, last] version number), so a key that
kept versions still need is never destroyed."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import errors
from reconciler.crypto import envelope as env
from reconciler.kinds import base
from reconciler.manifest import model as manifest
from reconciler.plan import actions as plan_actions
from reconciler.plan import model as plan_model
from reconciler.plan import rules as plan_rules
from reconciler.plan import planner
from reconciler.state import model as state_model
from reconciler.stores import base as store_base
from reconciler.stores import local, secretsmanager, ssm
from reconciler.stores import s3 as s3_store

KIND = "Vault"


def digest(text: str) -> str:
    """Fingerprint of a stored envelope (ciphertext, never a plaintext)."""
    return hashlib.sha256(text.encode()).hexdigest()


def same_key(a: str, b: str) -> bool:
    """Same KMS key, a multi-Region replica counting as its primary."""
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def recorded_ids(ids: Mapping[str, Any], stored: store_base.Version,
                 kept: Sequence[store_base.Version] | None = None) -> dict[str, Any]:
    """A Secret's ids once ``stored`` is its newest entry (``kept``: every
    version the store now keeps, when the caller has them).

    Every write first records a journal entry (SPEC 3: the digest about to be
    stored and the attributes it stands for), then stores, then records the
    result: a run killed in between leaves an entry the next run recognises as
    ours (``SecretHandler.recover``) instead of reporting it as drift (so a
    generated value is never generated twice). A write lands in the secret's
    declared vault, so a location left by a move (``at``) no longer applies."""
    rest = {k: v for k, v in ids.items() if k not in ("pending", "at", STORE_VERSION)}
    key_arn = env.Envelope.parse(stored.envelope).key_arn
    if kept is not None:
        keys = version_keys(kept)
    else:
        keys = {arn: list(span) for arn, span in previous_keys(ids).items()}
        first = keys.get(key_arn, [stored.number])[0]
        keys[key_arn] = [min(first, stored.number), stored.number]
    recorded = {**rest, "storedDigest": digest(stored.envelope), "version": stored.number, "keyArn": key_arn,
                "versionKeys": keys}
    if stored.store_id:  # the store's id of the object written: unchanged while it stays current
        recorded[STORE_VERSION] = stored.store_id
    return recorded


STORE_VERSION = "storeVersion"  # in a Secret's ids: the store's id of the version storedDigest is of


def unchanged_since_recorded(ctx: base.AwsContext, entry: state_model.ResourceState, info: VaultInfo) -> bool:
    """Whether a recorded secret's store still has, as its current version, the
    very object state recorded (``storeVersion``), by the store's listing of
    current version ids (once per store and run, plan time only): then its
    envelope is the recorded one and refresh reads no value. False (read it)
    without a recorded id, for a store that cannot list, for a secret recorded
    before versionKeys, with a write of it open in the journal, and once the
    stack was renamed or for a state that never recorded the stack's name (the
    envelope's binding is read from the envelope: a rename is never missed)."""
    recorded = entry.ids.get(STORE_VERSION)
    if (not recorded or "versionKeys" not in entry.ids or "version" not in entry.ids
            or ctx.former_stacks() or not ctx.state.stack or ctx.journal_data(entry.address)):
        return False
    return still_current(ctx, info.store, entry.name, str(recorded))


def still_current(ctx: base.AwsContext, store: Any, name: str, recorded: str) -> bool:
    """Whether entry ``name`` of ``store`` still has as its current version the
    object whose store id was recorded at write (``storeVersion``), by the
    store's listing of current version ids, made once per store and run and
    shared by every entry of it (a Secret, an AccessKeyRotation's outputs).
    The ids change with every write, so a value changed out of band (a new
    version, a stage moved back, the entry deleted and made again) never has
    the recorded one. False (read the entry) for a store that cannot list,
    during apply, or for an identity not allowed to list."""
    if not recorded:
        return False
    current = _current_ids(ctx, store)
    return current is not None and current.get(name) == recorded


def _current_ids(ctx: base.AwsContext, store: Any) -> Mapping[str, str] | None:
    """The store's listing of its entries' current version ids, made once per
    store and run; None for a store that cannot list, during apply, or for an
    identity allowed to read entries but not to list them (read each)."""
    lister = getattr(store, "current_ids", None)
    if lister is None:
        return None

    def load() -> Mapping[str, str] | None:
        try:
            return dict(lister())
        except errors.AwsAccessDenied:
            return None
    return ctx.listed("store:current_ids", [store.describe(), ctx.default_connection.get("auth")], load)


def listed_absent(ctx: base.AwsContext, store: Any, name: str) -> bool:
    """Whether the store's listing of current version ids (``still_current``'s,
    made once per store and run) shows no entry ``name``: then reading it would
    find nothing (the listing leaves out what a read cannot find either: a
    Secrets Manager entry pending deletion, an S3 object whose newest version
    is a delete marker). False when it cannot tell (no listing, apply time,
    listing denied): read the entry."""
    current = _current_ids(ctx, store)
    return current is not None and name not in current


def version_keys(versions: Sequence[store_base.Version]) -> dict[str, list[int]]:
    """Which key wraps which kept versions: key ARN -> [first, last] version number."""
    keys: dict[str, list[int]] = {}
    for version in versions:
        arn = env.Envelope.parse(version.envelope).key_arn
        span = keys.setdefault(arn, [version.number, version.number])
        span[0], span[1] = min(span[0], version.number), max(span[1], version.number)
    return keys


def previous_keys(ids: Mapping[str, Any]) -> Mapping[str, Sequence[int]]:
    """``versionKeys`` as recorded; for a secret recorded before them, its newest key for every version."""
    if "versionKeys" in ids:
        return ids["versionKeys"]
    if ids.get("keyArn") and ids.get("version"):
        return {ids["keyArn"]: [1, int(ids["version"])]}
    return {}


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
            return s3_store.S3Store(ctx.client("s3", region=region), region, s3_spec["bucket"],
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


def state_attributes(ctx: base.AwsContext, vault: str) -> Mapping[str, Any]:
    """The vault as recorded in state (where its entries really are), else as desired."""
    entry = ctx.state.resources.get(f"{KIND}/{vault}")
    if entry is not None:
        return entry.attributes
    want = ctx.desired.get(f"{KIND}/{vault}")
    if want is None:
        raise errors.PlanError(f"{KIND}/{vault} is neither declared nor in state")
    return want.attributes


def location(vault: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What a secret's ids record of where its versions are: vault, provider, store."""
    return {"vault": vault, "provider": attributes["provider"], "store": attributes["store"]}


def stored_location(ctx: base.AwsContext, secret: state_model.ResourceState, *,
                    settled: bool = False) -> tuple[str, Mapping[str, Any]]:
    """The vault (name and attributes) holding a recorded secret's versions.
    ``settled``: ignore a move to another vault still in flight."""
    move = ctx.journal_data(secret.address, state_model.Operation.MOVE).get("move") or {}
    at = secret.ids.get("at")
    if move.get("copied") and not settled:
        at = move["to"]
    elif at and at.get("vault") != secret.attributes.get("vault"):
        at = None
    if at:
        recorded = _attributes_or_empty(ctx, at["vault"])
        return at["vault"], {**recorded, "provider": at["provider"], "store": at["store"]}
    vault = secret.attributes["vault"]
    return vault, state_attributes(ctx, vault)


def stored_vault(ctx: base.AwsContext, secret: state_model.ResourceState, *, settled: bool = False) -> VaultInfo:
    """The vault holding a recorded secret's versions, opened (see ``stored_location``)."""
    vault, attributes = stored_location(ctx, secret, settled=settled)
    return resolve(ctx, vault, attributes=attributes)


def _attributes_or_empty(ctx: base.AwsContext, vault: str) -> Mapping[str, Any]:
    """The vault's recorded attributes, if it is still known (a location names its provider and store)."""
    try:
        return state_attributes(ctx, vault)
    except errors.PlanError:
        return {}


def resolve_stored(ctx: base.AwsContext, vault: str, secret: str) -> VaultInfo:
    """Where ``secret`` of ``vault`` is read from: where state records its data,
    not a store edited in the manifests but not applied yet (declared only: as declared)."""
    entry = ctx.state.resources.get(f"Secret/{secret}")
    if entry is not None:
        name, attributes = stored_location(ctx, entry)
        if name == vault:
            return resolve(ctx, vault, attributes=attributes)
    recorded = ctx.state.resources.get(f"{KIND}/{vault}")
    return resolve(ctx, vault, attributes=recorded.attributes if recorded is not None else None)


def _holds(have: store_base.Version, source: store_base.Version, target: VaultInfo,
           binding: env.Binding, journaled: Mapping[str, str]) -> bool:
    """Whether the target's version already is the copy of ``source``: the same
    envelope, already under the target key and binding, or the copy this move
    journaled before writing it."""
    if have.envelope == source.envelope:
        sealed = env.Envelope.parse(have.envelope)
        return same_key(sealed.key_arn, target.key_arn) and sealed.binding == binding
    return journaled.get(str(source.number)) == digest(have.envelope)


def bound_here(ctx: base.AwsContext, bound: env.Binding, vault: str, name: str) -> bool:
    """Whether an envelope's binding is this stack's (or a former name's) for this vault and secret name."""
    return (bound.vault, bound.secret) == (vault, name) and ctx.ours(bound.stack)


def _reseal(ctx: base.AwsContext, text: str, source: VaultInfo, target: VaultInfo, name: str) -> str:
    """The envelope under the target's key and binding (unchanged when it already is)."""
    sealed = env.Envelope.parse(text)
    binding = target.binding(ctx.stack, name)
    if same_key(sealed.key_arn, target.key_arn) and sealed.binding == binding:
        return text
    as_bound = source.binding(ctx.stack, name)
    if bound_here(ctx, sealed.binding, source.name, name):
        as_bound = sealed.binding  # stored before the stack was renamed: re-sealed for its new name here
    value = ctx.keyring.decrypt(sealed, binding=as_bound, connection=source.connection)
    return ctx.keyring.encrypt(value, key_arn=target.key_arn, key_spec=target.key_spec, binding=binding,
                               connection=target.connection).to_string()


SEALED_IDS = ("fingerprintKey",)  # Secret ids holding a small envelope under the vault's key


def resealed_ids(ctx: base.AwsContext, ids: Mapping[str, Any], source: VaultInfo,
                 target: VaultInfo) -> dict[str, Any]:
    """The small envelopes a Secret's ids keep under its vault's key (the fromEnv
    fingerprint key), re-wrapped under the target's key with their own binding,
    so they move off the old key with the entry's versions."""
    out = {}
    for field in SEALED_IDS:
        text = ids.get(field)
        if not text:
            continue
        sealed = env.Envelope.parse(text)
        if same_key(sealed.key_arn, target.key_arn):
            continue
        value = ctx.keyring.decrypt(sealed, binding=sealed.binding, connection=source.connection)
        out[field] = ctx.keyring.encrypt(value, key_arn=target.key_arn, key_spec=target.key_spec,
                                         binding=sealed.binding, connection=target.connection).to_string()
    return out


@dataclasses.dataclass(frozen=True)
class Copied:
    """A secret's history once copied: the versions the target keeps, and the
    journal entry of the copy (None when nothing had to be written)."""

    versions: list[store_base.Version]
    journal: state_model.JournalEntry | None

    @property
    def wrote(self) -> bool:
        return self.journal is not None


def copy_history(ctx: base.AwsContext, secret: state_model.ResourceState, source: VaultInfo, target: VaultInfo,
                 operation: state_model.Operation, extra: Mapping[str, Any] | None = None) -> Copied | None:
    """Copy every kept version of ``secret`` from ``source`` to ``target`` with
    its number and date, re-sealed under the target's key and binding (in
    place when both are one store: a re-wrap). Journaled first (State.journal:
    the digest of every envelope about to be written), written oldest first,
    so a run killed halfway resumes where it stopped and never re-creates a
    value. None when the source holds nothing."""
    name = secret.name
    versions = source.store.versions(name)
    if not versions:
        return None
    open_entry = ctx.state.journal_of(secret.address, operation)
    journaled = (open_entry.data if open_entry is not None else {}).get("copies") or {}
    there = {v.number: v for v in target.store.versions(name)}
    texts: dict[int, str] = {}
    todo = []
    for version in versions:
        have = there.get(version.number)
        if have is not None and _holds(have, version, target, target.binding(ctx.stack, name), journaled):
            texts[version.number] = have.envelope
        else:
            texts[version.number] = _reseal(ctx, version.envelope, source, target, name)
            todo.append(version)
    copied = [store_base.Version(v.number, v.created_at, texts[v.number]) for v in versions]
    if not todo:
        return Copied(copied, None)
    data = {"digest": digest(copied[-1].envelope), "attributes": dict(secret.attributes),
            "copies": {str(v.number): digest(v.envelope) for v in copied}, **(extra or {})}
    journal = (ctx.advance(open_entry, "copying", data) if open_entry is not None else
               ctx.begin(secret.address, operation, "copying", data))
    newest = versions[-1].number
    owner = {"reconciler:stack": ctx.stack, "reconciler:address": secret.address,  # as kms.ownership
             "reconciler:operation": journal.operation_id}  # (kms imports this module)
    for version in todo:
        target.store.put_version(name, store_base.Version(version.number, version.created_at,
                                                          texts[version.number]), newest=version.number == newest,
                                 tags=owner)
    return Copied(copied, journal)


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
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection)

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        return planner.Refreshed(dict(entry.attributes), dict(entry.ids))

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """A store that cannot take a write (an S3 bucket missing or unversioned)
        refuses the plan, not the apply after some changes were made. The
        bucket's versioning is in no listing: one GetBucketVersioning per
        bucket and run, shared by the vaults that use it (other prefixes)."""
        spec = desired.attributes["store"]
        if "s3" not in spec:
            return []
        store = open_store(aws, spec, desired.attributes.get("keepVersions", store_base.DEFAULT_KEEP))
        problems = aws.listed("s3:GetBucketVersioning", [spec["s3"]["bucket"], spec["s3"].get("region"),
                                                         aws.default_connection.get("auth")], store.problems)
        return [f"{desired.address}: {problem}" for problem in (problems if problems is not None
                                                                 else store.problems())]

    def _entry(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        key_arn, _spec, _conn = provider_key(aws, desired.attributes["provider"])
        return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, {"keyArn": key_arn},
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
        """Re-wrap / copy every kept version of every secret of this vault; each
        secret all or nothing, recorded where it now is (``at``) as it is done."""
        new = resolve(aws, desired.name, attributes=desired.attributes)
        at = location(desired.name, desired.attributes)
        for secret in sorted(secrets_of(aws.state, desired.name), key=lambda e: e.name):
            vault, attributes = stored_location(aws, secret)
            if vault != desired.name:
                continue  # moving to another vault: that Secret's own change finishes it
            old = resolve(aws, vault, attributes=attributes)
            copied = copy_history(aws, secret, old, new, state_model.Operation.COPY)
            if copied is None:
                continue  # missing entries are drift of the Secret, recreated by its own change
            ids = {**recorded_ids(secret.ids, copied.versions[-1], copied.versions),
                   **resealed_ids(aws, secret.ids, old, new), "at": at}
            moved = dataclasses.replace(secret, ids=ids)
            journal = copied.journal or aws.state.journal_of(secret.address, state_model.Operation.COPY)
            if journal is not None:
                aws.settle(journal, moved)  # recorded where it now is, and the copy closed, at once
            elif ids != dict(secret.ids):
                checkpoint(moved)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        for secret in secrets_of(aws.state, entry.name):
            vault, attributes = stored_location(aws, secret, settled=True)
            if vault == entry.name:
                resolve(aws, vault, attributes=attributes).store.delete(secret.name)

    # -- reconciler import ----------------------------------------------------------------
    def import_object(self, aws: base.AwsContext, desired: plan_model.Desired,
                      aws_id: str) -> tuple[state_model.ResourceState, str]:
        """A vault owns no AWS object: importing one records it from its manifest
        (as its first apply would, without a write), so its Secrets can be
        imported next. AWS_ID is ``-`` or the vault's name; its KmsProvider must
        be in state (imported or applied), and an S3 store must take writes."""
        if aws_id not in ("-", desired.name):
            raise errors.ConfigError(f"{desired.address}: a vault has no AWS id (it owns no AWS object of its own); "
                                     f"pass - (or {desired.name}) as AWS_ID to record it from its manifest")
        provider = f"KmsProvider/{desired.attributes['provider']}"
        if provider not in aws.state.resources:
            raise errors.ConfigError(f"{desired.address}: its key, {provider}, is not in state: import it "
                                     f"(`reconciler import {provider} KEY_ID`) or apply it first")
        problems = self.check(aws, desired, None)
        if problems:
            raise errors.ConfigError(problems[0])
        entry = self._entry(aws, desired)
        store = open_store(aws, desired.attributes["store"], desired.attributes["keepVersions"]).describe()
        return entry, (f"recorded from its manifest ({store}, wrapped by {provider}): nothing in AWS changed; "
                       "import its Secrets next (`reconciler import Secret/NAME "
                       f"{desired.name}/NAME`)")


# -- plan rules (pure: the planner calls them through plan.rules.Rules) ---------------------
def kept_by_key(entry: state_model.ResourceState, prior: state_model.State) -> dict[str, int]:
    """How many kept versions of a recorded secret each key wraps (``versionKeys``,
    clipped to the versions its vault keeps), by key id (a replica counts as its primary)."""
    ids = entry.ids
    newest = int(ids.get("version") or 0)
    vault = prior.resources.get(f"{KIND}/{entry.attributes.get('vault')}")
    keep = int((vault.attributes if vault else {}).get("keepVersions", store_base.DEFAULT_KEEP))
    spans = ids.get("versionKeys") or ({ids["keyArn"]: [1, newest]} if ids.get("keyArn") and newest else {})
    oldest = newest - keep + 1
    counts: dict[str, int] = {}
    for arn, (first, last) in spans.items():
        count = min(last, newest) - max(first, oldest) + 1
        if count > 0:
            key = str(arn).rsplit("/", 1)[-1]
            counts[key] = counts.get(key, 0) + count
    return counts


def moving_away(changes: Mapping[str, plan_model.ResourceChange], prior: state_model.State) -> set[str]:
    """Secrets whose versions this plan re-wraps, moves or deletes before any key is deleted."""
    moving: set[str] = set()
    for change in changes.values():
        paths = {c.top for c in change.changes}
        if change.kind == KIND and change.action is plan_actions.Action.UPDATE and paths & {"provider", "store"}:
            moving.update(e.address for e in secrets_of(prior, change.name))
        if change.kind == "Secret" and (change.action is plan_actions.Action.DELETE or
                                        (change.action is plan_actions.Action.UPDATE and "vault" in paths)):
            moving.add(change.address)
    return moving


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


LIST_NOTE = ("secretsmanager:ListSecrets and ssm:DescribeParameters take no resource ARN (Resource \"*\"): "
             "plan lists the store's current version ids in pages, so an unchanged entry's value is not read")


def _store_permissions(store: Mapping[str, Any], region: str) -> tuple[plan_rules.Permission, ...]:
    """The calls a store's adapter makes (a local store: nothing from AWS), on
    the store's own prefix or path only."""
    match dict(store):
        case {"s3": spec}:
            bucket, prefix = spec["bucket"], spec.get("prefix", "")
            return (plan_rules.Permission(("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                                           "s3:DeleteObject", "s3:DeleteObjectVersion"),
                                          (f"arn:aws:s3:::{bucket}/{prefix}*",)),
                    plan_rules.Permission(("s3:ListBucketVersions",), (f"arn:aws:s3:::{bucket}",),
                                          (("StringLike", "s3:prefix", (f"{prefix}*",)),)),
                    plan_rules.Permission(("s3:GetBucketVersioning",), (f"arn:aws:s3:::{bucket}",)))
        case {"secretsmanager": spec}:
            where = spec.get("region") or region
            return (plan_rules.Permission(("secretsmanager:ListSecrets",), ("*",), (), LIST_NOTE),
                    plan_rules.Permission(("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                                           "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                                           "secretsmanager:ListSecretVersionIds", "secretsmanager:DeleteSecret",
                                           "secretsmanager:RestoreSecret", "secretsmanager:TagResource"),
                                          (f"arn:aws:secretsmanager:{where}:*:secret:{spec['prefix']}*",)),)
        case {"ssm": spec}:
            where = spec.get("region") or region
            path = "/" + str(spec["path"]).strip("/")
            return (plan_rules.Permission(("ssm:DescribeParameters",), ("*",), (), LIST_NOTE),
                    plan_rules.Permission(("ssm:PutParameter", "ssm:GetParameterHistory", "ssm:DeleteParameter",
                                           "ssm:LabelParameterVersion", "ssm:UnlabelParameterVersion",
                                           "ssm:AddTagsToResource"),
                                          (f"arn:aws:ssm:{where}:*:parameter{path}/*",)),)
        case _:
            return ()


def key_arn_of(provider: str, prior: state_model.State, region: str) -> str:
    """The ARN of a KmsProvider's key as state records it; any key of the region before it exists."""
    entry = prior.resources.get(f"KmsProvider/{provider}")
    if entry is not None and entry.ids.get("arn"):
        return str(entry.ids["arn"])
    return f"arn:aws:kms:{region}:*:key/*"


def _key_use(provider: str, vault: str, stack: Mapping[str, plan_model.Desired], prior: state_model.State,
             default_region: str) -> tuple[plan_rules.Permission, ...]:
    """Wrapping and unwrapping the vault's entries with a provider's key: data
    keys bound to this vault (kms:EncryptionContext, symmetric keys), the public
    key (RSA keys: no context exists to bind); a key not yet created is named
    by its ownership tag."""
    address = f"KmsProvider/{provider}"
    want = stack.get(address)
    region = str((want.connection.get("region") if want is not None else None) or default_region)
    key = key_arn_of(provider, prior, region)
    scope: tuple[plan_rules.Condition, ...] = ()
    if key.endswith("key/*") and want is not None and want.mode == "managed":
        scope = (("StringEquals", "aws:ResourceTag/reconciler:address", (address,)),)
    spec = (want.attributes.get("keySpec") if want is not None else None) or (
        (prior.resources[address].attributes.get("keySpec") if address in prior.resources else None))
    bound = (("StringEquals", "kms:EncryptionContext:reconciler:vault", (vault,)),)
    symmetric = (plan_rules.Permission(("kms:Decrypt", "kms:GenerateDataKey"), (key,), (*scope, *bound)),)
    rsa = (plan_rules.Permission(("kms:Decrypt", "kms:GetPublicKey"), (key,), scope),)
    described = (plan_rules.Permission(("kms:DescribeKey",), (key,), scope),)
    if spec == "SYMMETRIC_DEFAULT":
        return symmetric + described
    if spec:
        return rsa + described
    return symmetric + rsa + described  # an adopted key: its spec is learned at refresh


class VaultRules(plan_rules.Rules):
    """A vault moving to another key or store, or deleted, says how many secrets that touches."""

    noun = "vault"

    def review(self, change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        count = len(secrets_of(context.prior, change.name))
        paths = {c.top for c in change.changes}
        notes: list[str] = []
        match change.action:
            case plan_actions.Action.UPDATE:
                if "provider" in paths:
                    notes.append(f"re-wrap {_count(count, 'secret')} under "
                                 f"KmsProvider/{(change.after or {}).get('provider')}, every kept version "
                                 "(numbers and dates kept); the old key is left untouched")
                if "store" in paths:
                    notes.append(f"copy {_count(count, 'secret')} to the new store, every kept "
                                 "version (numbers and dates kept); the old store is left untouched")
            case plan_actions.Action.DELETE:
                if count:
                    notes.append(f"the vault still holds {_count(count, 'secret')}: "
                                 "their stored versions are deleted")
            case (plan_actions.Action.NOOP | plan_actions.Action.CREATE | plan_actions.Action.READ
                  | plan_actions.Action.CREATE_THEN_DELETE | plan_actions.Action.DELETE_THEN_CREATE
                  | plan_actions.Action.ROTATE | plan_actions.Action.REVOKE):
                pass
        return plan_rules.Review(notes=tuple(notes))

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """The key and store in the manifests; while a provider or store change is
        to apply, also the recorded ones (a re-wrap decrypts with the old key, a
        move reads the old store)."""
        region = str(desired.connection.get("region") or "*")
        attrs = desired.attributes
        found = [*_key_use(str(attrs["provider"]), desired.name, stack, prior, region),
                 *_store_permissions(attrs["store"], region)]
        entry = prior.resources.get(desired.address)
        if entry is not None and entry.attributes.get("provider") not in (None, attrs["provider"]):
            found.extend(_key_use(str(entry.attributes["provider"]), desired.name, stack, prior, region))
        if entry is not None and entry.attributes.get("store") not in (None, attrs["store"]):
            found.extend(_store_permissions(entry.attributes["store"], region))
        return tuple(found)

RULES = VaultRules()

"""Secret: one versioned entry in a vault.

Attributes: vault, description, and ``value``, a token that stands for the
value's source without revealing it:
  encrypted  ``envelope:<sha256 of the manifest's envelope>`` (ciphertext)
  generate   ``generation:<N>`` (a new value only when N is bumped)
  fromEnv    ``env:h1:<HMAC-SHA256>`` under the vault's fingerprint key, plus
             ``fingerprint: hmac-sha256``. The fingerprint key is 32 random
             bytes kept in state only as an envelope under the vault's KMS key
             (ids ``fingerprintKey``), so neither state nor a plan lets anyone
             test a guess without that key. desired() cannot call KMS: the
             token is made by ``resolve`` at plan time (one unwrap per vault).
             State written by older versions holds ``env:<scrypt>``; a value
             that still matches it is re-fingerprinted without being rewritten.
Refresh reads the store's newest entry and compares its digest with the one
recorded at apply: no KMS call when nothing changed. An entry whose envelope
names a KMS key that no longer exists is lost: refresh says so (ids
``lostKey``), and the plan writes it again where the manifest can re-supply
it (fromEnv, a decryptable envelope, generate with ``--regenerate-lost``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import secrets
import string
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.crypto import envelope as env
from reconciler.kinds import base, kms, recovery
from reconciler.kinds import vault as vaults
from reconciler.manifest import model as manifest
from reconciler.plan import actions as plan_actions
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.plan import rules as plan_rules
from reconciler.state import model as state_model
from reconciler.stores import base as store_base

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
    return resource.spec.get("vault") or config.default_vault or ""


FINGERPRINT = "hmac-sha256"  # the ``fingerprint`` attribute: how a fromEnv token is made
HMAC_PREFIX = "env:h1:"
UNRESOLVED = "env:(unresolved)"  # desired() cannot call KMS; resolve() or the write fills it in
NOT_READ = "env:(not read)"  # drift and secret commands need no values
LOST = "(lost: its KMS key no longer exists)"
REBIND = "(bound to a former stack name: "  # + the name + ")": the value is kept, re-sealed for this name
FOUND = "(found in the vault: not compared)"  # a value found when state lacked it: the write makes it sure
FINGERPRINT_KEY_NAME = "reconciler:fingerprint-key"  # no Secret can be named so (names are [a-z0-9-])
UNUSABLE_KEY = frozenset({"NotFoundException", "DisabledException", "KMSInvalidStateException"})


def fingerprint(value: bytes, key: bytes, stack: str, secret: str) -> str:
    """HMAC-SHA256 under the vault's fingerprint key: only someone who can
    unwrap that key with KMS can test a guess against it."""
    message = b"\0".join([b"reconciler/fromEnv/h1", stack.encode(), secret.encode(), value])
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return HMAC_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def legacy_fingerprint(value: bytes, binding: env.Binding) -> str:
    """The scrypt token older versions recorded (salt from public names): only
    compared, once per secret, to migrate it; never written any more."""
    salt = hashlib.sha256(f"reconciler/fromEnv/{binding.stack}/{binding.vault}/{binding.secret}".encode())
    derived = hashlib.scrypt(value, salt=salt.digest(), n=2 ** 14, r=8, p=1, dklen=32)
    return "env:" + base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def env_value(variable: str, where: str) -> bytes:
    """The value of a fromEnv variable; unset and empty are both refused (an
    empty secret is never what was meant), ``where`` naming the field."""
    value = os.environ.get(variable)
    if value is None:
        raise errors.ConfigError(f"{where}: environment variable {variable} (fromEnv) is not set")
    if value == "":
        raise errors.ConfigError(f"{where}: environment variable {variable} (fromEnv) is empty; an empty "
                                 "value is treated as unset: set it to the secret's value")
    return value.encode()


def _where(resource: manifest.Resource) -> str:
    return f"{resource.position('fromEnv')}: {resource.address}"


def generate(spec: Mapping[str, Any]) -> bytes:
    alphabet = CHARSETS[spec.get("charset", "alphanumeric")]
    return "".join(secrets.choice(alphabet) for _ in range(spec.get("length", DEFAULT_LENGTH))).encode()


class SecretHandler:
    kind = KIND
    sensitive = frozenset({"value"})  # hidden in every plan, drift report and saved plan, deletes too

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        vault = vault_of(resource, config)
        attrs = {"vault": vault, "description": spec.get("description", "")}
        if "encrypted" in spec:
            attrs["value"] = "envelope:" + vaults.digest(spec["encrypted"].strip())
        elif "generate" in spec:
            attrs["value"] = f"generation:{(spec['generate'] or {}).get('generation', 1)}"
        else:
            if resolve_values:
                env_value(spec["fromEnv"], _where(resource))  # fail here, at the field, before any AWS call
            attrs.update(value=UNRESOLVED if resolve_values else NOT_READ, fingerprint=FINGERPRINT)
        connection = {"region": config.stack.region, "auth": dict(config.stack.auth or {"defaultChain": {}})}
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection,
                                  sensitive=self.sensitive,
                                  lookup={"source": {k: spec[k] for k in ("encrypted", "generate", "fromEnv")
                                                     if k in spec}})

    def resolve(self, aws: base.AwsContext, desired: plan_model.Desired,
                entry: state_model.ResourceState | None, live: planner.Refreshed | None,
                ) -> tuple[plan_model.Desired, planner.Refreshed | None]:
        """The fromEnv token under the vault's fingerprint key. A token recorded
        by an older version that still matches becomes the new one on both
        sides: no value change, only ``fingerprint`` is recorded (no rewrite)."""
        source = desired.lookup.get("source", {})
        if "fromEnv" not in source:
            return desired, live
        value = env_value(source["fromEnv"], desired.address)
        found = _fingerprint_key(aws, desired.attributes["vault"], entry)
        if found is None:
            return desired, live  # no usable key yet: the write makes the token (and so writes the value)
        key, sealed = found
        token = fingerprint(value, key, aws.stack, desired.name)
        lookup = {**desired.lookup, "fingerprintKey": sealed}
        if _same_as_legacy(aws, entry, live, value):
            assert live is not None and live.attributes is not None
            return (dataclasses.replace(desired, attributes={**desired.attributes, "value": token},
                                        lookup={**lookup, "unchanged": True}),
                    planner.Refreshed({**live.attributes, "value": token}, live.ids))
        return dataclasses.replace(desired, attributes={**desired.attributes, "value": token}, lookup=lookup), live

    def preflight(self, aws: base.AwsContext, desired: plan_model.Desired,
                  resource: manifest.Resource | None) -> list[str]:
        """Why a plan must not start writing: its fromEnv value is unset, empty,
        or no longer the one it was planned with."""
        source = desired.lookup.get("source", {})
        if "fromEnv" not in source:
            return []
        where = _where(resource) if resource is not None else desired.address
        try:
            value = env_value(source["fromEnv"], where)
        except errors.ConfigError as exc:
            return [exc.message]
        planned = desired.attributes.get("value")
        sealed = desired.lookup.get("fingerprintKey")
        if planned in (UNRESOLVED, NOT_READ) or not sealed:
            return []  # planned before the vault had a key: nothing to compare with
        key = _unwrap(aws, sealed)
        if key is None:
            return [f"{where}: the key that fingerprinted {source['fromEnv']} is no longer usable; "
                    "run plan again"]
        if not hmac.compare_digest(fingerprint(value, key, aws.stack, desired.name), str(planned)):
            return [f"{where}: the value of {source['fromEnv']} (fromEnv) changed since the plan was made; "
                    "run plan again"]
        return []

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        try:
            info = vaults.stored_vault(aws, entry)
        except errors.PlanError:
            return planner.Refreshed(dict(entry.attributes), dict(entry.ids))
        if vaults.unchanged_since_recorded(aws, entry, info):  # the store's listing: no value read
            attrs, ids = {**entry.attributes, "version": entry.ids["version"]}, dict(entry.ids)
            lost = _lost_key(aws, entry, info)
            if lost is not None:
                ids["lostKey"] = lost
                if _can_resupply(aws, desired, lost, info):
                    attrs["value"] = LOST
            return planner.Refreshed(attrs, ids)
        latest = info.store.latest(entry.name)
        if latest is None:
            return planner.Refreshed(None)
        attrs = dict(entry.attributes)
        found = vaults.digest(latest.envelope)
        pending = aws.journal_data(entry.address)
        legacy = "versionKeys" not in entry.ids
        if found == pending.get("digest"):  # an interrupted copy or move that did land
            history = info.store.versions(entry.name) if legacy else None
            return planner.Refreshed({**pending["attributes"], "version": latest.number},
                                     vaults.recorded_ids({**entry.ids, **pending.get("ids", {})}, latest, history))
        ids = {**entry.ids, "version": latest.number}
        learned: dict[str, Any] = {}
        if legacy and latest.number > 1:
            # recorded before reconciler tracked which key wraps each kept version (issue 6 item 2):
            # older versions may still be under a previous key, so read them instead of guessing
            learned["versionKeys"] = vaults.version_keys(info.store.versions(entry.name))
        changed = found != entry.ids.get("storedDigest")
        bound = "" if changed else _former_binding(aws, latest.envelope)  # a value from outside may be no envelope
        foreign = _foreign_binding(aws, latest.envelope, entry)
        if foreign:  # bound to a stack that was never this one (a rename formerNames does not name)
            ids["boundTo"] = foreign
        if changed:
            attrs["value"] = f"{CHANGED}:{found[:12]}"
        elif bound:  # the stack was renamed: the same value, to be re-sealed for the new name
            attrs["value"] = f"{REBIND}{bound})"
        else:
            if latest.store_id and entry.ids.get(vaults.STORE_VERSION) != latest.store_id:
                learned[vaults.STORE_VERSION] = latest.store_id  # the next refresh reads no value
            lost = _lost_key(aws, entry, info)
            if lost is not None:
                ids["lostKey"] = lost
                if _can_resupply(aws, desired, lost, info):
                    attrs["value"] = LOST  # differs from any token: the plan writes the value again
        attrs["version"] = latest.number
        return planner.Refreshed(attrs, {**ids, **learned}, learned=learned)

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """A secret state lacks whose vault store already holds an entry that is
        not this stack's (another stack's, or not an envelope) refuses the plan:
        writing would bury that value under a new one."""
        stored = None if entry is not None else self._stored(aws, desired)
        if stored is None:
            return []
        _store, latest, vault = stored
        try:
            bound = env.Envelope.parse(latest.envelope).binding
        except env.EnvelopeError:
            return [f"{desired.address}: Vault/{vault}'s store already holds an entry named {desired.name} that is "
                    "not a reconciler envelope; remove it or choose another name (nothing is written over it)"]
        if vaults.bound_here(aws, bound, vault, desired.name):
            return []  # ours: the plan reads it in (find_owned)
        hint = (f"if this stack was renamed from {bound.stack}, list {bound.stack} under the Stack's spec.formerNames"
                if (bound.vault, bound.secret) == (vault, desired.name) else "choose another name")
        return [f"{desired.address}: Vault/{vault}'s store already holds an entry named {desired.name}, bound to "
                f"{bound.describe()}; {hint} (nothing is written over it)"]

    # -- found when state lost it (SPEC 3) ------------------------------------------
    def _stored(self, aws: base.AwsContext, desired: plan_model.Desired) -> tuple[Any, Any, str] | None:
        """The store, the newest version and the vault of a secret state does not
        record (None when its store holds nothing under the name, or has no store yet)."""
        vault = str(desired.attributes["vault"])
        try:
            attributes = vaults.state_attributes(aws, vault)
            store = vaults.open_store(aws, attributes["store"],
                                      attributes.get("keepVersions", store_base.DEFAULT_KEEP))
            if vaults.listed_absent(aws, store, desired.name):
                return None  # the store's listing (made for the refresh anyway) has no such entry
            # the plan's refresh (find_owned) and check both ask: one read per run
            read = aws.listed("store:latest", [store.describe(), desired.name, aws.default_connection.get("auth")],
                              lambda: (store.latest(desired.name),))
            latest = read[0] if read is not None else store.latest(desired.name)  # None: apply time
        except (errors.PlanError, errors.ConfigError, errors.AwsNotFound):
            return None  # no store yet (a bucket the plan makes): nothing can be there
        return (store, latest, vault) if latest is not None else None

    def _found(self, aws: base.AwsContext, desired: plan_model.Desired) -> tuple[Any, Any, str] | None:
        """``_stored``, when that version's envelope is bound to this stack (or a
        former name of it), vault and name."""
        stored = self._stored(aws, desired)
        if stored is None:
            return None
        try:
            bound = env.Envelope.parse(stored[1].envelope).binding
        except env.EnvelopeError:
            return None
        return stored if vaults.bound_here(aws, bound, stored[2], desired.name) else None  # else another's: not ours

    def find_owned(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed | None:
        """An entry in the secret's vault store bound to this stack, vault and
        name: a generated value is adopted as it is (never generated again);
        another source's value is written again where it may differ."""
        found = self._found(aws, desired)
        if found is None:
            return None
        _store, latest, vault = found
        return planner.Refreshed(
            self._found_attributes(desired, latest), vaults.recorded_ids({}, latest),
            found_by=f"found version {latest.number} in Vault/{vault}'s store, bound to this stack, vault and "
                     "name: read into state, not written again")

    def _found_attributes(self, desired: plan_model.Desired, latest: Any) -> dict[str, Any]:
        source = desired.lookup.get("source", {})
        attributes = {**desired.attributes, "version": latest.number}
        if "generate" in source:
            return attributes  # the value reconciler generated: kept, whatever generation it was
        if "encrypted" in source and vaults.digest(latest.envelope) == vaults.digest(source["encrypted"].strip()):
            return attributes  # the manifest's very envelope
        return {**attributes, "value": FOUND}  # not compared (that needs a decrypt): written again

    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        raise errors.PlanError(f"{desired.address}: a Secret is never adopted by id; it is found in its vault "
                               "when state lacks it")

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        """The entry ``find_owned`` found, recorded with every kept version's key."""
        found = self._found(aws, desired)
        if found is None:
            raise errors.PlanError(f"{desired.address}: the entry found in its vault at plan time is no longer "
                                   "there; run plan again")
        store, latest, _vault = found
        return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED,
                                         vaults.recorded_ids({}, latest, store.versions(desired.name)),
                                         self._found_attributes(desired, latest), desired.connection,
                                         desired.dependencies)

    def _write(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState | None,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        info = vaults.resolve(aws, desired.attributes["vault"])
        binding = info.binding(aws.stack, desired.name)
        source = desired.lookup["source"]
        attributes = dict(desired.attributes)
        fingerprint_ids: dict[str, Any] = {}
        if "encrypted" in source:
            sealed = env.Envelope.parse(source["encrypted"].strip())
            as_bound = sealed.binding if _former_binding(aws, sealed) else binding  # a renamed stack's
            sealed.check_binding(as_bound)
            value = aws.keyring.decrypt(sealed, binding=as_bound, connection=info.connection)  # verifies it
            if not vaults.same_key(sealed.key_arn, info.key_arn) or as_bound != binding:
                sealed = aws.keyring.encrypt(value, key_arn=info.key_arn, key_spec=info.key_spec,
                                             binding=binding, connection=info.connection)
        else:
            if "generate" in source:
                restored = _restorable(info, desired, entry)
                if restored is not None:  # a value written out of band: ours comes back, never a new one
                    return self._store(aws, desired, entry, restored, attributes, fingerprint_ids, info)
                value = generate(source["generate"] or {})
            else:
                value = env_value(source["fromEnv"], desired.address)
                key, sealed_key = _write_time_key(aws, desired, entry)
                attributes["value"] = _checked_token(aws, desired, value, key, source["fromEnv"])
                fingerprint_ids = {"fingerprintKey": sealed_key}
                if desired.lookup.get("unchanged") and entry is not None \
                        and entry.attributes.get("vault") == desired.attributes["vault"]:
                    # the stored value is the planned one: record its new fingerprint, write nothing
                    return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED,
                                                     {**entry.ids, **fingerprint_ids}, attributes,
                                                     desired.connection, desired.dependencies)
            sealed = aws.keyring.encrypt(value, key_arn=info.key_arn, key_spec=info.key_spec,
                                         binding=binding, connection=info.connection)
        return self._store(aws, desired, entry, sealed.to_string(), attributes, fingerprint_ids, info)

    def _store(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState | None,
               text: str, attributes: Mapping[str, Any], fingerprint_ids: Mapping[str, Any],
               info: vaults.VaultInfo) -> state_model.ResourceState:
        """The journaled write of one envelope as the entry's new version."""
        journal = aws.begin(desired.address, state_model.Operation.WRITE, "storing", {
            "digest": vaults.digest(text), "attributes": attributes, "ids": fingerprint_ids,
            "connection": dict(desired.connection), "dependencies": list(desired.dependencies)})
        stored = info.store.put(desired.name, text,
                                tags=kms.ownership(aws.stack, desired.address, journal.operation_id))
        # a secret recorded before versionKeys: learn which key wraps each kept version from the store
        history = None if entry is None or "versionKeys" in entry.ids else info.store.versions(desired.name)
        result = _written(desired.name, entry, journal.data, stored, history)
        aws.settle(journal, result)
        return result

    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._write(aws, desired, None, checkpoint)

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """A write that landed is recorded as written (a generated value is never
        generated twice); one that did not is rolled back. A copy or move
        continues with the change that started it (it skips what is there)."""
        what = recovery.what(journal)
        entry = aws.state.resources.get(journal.address)
        match journal.operation:
            case state_model.Operation.WRITE:
                pass
            case state_model.Operation.COPY:
                vault = f"Vault/{journal.data.get('attributes', {}).get('vault')}"
                return recovery.Recovery.continues(journal, f"resuming {what} with {vault}'s change",
                                                   at=vault)
            case state_model.Operation.MOVE:
                return recovery.Recovery.continues(journal, f"resuming {what} with its change")
            case state_model.Operation.CREATE | state_model.Operation.ROTATE:
                return recovery.Recovery.continues(journal, f"{what} left open: a Secret journals no "
                                                   f"{journal.operation.value}")
        data = journal.data
        vault = str(data["attributes"]["vault"])
        latest = vaults.resolve(aws, vault).store.latest(state_model.Address(journal.address).name)
        if latest is None or vaults.digest(latest.envelope) != data.get("digest"):
            placeholder = entry is not None and not entry.ids.get("storedDigest")  # older states made one
            return recovery.Recovery.rolled_back(journal, f"rolled back {what}: nothing was stored",
                                                 forget=placeholder)
        if "connection" not in data:  # an older state's entry: its record says how it is reached
            if entry is None:
                return recovery.Recovery.rolled_back(journal, f"rolled back {what}: no record to complete")
            data = {**data, "connection": dict(entry.connection), "dependencies": list(entry.dependencies)}
        name = state_model.Address(journal.address).name
        return recovery.Recovery.resumed(journal, _written(name, entry, data, latest),
                                         f"resuming {what}: the value was stored (version {latest.number})")

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        paths = {c.top for c in change.changes}
        if paths <= {"description"}:
            return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, entry.ids, dict(desired.attributes),
                                             desired.connection, desired.dependencies)
        if "generate" in desired.lookup.get("source", {}) and paths <= {"value", "description"} \
                and entry.attributes.get("value") == desired.attributes["value"] and _stored_former(aws, entry):
            return self._rebind(aws, desired, entry)  # the same generation under a former name: never a new value
        if "vault" in paths and entry.attributes.get("vault") != desired.attributes["vault"]:
            moved = _move(aws, desired, entry, checkpoint)
            if moved is None:
                return self._write(aws, desired, entry, checkpoint)  # nothing stored to move
            if "value" not in paths:
                return moved
            entry = moved  # moved with its history; then the new value on top
        return self._write(aws, desired, entry, checkpoint)

    def _rebind(self, aws: base.AwsContext, desired: plan_model.Desired,
                entry: state_model.ResourceState) -> state_model.ResourceState:
        """A renamed stack's generated value: the newest version decrypted as it
        is bound (the former name) and stored again, sealed for this name (a new
        version; the value is never generated again). Older versions keep their
        binding and still decrypt: state keeps the former names."""
        info = vaults.stored_vault(aws, entry)
        latest = info.store.latest(entry.name)
        if latest is None:
            raise errors.PlanError(f"{desired.address}: its entry is gone from the vault's store; run plan again")
        sealed = env.Envelope.parse(latest.envelope)
        if not _former_binding(aws, sealed):
            raise errors.PlanError(f"{desired.address}: its newest version is no longer bound to a former name "
                                   "of this stack; run plan again")
        value = aws.keyring.decrypt(sealed, binding=sealed.binding, connection=info.connection)
        target = vaults.resolve(aws, desired.attributes["vault"])
        resealed = aws.keyring.encrypt(value, key_arn=target.key_arn, key_spec=target.key_spec,
                                       binding=target.binding(aws.stack, desired.name), connection=target.connection)
        return self._store(aws, desired, entry, resealed.to_string(), dict(desired.attributes), {}, target)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        """Every place the entry is: a move to another vault may be halfway."""
        stored = vaults.stored_vault(aws, entry)
        stored.store.delete(entry.name)
        settled = vaults.stored_vault(aws, entry, settled=True)
        if settled.store.describe() != stored.store.describe():
            settled.store.delete(entry.name)

    # -- reconciler import, drift --unmanaged (the module's last functions) -----------------
    def import_object(self, aws: base.AwsContext, desired: plan_model.Desired,
                      aws_id: str) -> tuple[state_model.ResourceState, str]:
        return import_entry(self, aws, desired, aws_id)

    def unmanaged(self, aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        return unmanaged_entries(aws, desired, prior)


def _move(aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
          checkpoint: base.Checkpoint) -> state_model.ResourceState | None:
    """Move a secret to another vault with its value and every kept version
    (numbers and dates kept), re-sealed under the new vault's key and binding,
    never regenerated. Journaled (State.journal, ``move``): the copy, then
    step ``copied`` once the new vault holds every version, then the old entry
    is deleted and the moved record written as the entry closes: a run killed
    anywhere resumes, reading the versions where they are complete. The
    result keeps the value as recorded (a new value is written after it).
    None when the old vault holds nothing to move."""
    settled = vaults.stored_vault(aws, entry, settled=True)
    target = vaults.resolve(aws, desired.attributes["vault"])
    journal = aws.state.journal_of(entry.address, state_model.Operation.MOVE)
    move = (journal.data if journal is not None else {}).get("move") or {}
    to = vaults.location(target.name, vaults.state_attributes(aws, target.name))
    if journal is not None and move.get("copied") and move.get("to") == to:
        versions = target.store.versions(entry.name)
    else:  # from where the versions are complete: the old vault, or an earlier copy
        copied = vaults.copy_history(aws, entry, vaults.stored_vault(aws, entry), target,
                                     state_model.Operation.MOVE, {"move": {"to": to}})
        if copied is None:
            return None
        versions = copied.versions
        data = {"digest": vaults.digest(versions[-1].envelope), "attributes": dict(entry.attributes),
                "copies": {str(v.number): vaults.digest(v.envelope) for v in versions},
                "move": {"to": to, "copied": True}}
        journal = copied.journal or journal  # this run's copy, else an earlier run's that copied it all
        journal = (aws.advance(journal, "copied", data) if journal is not None else
                   aws.begin(entry.address, state_model.Operation.MOVE, "copied", data))
    if settled.store.describe() != target.store.describe():  # never the entry just written
        settled.store.delete(entry.name)
    attributes = {**entry.attributes, "vault": target.name, "description": desired.attributes["description"]}
    ids = {**vaults.recorded_ids(entry.ids, versions[-1], versions),
           **vaults.resealed_ids(aws, entry.ids, settled, target)}
    moved = state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, ids, attributes, desired.connection,
                                      desired.dependencies)
    aws.settle(journal, moved)
    return moved


def _restorable(info: vaults.VaultInfo, desired: plan_model.Desired,
                entry: state_model.ResourceState | None) -> str | None:
    """For a generated secret whose generation did not change: the envelope
    reconciler last wrote, when the store's newest version is not it (written
    out of band) but still keeps it, to be written again as a new version."""
    if entry is None or entry.attributes.get("value") != desired.attributes.get("value") \
            or entry.attributes.get("vault") != desired.attributes.get("vault"):
        return None
    recorded = entry.ids.get("storedDigest")
    latest = info.store.latest(desired.name)
    if not recorded or latest is None or vaults.digest(latest.envelope) == recorded:
        return None
    for version in reversed(info.store.versions(desired.name)):
        if vaults.digest(version.envelope) == recorded:
            return str(version.envelope)
    raise errors.PlanError(
        f"{desired.address}: its value was changed outside reconciler and the version reconciler wrote is no "
        f"longer kept in {info.store.describe()}; a generated value is never regenerated silently: bump "
        "generate.generation to make a new one (whoever uses the old value needs the new)")


def _written(name: str, entry: state_model.ResourceState | None, data: Mapping[str, Any],
             stored: Any, history: Any = None) -> state_model.ResourceState:
    """The record of a secret once the journaled write ``data`` is ``stored``
    (its newest version): the digest, version and keys it now has (``history``:
    every kept version, for a secret recorded before versionKeys)."""
    previous = {k: v for k, v in (entry.ids if entry is not None else {}).items()
                if k not in ("fingerprintKey", "lostKey")}
    return state_model.ResourceState(KIND, name, state_model.Mode.MANAGED,
                                     vaults.recorded_ids({**previous, **data.get("ids", {})}, stored, history),
                                     dict(data["attributes"]), data["connection"],
                                     tuple(data.get("dependencies", ())))


def _foreign_binding(aws: base.AwsContext, envelope: str, entry: state_model.ResourceState) -> str:
    """The stack an entry's envelope is bound to when that is neither this
    stack's name nor a former one ("" otherwise, or when it is no envelope)."""
    try:
        stack = env.Envelope.parse(envelope).binding.stack
    except env.EnvelopeError:
        return ""
    return "" if aws.ours(stack) else stack


def _stored_former(aws: base.AwsContext, entry: state_model.ResourceState) -> bool:
    """Whether the newest stored version of ``entry`` is bound to a former name of the stack."""
    latest = vaults.stored_vault(aws, entry).store.latest(entry.name)
    return latest is not None and bool(_former_binding(aws, latest.envelope))


def _former_binding(aws: base.AwsContext, envelope: str | env.Envelope) -> str:
    """The former stack name an envelope is bound to ("" when it is bound to
    this stack's name, or to a stack that was never this one)."""
    try:
        sealed = env.Envelope.parse(envelope) if isinstance(envelope, str) else envelope
    except env.EnvelopeError:
        return ""  # not an envelope at all (written by hand): drift, said elsewhere
    stack = sealed.binding.stack
    return stack if stack != aws.stack and aws.ours(stack) else ""


# -- fingerprint keys and lost keys --------------------------------------------------
def _key_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]  # a multi-Region replica counts as its primary (vaults.same_key)


def _provider_keys(aws: base.AwsContext) -> Mapping[str, Mapping[str, Any]]:
    """Key id -> connection of every KmsProvider in state (indexed once per state)."""
    def index() -> dict[str, Mapping[str, Any]]:
        return {_key_id(e.ids["arn"]): e.connection for e in aws.state.resources.values()
                if e.kind == "KmsProvider" and e.ids.get("arn")}
    return aws.keyring.per_state(aws.state, "providers", index)


def _connection_for(aws: base.AwsContext, key_arn: str) -> Mapping[str, Any]:
    """How to reach a KMS key: as the KmsProvider in state that holds it, else
    with the stack's default connection (the keyring picks the key's region)."""
    return _provider_keys(aws).get(_key_id(key_arn), aws.default_connection)


def _unwrap(aws: base.AwsContext, sealed: str) -> bytes | None:
    """A fingerprint key from its envelope (once per run); None when the KMS
    key that wraps it is gone, disabled or pending deletion."""
    envelope = env.Envelope.parse(sealed)
    binding = env.Binding(aws.stack, envelope.binding.vault, FINGERPRINT_KEY_NAME)
    if envelope.binding.secret == FINGERPRINT_KEY_NAME and aws.ours(envelope.binding.stack):
        binding = envelope.binding  # made before a rename: still this stack's key
    try:
        return bytes(aws.keyring.unwrap_cached(sealed, binding=binding,
                                               connection=_connection_for(aws, envelope.key_arn)))
    except errors.AwsError as exc:
        if exc.code in UNUSABLE_KEY:
            return None
        raise


def _vault_keys(aws: base.AwsContext, vault: str) -> list[str]:
    """The fingerprint keys recorded for a vault's secrets, those sealed under
    the vault's current KMS key first."""
    def index() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for e in aws.state.resources.values():
            if e.kind == KIND and e.ids.get("fingerprintKey"):
                found.setdefault(str(e.attributes.get("vault")), set()).add(e.ids["fingerprintKey"])
        return found
    texts = sorted(aws.keyring.per_state(aws.state, "fingerprintKeys", index).get(vault, set()))
    try:
        current = vaults.resolve(aws, vault).key_arn
    except errors.ReconcilerError:
        return texts
    return sorted(texts, key=lambda t: not vaults.same_key(env.Envelope.parse(t).key_arn, current))


def _fingerprint_key(aws: base.AwsContext, vault: str,
                     entry: state_model.ResourceState | None) -> tuple[bytes, str] | None:
    """The key (and its envelope) that fingerprints a secret's fromEnv value:
    the one it was recorded with, else its vault's, else a new one for the
    vault (created on first need). None while the vault has no usable KMS key."""
    own = [entry.ids["fingerprintKey"]] if entry is not None and entry.ids.get("fingerprintKey") else []
    for sealed in own + _vault_keys(aws, vault):
        key = _unwrap(aws, sealed)
        if key is not None:
            return key, sealed
    try:
        info = vaults.resolve(aws, vault)
        binding = env.Binding(aws.stack, vault, FINGERPRINT_KEY_NAME)
        return aws.keyring.new_small_key(key_arn=info.key_arn, key_spec=info.key_spec, binding=binding,
                                         connection=info.connection)
    except errors.PlanError:
        return None  # the vault's KmsProvider is created by this very plan
    except errors.AwsError as exc:
        if exc.code in UNUSABLE_KEY:
            return None
        raise


def _write_time_key(aws: base.AwsContext, desired: plan_model.Desired,
                    entry: state_model.ResourceState | None) -> tuple[bytes, str]:
    """The fingerprint key the plan used, else (planned before the vault had a
    key) the vault's, which exists now."""
    sealed = desired.lookup.get("fingerprintKey")
    if sealed:
        key = _unwrap(aws, sealed)
        if key is None:
            raise errors.PlanError(f"{desired.address}: the KMS key that wraps the fingerprint key of this plan "
                                   "is no longer usable; run plan again")
        return key, sealed
    found = _fingerprint_key(aws, desired.attributes["vault"], entry)
    if found is None:
        raise errors.PlanError(f"{desired.address}: vault {desired.attributes['vault']} has no usable KMS key")
    return found


def _checked_token(aws: base.AwsContext, desired: plan_model.Desired, value: bytes, key: bytes,
                   variable: str) -> str:
    """The token to record, refusing a value that is not the planned one."""
    token = fingerprint(value, key, aws.stack, desired.name)
    planned = desired.attributes.get("value")
    if planned not in (UNRESOLVED, NOT_READ) and not hmac.compare_digest(token, str(planned)):
        raise errors.PlanError(f"{desired.address}: the value of {variable} changed since the plan was made; "
                               "run plan again")
    return token


def _same_as_legacy(aws: base.AwsContext, entry: state_model.ResourceState | None,
                    live: planner.Refreshed | None, value: bytes) -> bool:
    """Whether state holds an older version's scrypt token of exactly this value
    (and the store still holds what was recorded)."""
    if entry is None or live is None or live.attributes is None:
        return False
    recorded = str(entry.attributes.get("value", ""))
    if not recorded.startswith("env:") or recorded.startswith((HMAC_PREFIX, "env:(")):
        return False
    if live.attributes.get("value") != recorded:
        return False
    binding = env.Binding(aws.stack, entry.attributes.get("vault", ""), entry.name)
    return hmac.compare_digest(legacy_fingerprint(value, binding), recorded)


def _lost_key(aws: base.AwsContext, entry: state_model.ResourceState, info: vaults.VaultInfo) -> str | None:
    """The ARN of the key the newest envelope names when that key no longer
    exists. A key some KmsProvider in state holds is left to that provider's
    own refresh (no call here); any other is looked up once per run."""
    arn = entry.ids.get("keyArn")
    if not arn:
        return None
    if _key_id(str(arn)) in _provider_keys(aws):
        return None
    return None if aws.keyring.key_exists(arn, connection=info.connection) else str(arn)


def _can_resupply(aws: base.AwsContext, desired: plan_model.Desired | None, lost: str,
                  info: vaults.VaultInfo) -> bool:
    """Whether the manifest can give a lost entry its value again: fromEnv
    always, an envelope under a key that still exists, generate only when
    asked (``--regenerate-lost``: a new value breaks whoever used the old)."""
    source = desired.lookup.get("source", {}) if desired is not None else {}
    if "fromEnv" in source:
        return True
    if "generate" in source:
        return bool(getattr(aws, "regenerate_lost", False))
    if "encrypted" in source:
        arn = env.Envelope.parse(source["encrypted"].strip()).key_arn
        return not vaults.same_key(arn, lost) and aws.keyring.key_exists(arn, connection=info.connection)
    return False


# -- plan rules (pure: the planner calls them through plan.rules.Rules) ---------------------
def _resupply_hint(entry: state_model.ResourceState) -> str:
    """How a lost secret gets a value again, by the source its token names."""
    token = str(entry.attributes.get("value", ""))
    if token.startswith("env:"):
        return ("`reconciler apply` writes it again from its fromEnv variable once the vault has a "
                "working key")
    if token.startswith("envelope:"):
        return ("encrypt the value again (`reconciler secret encrypt`) and replace its `encrypted:` "
                "envelope, then apply")
    if token.startswith("generation:"):
        return "`reconciler apply --regenerate-lost` generates a new value (whoever used the old one needs the new)"
    return "re-supply its value"


def _lost_note(arn: str, provider: str, entry: state_model.ResourceState) -> str:
    return (f"its envelope no longer decrypts: key {arn}{f' ({provider})' if provider else ''} no longer "
            f"exists, so every stored version is lost; re-supply the value: {_resupply_hint(entry)}")


class SecretRules(plan_rules.Rules):
    """A secret whose key cannot decrypt it any more is one critical item; one
    moving to another vault says how many versions move."""

    noun = "secret"

    def pending(self, path: str, live: Any) -> str:
        if path == "value" and str(live).startswith(REBIND):
            return (f"bound to the stack's former name {str(live)[len(REBIND):-1]}: the plan re-binds it "
                    "(the same value, sealed for the new name)")
        return ""

    def drift_note(self, entry: state_model.ResourceState) -> str:
        if str(entry.attributes.get("value", "")).startswith("generation:"):
            return ("the stored value was changed outside reconciler; apply writes back the value reconciler "
                    "generated (as a new version), never a new one")
        return "the stored entry was changed outside reconciler"

    def recreate(self, entry: state_model.ResourceState, desired: plan_model.Desired) -> tuple[str, bool]:
        """A generated value whose entry is gone is lost for good (a new one strands
        whoever used it): only with --allow-destroy. A value the manifests hold is
        simply written again."""
        if "generate" in desired.lookup.get("source", {}):
            return ("its entry no longer exists in the vault's store and no entry bound to this stack was "
                    "found: the generated value is lost. Apply generates a new one only with --allow-destroy"), True
        return "its entry no longer exists in the vault's store; apply writes the manifest's value again", False

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        if path == "value" and str(before).startswith("generation:"):
            return plan_rules.Severity.CRITICAL  # whoever reads it gets a value reconciler did not make
        return plan_rules.Severity.WARNING

    def unreadable(self, entry: state_model.ResourceState, prior: state_model.State,
                   refreshed: Mapping[str, plan_model.Refreshed]) -> plan_model.DriftItem | None:
        """Critical when the envelope's key cannot decrypt any more. A key that is
        gone (the secret's refresh says so for keys no KmsProvider holds) loses
        the value for good: the note says how to re-supply it."""
        found = refreshed.get(entry.address)
        lost = (found.ids or {}).get("lostKey") if found is not None else None
        critical = plan_rules.Severity.CRITICAL.value
        foreign = (found.ids or {}).get("boundTo") if found is not None else None
        if foreign:
            return plan_model.DriftItem(entry.address, critical, (), note=(
                f"its envelope is bound to stack {foreign}, not to this stack, so it no longer decrypts here; if "
                f"this stack was renamed from {foreign}, list {foreign} under the Stack's spec.formerNames (the "
                "plan then re-binds it)"))
        if lost:
            return plan_model.DriftItem(entry.address, critical, (), note=_lost_note(str(lost), "", entry))
        vault = prior.resources.get(f"{vaults.KIND}/{entry.attributes.get('vault')}")
        if vault is None:
            return None
        provider = f"KmsProvider/{vault.attributes.get('provider')}"
        live = refreshed.get(provider)
        state = (live.attributes or {}).get("keyState") if live else None
        if live is None or state == "Enabled":
            return None
        arn = prior.resources[provider].ids.get("arn", provider) if provider in prior.resources else provider
        own = entry.ids.get("keyArn")
        if own and not vaults.same_key(str(own), str(arn)):
            return None  # the envelope is under another key than the vault's
        if live.attributes is None:
            return plan_model.DriftItem(entry.address, critical, (), note=_lost_note(str(arn), provider, entry))
        how = ("cancel the deletion (`reconciler apply` does, or `aws kms cancel-key-deletion`) and "
               "enable it" if state == "PendingDeletion" else
               "re-enable it (`reconciler apply` does, or `aws kms enable-key`)")
        return plan_model.DriftItem(entry.address, critical, (), note=(
            f"its envelope no longer decrypts: key {arn} ({provider}) is {state}; {how}"))

    def review(self, change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        before, after = change.before or {}, change.after or {}
        former = str(before.get("value", ""))
        if change.action is plan_actions.Action.UPDATE and former.startswith(REBIND):
            return plan_rules.Review(notes=(
                f"re-bind: its envelope is bound to the stack's former name {former[len(REBIND):-1]}; apply "
                "stores the same value sealed for this name (a new version; older versions still decrypt)",))
        if after.get("value") == UNRESOLVED and change.action in (plan_actions.Action.CREATE,
                                                                   plan_actions.Action.UPDATE):
            want = context.desired.get(change.address)
            variable = (want.lookup.get("source") or {}).get("fromEnv") if want is not None else None
            return plan_rules.Review(notes=(
                f"the value of {variable or 'its variable'} is read again at apply: the vault's key is made "
                "by this plan, so nothing can fingerprint the value now, and a saved plan cannot tell "
                "whether it changed before apply",))
        if change.action is not plan_actions.Action.UPDATE or before.get("vault") == after.get("vault") \
                or not change.before or not change.after:
            return plan_rules.Review()
        entry = context.prior.resources.get(change.address)
        count = sum(vaults.kept_by_key(entry, context.prior).values()) if entry is not None else 0
        return plan_rules.Review(notes=(
            f"move {count} version{'s' if count != 1 else ''} from Vault/{before.get('vault')} "
            f"to Vault/{after.get('vault')} (values kept, re-sealed for the new vault)",))

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """A secret's reads and writes are its vault's: its store and its key."""
        vault = stack.get(f"{vaults.KIND}/{desired.attributes['vault']}")
        return vaults.RULES.permissions(vault, stack, prior) if vault is not None else ()


RULES = SecretRules()


# What the import and drift --unmanaged functions below use, imported here (not at the top) so that
# this section stays apart from the rest of the module.
from reconciler.aws import secretsmanager as sm_adapter  # noqa: E402
from reconciler.kinds import unmanaged as listing  # noqa: E402
from reconciler.plan import unmanaged as unmanaged_model  # noqa: E402


# -- reconciler import -----------------------------------------------------------------------
def import_entry(handler: SecretHandler, aws: base.AwsContext, desired: plan_model.Desired,
                 aws_id: str) -> tuple[state_model.ResourceState, str]:
    """``reconciler import Secret/NAME VAULT/NAME``: the entry already in the
    vault's store, read into state when its envelope is bound to this stack,
    vault and name (as ``find_owned`` finds it); an entry sealed for another
    binding is refused: its KMS encryption context names someone else's."""
    vault = str(desired.attributes["vault"])
    wanted = f"{vault}/{desired.name}"
    if aws_id != wanted:
        raise errors.ConfigError(f"{desired.address}: {aws_id} is not its entry: an entry is bound to its vault and "
                                 f"name, so Secret/{desired.name} of Vault/{vault} can only be {wanted}")
    try:
        attributes = vaults.state_attributes(aws, vault)
        store = vaults.open_store(aws, attributes["store"], attributes.get("keepVersions", store_base.DEFAULT_KEEP))
        latest = store.latest(desired.name)
    except errors.AwsNotFound:
        latest, store = None, None
    where = store.describe() if store is not None else f"Vault/{vault}'s store"
    if latest is None:
        raise errors.AwsNotFound(f"{desired.address}: no entry {desired.name} in {where}", "NotFound")
    try:
        binding = env.Envelope.parse(latest.envelope).binding
    except env.EnvelopeError:
        raise errors.ConfigError(f"{desired.address}: the entry {desired.name} in {where} is not a reconciler "
                                 "envelope (rcl:v1:...); write the value with the manifest instead (declare it "
                                 "with encrypted:, generate: or fromEnv: and apply)") from None
    if binding != env.Binding(aws.stack, vault, desired.name):
        raise errors.ConfigError(
            f"{desired.address}: the entry {desired.name} in {where} is bound to stack {binding.stack}, vault "
            f"{binding.vault}, secret {binding.secret}, not to this stack's {aws.stack}/{vault}/{desired.name}: "
            "its KMS encryption context would never match, so it cannot be taken over; re-encrypt the value "
            f"(`reconciler secret encrypt --vault {vault} --name {desired.name}`) and apply")
    entry = handler.read(aws, desired)
    if not latest.number:  # written outside reconciler: no version of its history (secret get cannot read it)
        entry = dataclasses.replace(entry, attributes={**entry.attributes, "value": FOUND})
        note = ("it was written outside reconciler, so it is no version of reconciler's history: the next apply "
                "writes the manifest's value as a new version")
    elif entry.attributes.get("value") == FOUND:
        note = ("its stored value is not compared without decrypting it: the next apply writes the manifest's "
                "value as a new version")
    else:
        note = "its value is the manifest's (the same envelope, or the value reconciler generated)"
    return entry, f"version {entry.ids.get('version')} of {where}; {note}"


# -- drift --unmanaged -----------------------------------------------------------------------
UNMANAGED_TYPES = {"secretsmanager": "secretsmanager:secret", "ssm": "ssm:parameter"}


def unmanaged_entries(aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                      prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
    """Secrets Manager secrets and SSM parameters tagged for this stack, in the
    regions of its vaults' stores, whose reconciler:address (a Secret, or the
    AccessKeyRotation whose output it is) state does not record. A secret
    scheduled for deletion is left out (a Secret removed from its vault)."""
    todo: set[tuple[str, str]] = set()
    for attributes, _connection in listing.entries_of(vaults.KIND, desired, prior):
        store = attributes.get("store") or {}
        for name, type_ in UNMANAGED_TYPES.items():
            if name in store:
                todo.add((type_, str(store[name].get("region") or aws.default_connection.get("region"))))
    found: list[unmanaged_model.Unmanaged] = []
    for type_, region in sorted(todo):
        if type_ == UNMANAGED_TYPES["secretsmanager"]:
            listed = sm_adapter.SecretsManagerAdapter(aws.client("secretsmanager", region=region), region)
            tagged = listed.tagged(listing.STACK_TAG, aws.stack)
        else:
            tagged = aws.tagged_for_stack(aws.default_connection, (type_,), region)
        for arn, tags in sorted(tagged.items()):
            address = str(tags.get(listing.ADDRESS_TAG, ""))
            if address in prior.resources:
                continue
            kind = address.split("/", 1)[0] if "/" in address else KIND
            found.append(listing.tagged_item(kind, type_, arn, region, tags, prior, aws.stack, "entry"))
    return found

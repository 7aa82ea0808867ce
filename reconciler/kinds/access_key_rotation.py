"""AccessKeyRotation: an IAM user's access key pair, rotated on a schedule
and written into two vault entries (seed 003), so that no consumer is ever
left without a working key (SPEC 5, rule 3).

The protocol (each step journaled before and after it runs, Operation.ROTATE):
  1. ``evicting``  the user holds two keys: one that is inactive, or the
                   previous key this stack issued, is deleted first; an unknown
                   active key stops the rotation (unless ``evictUnknownKeys``)
  2. ``creating``  CreateAccessKey; the pair is sealed at once, under each
                   output vault's KMS key, bound to stack / vault / secret name
  3. ``created``   the new key is verified: sts:GetCallerIdentity signed with
                   it returns the target user's ARN (bounded retry: IAM is
                   eventually consistent)
  4. ``verified``  both envelopes written as new versions of the outputs; a
                   failure puts back what the first held: both or neither
  5. settled       the new key is current, the old one *previous*, still active.
Later runs deactivate the previous key once ``gracePeriod`` has passed since
the cut-over, and delete it one ``gracePeriod`` after that (REVOKE).

A run killed between any two calls resumes from the journal's step: a key
made but not yet sealed (no secret survives the crash) is found (not in the
journal's ``known`` keys) and deleted before a new one is made; from
``created`` on, the journal holds the pair as vault envelopes (ciphertext
under the vault's KMS key: what the outputs will store), so the rotation
finishes without a new key. The secret access key is never in state or a
plan in the clear; state keeps key ids, dates and digests of envelopes.

Attributes (what plan compares): userName (a change replaces: the old
user's keys are deleted first), interval, gracePeriod, evictUnknownKeys,
outputs (vault, secret, and the vault's provider and store: a change there
writes a new pair where the outputs now live). Recorded status, compared
with live AWS by drift: currentKey, previousKey, foreignKeys (keys on the
user this stack did not issue), outputValues, schedule (overdue or not).
A no-op plan reads one ListAccessKeys per rotation (shared by its refresh and
check); the outputs are compared by the version id each write recorded
(``storeVersion``) against the vault store's listing, as a Secret is.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from reconciler import clock, errors
from reconciler.aws import factory
from reconciler.aws import iam as iam_adapter
from reconciler.aws import propagation
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

KIND = "AccessKeyRotation"
OUTPUTS = ("accessKeyId", "secretAccessKey")
DEFAULT_GRACE = manifest.ROTATION_GRACE_DEFAULT
ACTIVE, INACTIVE, DELETED = "Active", "Inactive", "deleted"
AS_WRITTEN, CHANGED, MISSING = "as written", "changed outside reconciler", "missing"
ON_TIME = "on time"
CONFIG = ("userName", "interval", "gracePeriod", "evictUnknownKeys", "outputs")
VERIFY = propagation.Backoff(budget=30.0)  # how long a new key may take to work (vault #3115: 5-10 s)
Action = plan_actions.Action


# -- pure helpers ------------------------------------------------------------------------------
def seconds(duration: str) -> int:
    return manifest.parse_duration(duration)


def _when(stamp: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(stamp)
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _at(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).isoformat(timespec="seconds")


def next_due(attributes: Mapping[str, Any], ids: Mapping[str, Any]) -> datetime.datetime | None:
    """When the current key is due for rotation (None: no key issued yet)."""
    issued = (ids.get("current") or {}).get("issuedAt")
    if not issued:
        return None
    return _when(issued) + datetime.timedelta(seconds=seconds(attributes["interval"]))


def retire_times(attributes: Mapping[str, Any], previous: Mapping[str, Any],
                 ) -> tuple[datetime.datetime, datetime.datetime]:
    """When the previous key is deactivated (grace after the cut-over) and deleted
    (one more grace after it was deactivated)."""
    grace = datetime.timedelta(seconds=seconds(attributes["gracePeriod"]))
    deactivate = _when(previous["retiredAt"]) + grace
    deactivated = _when(previous["deactivatedAt"]) if previous.get("deactivatedAt") else deactivate
    return deactivate, max(deactivated, deactivate) + grace


def output_names(attributes: Mapping[str, Any]) -> str:
    outs = attributes.get("outputs") or {}
    return " and ".join(f"{outs[w]['vault']}/{outs[w]['secret']}" for w in OUTPUTS if w in outs)


def _status(attributes: Mapping[str, Any], previous: bool, outputs: Mapping[str, str],
            schedule: str = ON_TIME, current: str = ACTIVE, previous_status: str = ACTIVE,
            foreign: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Config attributes plus the status drift compares (as recorded after apply, or as read)."""
    out = {k: attributes[k] for k in CONFIG if k in attributes}
    out.update(currentKey=current, foreignKeys=dict(foreign or {}), outputValues=dict(outputs), schedule=schedule)
    if previous:
        out["previousKey"] = previous_status
    return out


def _evictable(keys: Mapping[str, str], ids: Mapping[str, Any], evict_unknown: bool,
               user: str) -> str | None:
    """The key to delete before a new one can be made (IAM allows two), or None
    when there is room. Raises when only unknown active keys could go."""
    if len(keys) < 2:
        return None
    current = (ids.get("current") or {}).get("id")
    previous = (ids.get("previous") or {}).get("id")
    inactive = sorted(k for k, s in keys.items() if s != ACTIVE)  # serves nobody (the current one included)
    if inactive:
        return inactive[0]
    if previous in keys and previous != current:
        return str(previous)
    unknown = sorted(k for k in keys if k not in (current, previous))
    if evict_unknown and unknown:
        return unknown[0]
    named = ", ".join(f"{k} ({keys[k]})" for k in unknown) or ", ".join(sorted(keys))
    raise errors.PlanError(
        f"user {user} already holds two access keys and {named} was not issued by this stack, so a "
        f"rotation cannot make a new one (IAM allows two per user). Delete or deactivate it (aws iam "
        f"delete-access-key --user-name {user} --access-key-id {unknown[0] if unknown else 'ID'}), or set "
        "evictUnknownKeys: true to let reconciler delete it")


def _iam(aws: base.AwsContext, connection: Mapping[str, Any]) -> iam_adapter.IamAdapter:
    """The manager's IAM (IAM is global: the rotation's auth, the global region)."""
    return iam_adapter.IamAdapter(aws.client("iam", connection, factory.GLOBAL_REGION), factory.GLOBAL_REGION)


def _denied_hint(exc: errors.ReconcilerError, desired: plan_model.Desired) -> str:
    return (f"{exc.message}; the manager identity (auth of {desired.address}) needs the policy "
            f"`reconciler policy --for {desired.name}` prints, on user {desired.attributes['userName']} "
            "(its path included)")


# -- the handler -------------------------------------------------------------------------------
class AccessKeyRotationHandler:
    kind = KIND
    sensitive: frozenset[str] = frozenset()  # state holds key ids and envelope digests, never a secret

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        given = spec.get("outputs") or {}
        outputs: dict[str, Any] = {}
        for which in OUTPUTS:
            target = given.get(which) or {}
            vault = target.get("vault") or given.get("vault") or config.default_vault or ""
            declared = config.resources.get(f"{vaults.KIND}/{vault}")
            vault_spec = declared.spec if declared is not None else {}
            outputs[which] = {"vault": vault, "secret": target.get("secret", ""),
                              "provider": vault_spec.get("provider"), "store": vault_spec.get("store")}
        attrs = {"userName": spec["userName"], "interval": spec["interval"],
                 "gracePeriod": spec.get("gracePeriod", DEFAULT_GRACE),
                 "evictUnknownKeys": bool(spec.get("evictUnknownKeys", False)), "outputs": outputs}
        connection = {"region": config.region_of(resource) or factory.GLOBAL_REGION,
                      "auth": dict(config.auth_of(resource))}
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection,
                                  replace_on=frozenset({"userName"}))

    # -- reading --------------------------------------------------------------------------------
    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        connection = dict(desired.connection if desired is not None else entry.connection)
        user = str(entry.ids.get("userName") or entry.attributes["userName"])
        keys = _access_keys(aws, connection, user)
        if keys is None:
            return planner.Refreshed(None)  # the user is gone
        ids = entry.ids
        current = (ids.get("current") or {}).get("id")
        previous = (ids.get("previous") or {}).get("id")
        journal = aws.state.journal_of(entry.address, state_model.Operation.ROTATE)
        outputs = {which: _output_state(aws, recorded, listed=journal is None)
                   for which, recorded in (ids.get("outputs") or {}).items()}
        due = next_due(entry.attributes, ids)
        overdue = due + datetime.timedelta(seconds=seconds(entry.attributes["gracePeriod"])) if due else None
        now = clock.now()
        schedule = f"overdue since {_at(overdue)}" if overdue is not None and now >= overdue else ON_TIME
        ours = _made_by(journal, keys)
        live = _status(entry.attributes, bool(previous), outputs, schedule,
                       current=keys.get(str(current), DELETED),
                       previous_status=keys.get(str(previous), DELETED),
                       foreign={k: s for k, s in keys.items() if k not in (current, previous) and k not in ours})
        found: dict[str, Any] = dict(ids)
        if journal is not None:
            found["openOperation"] = {"id": journal.operation_id, "step": journal.step}
        return planner.Refreshed(live, found)

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """The user must exist and the manager must be able to read it; before the
        first key, a user holding two keys must have one that may go. A rotation
        state records for this user costs nothing more than its refresh: the
        user's access keys it listed (ListAccessKeys fails for a user that is
        gone) say both. One not recorded yet is read as its first apply reads
        it (GetUser, whose ARN the new key is verified against)."""
        user = str(desired.attributes["userName"])
        opened = aws.state.journal_of(desired.address, state_model.Operation.ROTATE)
        recorded = entry is not None and entry.ids.get("userName") == user and opened is None
        try:
            if recorded:
                if _access_keys(aws, desired.connection, user) is None:
                    return [f"{desired.address}: IAM user {user} does not exist; create it first or fix userName"]
                return []
            client = _iam(aws, desired.connection)
            if client.user(user) is None:
                return [f"{desired.address}: IAM user {user} does not exist; create it first or fix userName"]
            if opened is None:
                keys = _access_keys(aws, desired.connection, user)
                _evictable(keys or {}, {}, bool(desired.attributes["evictUnknownKeys"]), user)
        except errors.AwsAccessDenied as exc:
            return [f"{desired.address}: {_denied_hint(exc, desired)}"]
        except errors.PlanError as exc:
            return [f"{desired.address}: {exc.message}"]
        return []

    # -- writing -------------------------------------------------------------------------------
    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._rotate(aws, desired, None)

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Settings only touch state; outputs that moved (another secret, vault,
        key or store) get a new pair, and the entries left behind are deleted."""
        if desired.attributes["outputs"] == entry.attributes.get("outputs") and \
                aws.state.journal_of(entry.address, state_model.Operation.ROTATE) is None:
            attributes = {**entry.attributes, **{k: desired.attributes[k] for k in CONFIG}}
            return dataclasses.replace(entry, attributes=attributes, connection=desired.connection,
                                       dependencies=desired.dependencies)
        result = self._rotate(aws, desired, entry)
        kept = {_where(o) for o in (result.ids.get("outputs") or {}).values()}
        for old in (entry.ids.get("outputs") or {}).values():
            if _where(old) not in kept:
                _store(aws, old).delete(str(old["secret"]))
        return result

    def run_timed(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                  change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        match change.action:
            case Action.ROTATE:
                return self._rotate(aws, desired, entry)
            case Action.REVOKE:
                return self._retire(aws, desired, entry, change.subject, checkpoint)
            case _:
                raise errors.PlanError(f"{desired.address}: cannot {change.action.value}")

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        """Every key this stack issued (and one an interrupted rotation made), then the outputs."""
        client = _iam(aws, entry.connection)
        user = str(entry.ids.get("userName") or entry.attributes["userName"])
        journal = aws.state.journal_of(entry.address, state_model.Operation.ROTATE)
        ours = [(entry.ids.get(k) or {}).get("id") for k in ("current", "previous")]
        try:
            keys = client.access_keys(user)
        except errors.AwsNotFound:
            keys = {}
        if journal is not None:
            known = set(journal.data.get("known") or ())
            ours += [journal.data.get("newKey")] + [k for k in keys if k not in known]
        for key in sorted({str(k) for k in ours if k} & set(keys)):
            client.delete_access_key(user, key)
        for recorded in (entry.ids.get("outputs") or {}).values():
            _store(aws, recorded).delete(str(recorded["secret"]))

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """An interrupted rotation is finished by the rotation's own change (the
        plan rotates, or creates, or deletes it): the entry stays open until then."""
        return recovery.Recovery.continues(
            journal, f"resuming {recovery.what(journal)} from step {journal.step}")

    # -- the protocol ----------------------------------------------------------------------------
    def _rotate(self, aws: base.AwsContext, desired: plan_model.Desired,
                entry: state_model.ResourceState | None) -> state_model.ResourceState:
        address = desired.address
        user = str(desired.attributes["userName"])
        client = _iam(aws, desired.connection)
        ids = dict(entry.ids) if entry is not None and entry.ids.get("userName") == user else {}
        journal = aws.state.journal_of(address, state_model.Operation.ROTATE)
        secret: str | None = None  # the new secret access key: in memory, in this call only
        if journal is None:
            found = client.user(user)
            if found is None:
                raise errors.AwsNotFound(f"IAM user {user} does not exist", "NoSuchEntity")
            keys = client.access_keys(user)
            evict = _evictable(keys, ids, bool(desired.attributes["evictUnknownKeys"]), user)
            journal = aws.begin(address, state_model.Operation.ROTATE, "evicting" if evict else "creating", {
                "userName": user, "userArn": str(found["Arn"]), "known": sorted(keys), "evict": evict or "",
                "statuses": dict(keys), "connection": dict(desired.connection),
                "attributes": dict(desired.attributes), "dependencies": list(desired.dependencies)})
        data = dict(journal.data)
        if journal.step == "abandoning":  # a failed rotation killed while it cleaned up: finish that first
            self._abandon(aws, client, journal, user, str(data["abandon"]))
            return self._rotate(aws, desired, entry)
        if journal.step == "evicting":
            client.delete_access_key(user, data["evict"])
            data["known"] = [k for k in data["known"] if k != data["evict"]]
            journal = aws.advance(journal, "creating", data)
        if journal.step == "creating":
            for stray in sorted(set(client.access_keys(user)) - set(data["known"])):
                client.delete_access_key(user, stray)  # made by a run killed before it sealed it
            key_id, secret = client.create_access_key(user)
            try:
                data["sealed"] = _seal(aws, desired, key_id, secret)
            except errors.ReconcilerError:
                self._abandon(aws, client, journal, user, key_id)
                raise
            data["newKey"] = key_id
            journal = aws.advance(journal, "created", data)
        if journal.step == "created":
            if secret is None:
                secret = _unseal(aws, desired, data["sealed"]["secretAccessKey"], "secretAccessKey")
            try:
                verify_key(aws, str(data["newKey"]), secret, str(data["userArn"]))
            except errors.ReconcilerError:
                self._abandon(aws, client, journal, user, str(data["newKey"]))
                raise
            data["before"] = _latest_numbers(aws, desired)
            journal = aws.advance(journal, "verified", data)
        if journal.step != "verified":
            raise errors.StateError(f"{address}: journal entry {journal.operation_id} is at an unknown step "
                                    f"{journal.step!r}")
        if client.access_keys(user).get(str(data["newKey"])) != ACTIVE:
            # the new key went (deleted or deactivated out of band) before the outputs hold it: never
            # write a pair that does not work; what was written of it is put back, and a fresh rotation runs
            if _put_back(aws, desired, data.get("before") or {}):
                self._abandon(aws, client, journal, user, str(data["newKey"]))
                return self._rotate(aws, desired, entry)
            raise errors.AwsError(f"the new access key {data['newKey']} is no longer active and the outputs "
                                  "could not be put back; run apply again")
        try:
            written = _write_outputs(aws, desired, data, journal.operation_id)
        except errors.ReconcilerError as exc:
            if not _put_back(aws, desired, data.get("before") or {}):
                raise errors.AwsError(f"{exc.message}; an output may already hold the new key {data['newKey']}, "
                                      "which is kept (it works): the next run completes the rotation",
                                      getattr(exc, "code", "")) from None
            self._abandon(aws, client, journal, user, str(data["newKey"]))
            raise errors.AwsError(f"{exc.message}; both outputs still hold the previous key (nothing was "
                                  "switched) and the new key was deleted", getattr(exc, "code", "")) from None
        result = _rotated(desired, ids, data, written)
        aws.settle(journal, result)
        return result

    @staticmethod
    def _abandon(aws: base.AwsContext, client: iam_adapter.IamAdapter, journal: state_model.JournalEntry,
                 user: str, key_id: str) -> None:
        """A rotation that failed: recorded as abandoning (so a run killed while
        it cleans up never writes this key's pair later), its new key deleted,
        the journal closed; the previous key and the outputs untouched."""
        journal = aws.advance(journal, "abandoning", {**journal.data, "abandon": key_id})
        try:
            client.delete_access_key(user, key_id)
        except errors.ReconcilerError:
            return  # the entry stays open at "abandoning": the next run deletes the key
        aws.persist_outcome(aws.state.without_journal(journal.operation_id))

    def _retire(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                subject: str, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """The previous key: deactivated after grace, deleted one grace later.
        Never the current key (a stale plan's revoke of it does nothing)."""
        previous = dict(entry.ids.get("previous") or {})
        current = (entry.ids.get("current") or {}).get("id")
        if previous.get("id") != subject or subject == current:
            return entry
        user = str(entry.ids["userName"])
        client = _iam(aws, desired.connection)
        status = client.access_keys(user).get(subject)
        now = clock.now()
        attributes = dict(entry.attributes)
        ids = dict(entry.ids)
        deactivate, delete = retire_times(desired.attributes, previous)
        if status == ACTIVE and now >= deactivate:
            ids["previous"] = {**previous, "deactivatedAt": _at(now)}
            attributes["previousKey"] = INACTIVE
            # recorded before the call: a run killed right after it leaves state as AWS is (no drift,
            # and the deletion one grace after the real deactivation); killed before it, the next
            # plan sees the key still active and deactivates it again
            checkpoint(dataclasses.replace(entry, ids=ids, attributes=attributes))
            client.set_access_key_status(user, subject, INACTIVE)
        elif status is None or (status != ACTIVE and now >= delete):
            client.delete_access_key(user, subject)
            ids.pop("previous", None)
            attributes.pop("previousKey", None)
        return dataclasses.replace(entry, ids=ids, attributes=attributes)

    # -- reconciler import ----------------------------------------------------------------
    def import_object(self, aws: base.AwsContext, desired: plan_model.Desired,
                      aws_id: str) -> tuple[state_model.ResourceState, str]:
        """``reconciler import AccessKeyRotation/NAME USER``: take over the rotation
        of the key the user has now. Its one active key is adopted as the
        current key, issued when IAM says it was made; reconciler never knew
        its secret, so the outputs do not hold it and the next apply rotates at
        once: a new pair, verified, into the outputs, the adopted key kept
        active for ``gracePeriod`` and then retired like any previous key
        (deactivated, then deleted a gracePeriod later). An inactive second key
        is left as one this stack did not issue (a rotation deletes an inactive
        key first). Refused: no user, no active key (nothing to take over: apply
        issues the first), or two active keys (which one is in use?)."""
        user = str(desired.attributes["userName"])
        if aws_id != user:
            raise errors.ConfigError(f"{desired.address}: declares the user {user}, not {aws_id}; set userName: "
                                     f"{aws_id} in its manifest to import that user's key")
        client = _iam(aws, desired.connection)
        try:
            found = client.user(user)
            if found is None:
                raise errors.AwsNotFound(f"{desired.address}: IAM user {user} does not exist", "NoSuchEntity")
            keys = client.access_key_details(user)
        except errors.AwsAccessDenied as exc:
            raise errors.AwsAccessDenied(f"{desired.address}: {_denied_hint(exc, desired)}", exc.code) from None
        active = [k for k in keys if k["status"] == ACTIVE]
        named = ", ".join(f"{k['id']} ({k['status']})" for k in keys)
        if not active:
            raise errors.ConfigError(
                f"{desired.address}: user {user} holds no active access key ({named or 'none'}), so there is "
                "nothing to take over: `reconciler apply` issues its first key without an import")
        if len(active) > 1:
            raise errors.ConfigError(
                f"{desired.address}: user {user} holds two active access keys ({named}); import adopts the one "
                "in use: deactivate or delete the other (aws iam update-access-key --status Inactive), then "
                "import again")
        key = active[0]
        outputs = {which: {k: v for k, v in desired.attributes["outputs"][which].items()} for which in OUTPUTS}
        ids = {"userName": user, "userArn": str(found["Arn"]),
               "current": {"id": key["id"], "issuedAt": _at(_when(key["created"])), "adoptedBy": "import"},
               "outputs": outputs}
        attributes = _status(desired.attributes, False, {w: _output_state(aws, o) for w, o in outputs.items()},
                             foreign={k["id"]: k["status"] for k in keys if k["id"] != key["id"]})
        entry = state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, ids, attributes,
                                          desired.connection, desired.dependencies)
        return entry, (f"key {key['id']} of user {user} adopted as the current key; its secret was never known "
                       f"here, so the next apply rotates at once: a new pair into {output_names(desired.attributes)}, "
                       f"and {key['id']} stays active for the grace period ({desired.attributes['gracePeriod']}), "
                       "then is deactivated and deleted")


# -- the protocol's steps ------------------------------------------------------------------------
def _where(recorded: Mapping[str, Any]) -> str:
    return f"{recorded.get('vault')}|{recorded.get('secret')}|{sorted((recorded.get('store') or {}).items())}"


def _store(aws: base.AwsContext, recorded: Mapping[str, Any]) -> Any:
    return vaults.open_store(aws, recorded["store"], store_base.DEFAULT_KEEP)


def _made_by(journal: state_model.JournalEntry | None, keys: Mapping[str, str]) -> set[str]:
    """Keys an interrupted rotation made (its new key, or one it made before
    the crash and never recorded): not someone else's; the resume deals with them."""
    if journal is None:
        return set()
    return {k for k in keys if k not in set(journal.data.get("known") or ())}


def _access_keys(aws: base.AwsContext, connection: Mapping[str, Any], user: str) -> dict[str, str] | None:
    """The user's access keys, key id -> status (None: the user is gone).
    ListAccessKeys is the floor: IAM lists a user's keys only by user (without
    a user name it lists the caller's own), and no account-wide listing has
    key ids (the credential report has their dates and flags, hours old). At
    plan time it is read once per run and user, shared by the refresh and the
    check; during apply, read afresh."""
    def load() -> tuple[dict[str, str] | None]:
        try:
            return (_iam(aws, connection).access_keys(user),)
        except errors.AwsNotFound:
            return (None,)
    shared = aws.listed("iam:ListAccessKeys", [connection.get("auth"), user], load)
    return (shared if shared is not None else load())[0]


def _output_state(aws: base.AwsContext, recorded: Mapping[str, Any], *, listed: bool = True) -> str:
    """Whether an output still holds the envelope this stack wrote: by the
    store's shared listing of current version ids when the write recorded the
    id of the version it made (``storeVersion``: no value read, as a Secret's
    refresh), else (a store that does not list, an output recorded before
    ids, a rotation open in the journal: ``listed`` False) by reading the
    entry and comparing the digest of its envelope."""
    store = _store(aws, recorded)
    name = str(recorded["secret"])
    if listed and recorded.get("storedDigest") and \
            vaults.still_current(aws, store, name, str(recorded.get(vaults.STORE_VERSION) or "")):
        return AS_WRITTEN
    latest = store.latest(name)
    if latest is None:
        return MISSING
    return AS_WRITTEN if vaults.digest(latest.envelope) == recorded.get("storedDigest") else CHANGED


def _vault_of(aws: base.AwsContext, desired: plan_model.Desired, which: str) -> tuple[vaults.VaultInfo, str]:
    out = desired.attributes["outputs"][which]
    return vaults.resolve(aws, str(out["vault"])), str(out["secret"])


def _seal(aws: base.AwsContext, desired: plan_model.Desired, key_id: str, secret: str) -> dict[str, str]:
    """The pair as the envelopes the outputs will store (under each output vault's key)."""
    sealed = {}
    for which, value in (("accessKeyId", key_id), ("secretAccessKey", secret)):
        info, name = _vault_of(aws, desired, which)
        sealed[which] = aws.keyring.encrypt(value.encode(), key_arn=info.key_arn, key_spec=info.key_spec,
                                            binding=info.binding(aws.stack, name),
                                            connection=info.connection).to_string()
    return sealed


def _unseal(aws: base.AwsContext, desired: plan_model.Desired, text: str, which: str) -> str:
    info, name = _vault_of(aws, desired, which)
    return aws.keyring.decrypt(env.Envelope.parse(text), binding=info.binding(aws.stack, name),
                               connection=info.connection).decode()


def verify_key(aws: base.AwsContext, key_id: str, secret: str, user_arn: str,
            backoff: propagation.Backoff | None = None) -> None:
    """sts:GetCallerIdentity signed with the new key must name the target user.
    A key AWS does not accept yet (InvalidClientTokenId: IAM propagates new keys
    eventually) is retried within the backoff's budget; then the rotation stops."""
    backoff = backoff or VERIFY
    waits = backoff.delays()
    sts = aws.adapters.sts_with_key(key_id, secret)
    for attempt, delay in enumerate([*waits, None], 1):
        try:
            arn = sts.caller_arn()
        except errors.AwsAccessDenied as exc:
            if delay is None:
                raise errors.AwsError(
                    f"the new access key {key_id} does not work: sts:GetCallerIdentity with it was refused "
                    f"({exc.code}) {attempt} times over {sum(waits):.0f}s; the rotation stopped before "
                    "switching anything", exc.code) from None
            backoff.sleep(delay)
            continue
        if arn != user_arn:
            raise errors.AwsError(f"the new access key {key_id} authenticates as {arn}, not {user_arn}; the "
                                  "rotation stopped before switching anything")
        return


def _latest_numbers(aws: base.AwsContext, desired: plan_model.Desired) -> dict[str, int]:
    """Each output's newest version number before this rotation writes (0: none)."""
    numbers = {}
    for which in OUTPUTS:
        info, name = _vault_of(aws, desired, which)
        latest = info.store.latest(name)
        numbers[which] = latest.number if latest is not None else 0
    return numbers


def _write_outputs(aws: base.AwsContext, desired: plan_model.Desired, data: Mapping[str, Any],
                   operation: str) -> dict[str, dict[str, Any]]:
    """Both envelopes as new versions (one already there from an interrupted run is kept)."""
    written = {}
    for which in OUTPUTS:
        info, name = _vault_of(aws, desired, which)
        text = data["sealed"][which]
        latest = info.store.latest(name)
        if latest is None or vaults.digest(latest.envelope) != vaults.digest(text):
            latest = info.store.put(name, text, tags=kms.ownership(aws.stack, desired.address, operation))
        out = desired.attributes["outputs"][which]
        written[which] = {"vault": out["vault"], "secret": name, "provider": out["provider"],
                          "store": out["store"], "version": latest.number,
                          "storedDigest": vaults.digest(latest.envelope),
                          "keyArn": env.Envelope.parse(latest.envelope).key_arn}
        if latest.store_id:  # the store's id of that version: the refresh lists it instead of reading it
            written[which][vaults.STORE_VERSION] = latest.store_id
    return written


def _put_back(aws: base.AwsContext, desired: plan_model.Desired, before: Mapping[str, int]) -> bool:
    """Undo what a failed write stored: each output's newest version is again
    the one it had before (re-written on top), or the entry is removed.
    False when that could not be done (an output may hold the new key)."""
    done = True
    for which in OUTPUTS:
        try:
            info, name = _vault_of(aws, desired, which)
            versions = info.store.versions(name)
            if not versions or versions[-1].number <= int(before.get(which, 0)):
                continue
            earlier = [v for v in versions if v.number == int(before.get(which, 0))]
            if earlier:
                info.store.put(name, earlier[0].envelope)
            else:
                info.store.delete(name)
        except errors.ReconcilerError:
            done = False  # the other output is put back all the same
    return done


def _rotated(desired: plan_model.Desired, ids: Mapping[str, Any], data: Mapping[str, Any],
             written: Mapping[str, Any]) -> state_model.ResourceState:
    """The record once the outputs hold the new pair: the new key current, the
    one it replaces previous (still active until its grace period ends)."""
    now = _at(clock.now())
    statuses: Mapping[str, str] = data.get("statuses") or {}
    known = set(data.get("known") or ())
    old = (ids.get("current") or {}).get("id")
    older = ids.get("previous") or {}
    previous: dict[str, Any] | None = None
    if old and old in known:
        previous = {"id": old, "retiredAt": now}
        if statuses.get(old, ACTIVE) != ACTIVE:
            previous["deactivatedAt"] = now
    elif older.get("id") in known:
        previous = dict(older)
    new_ids: dict[str, Any] = {"userName": data["userName"], "userArn": data["userArn"],
                               "current": {"id": data["newKey"], "issuedAt": now},
                               "outputs": dict(written)}
    if previous is not None:
        new_ids["previous"] = previous
    status = statuses.get(previous["id"], ACTIVE) if previous else ACTIVE
    attributes = _status(desired.attributes, previous is not None, {w: AS_WRITTEN for w in OUTPUTS},
                         previous_status=status if previous is None or "deactivatedAt" not in previous
                         else INACTIVE)
    return state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED, new_ids, attributes,
                                     desired.connection, desired.dependencies)


# -- plan rules (pure) -----------------------------------------------------------------------------
MANAGER_ACTIONS = ("iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:GetUser", "iam:ListAccessKeys",
                   "iam:UpdateAccessKey")
SEED_NOTE = ("the manager's policy names the target user's ARN only (the seed's policy grants "
             "iam:CreateAccessKey / DeleteAccessKey on Resource \"*\", every user of the account)")


def _view(entry: state_model.ResourceState, live: plan_model.Refreshed | None) -> Mapping[str, Any]:
    """What the refresh read, else what state recorded (a plan without refresh)."""
    return live.attributes if live is not None and live.attributes is not None else entry.attributes


def _rotation_reason(desired: plan_model.Desired, entry: state_model.ResourceState, now: datetime.datetime,
                     live: plan_model.Refreshed | None) -> str | None:
    seen = _view(entry, live)
    current = (entry.ids.get("current") or {}).get("id")
    opened = (live.ids.get("openOperation") if live is not None else None) or {}
    if opened:
        return f"resume the interrupted rotation (operation {opened.get('id')}, stopped at step {opened.get('step')})"
    if seen.get("currentKey", ACTIVE) != ACTIVE:
        how = "deleted" if seen.get("currentKey") == DELETED else "deactivated"
        return (f"the current key {current} was {how} outside reconciler: whoever uses the outputs is broken; "
                "a new key is issued now")
    if (entry.ids.get("current") or {}).get("adoptedBy") == "import" and \
            not any((o or {}).get("storedDigest") for o in (entry.ids.get("outputs") or {}).values()):
        return (f"key {current} was adopted by `reconciler import` and its secret was never known here: a new "
                f"pair is issued, verified and written to {output_names(desired.attributes)}; {current} is "
                "retired after the grace period")
    changed = [w for w, s in (seen.get("outputValues") or {}).items() if s != AS_WRITTEN]
    if changed:
        names = ", ".join(f"{entry.ids['outputs'][w]['vault']}/{entry.ids['outputs'][w]['secret']}"
                          for w in changed if w in (entry.ids.get("outputs") or {}))
        return f"output {names or ', '.join(changed)} changed outside reconciler: a new key pair is issued and written"
    due = next_due(desired.attributes, entry.ids)
    if due is not None and now >= due:
        return f"rotation due since {_at(due)} (every {desired.attributes['interval']})"
    return None


class AccessKeyRotationRules(plan_rules.Rules):
    """Rotation due by the clock, a broken current key or changed outputs
    rotate at once; the previous key is retired after its grace period. A
    user with no room for a new key refuses the plan, naming the key."""

    noun = "rotation"
    replace_order = Action.DELETE_THEN_CREATE  # another user: the old one's keys go first

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        top = path.split(".", 1)[0].split("[", 1)[0]
        match top:
            case "currentKey":
                return plan_rules.Severity.CRITICAL
            case "outputValues":
                return plan_rules.Severity.CRITICAL if after == MISSING else plan_rules.Severity.HIGH
            case "foreignKeys" | "schedule":
                return plan_rules.Severity.HIGH
            case _:
                return plan_rules.Severity.WARNING

    def malformed(self, entry: state_model.ResourceState) -> str:
        ids, attributes = entry.ids, entry.attributes
        for field in ("userName", "interval", "gracePeriod"):
            if not isinstance(attributes.get(field), str):
                return f"attributes.{field}: expected a string"
        for field in ("interval", "gracePeriod"):
            try:
                seconds(attributes[field])
            except ValueError:
                return f"attributes.{field}: expected a duration"
        for field, needs in (("current", ("id", "issuedAt")), ("previous", ("id", "retiredAt"))):
            value = ids.get(field)
            if value is None and field == "previous":
                continue
            if not isinstance(value, Mapping) or not all(isinstance(value.get(n), str) for n in needs):
                return f"ids.{field}: expected an object with {' and '.join(needs)}"
            try:
                for stamp in [value[n] for n in needs if n != "id"] + (
                        [value["deactivatedAt"]] if value.get("deactivatedAt") else []):
                    _when(str(stamp))
            except ValueError:
                return f"ids.{field}: a date is not ISO 8601"
        outputs = ids.get("outputs")
        if not isinstance(outputs, Mapping) or not all(
                isinstance(outputs.get(w), Mapping) and isinstance(outputs[w].get("secret"), str)
                and isinstance(outputs[w].get("store"), Mapping) for w in OUTPUTS):
            return "ids.outputs: expected accessKeyId and secretAccessKey, each with its secret and store"
        return ""

    def drift_note(self, entry: state_model.ResourceState) -> str:
        return (f"access keys of IAM user {entry.ids.get('userName')} or the outputs ({output_names(entry.attributes)}) "
                "changed outside reconciler, or the rotation is overdue")

    def timed(self, desired: plan_model.Desired, entry: state_model.ResourceState, now: datetime.datetime,
              live: plan_model.Refreshed | None = None,
              prior: state_model.State | None = None) -> tuple[plan_rules.Timed, ...]:
        due: list[plan_rules.Timed] = []
        seen = _view(entry, live)
        previous = entry.ids.get("previous") or {}
        reason = _rotation_reason(desired, entry, now, live)
        if previous.get("id") and seen.get("currentKey", ACTIVE) == ACTIVE and not (
                live is not None and live.ids.get("openOperation")):
            deactivate, delete = retire_times(desired.attributes, previous)
            status = seen.get("previousKey", ACTIVE)
            if status == ACTIVE and now >= deactivate:
                due.append(plan_rules.Timed(Action.REVOKE, f"grace period ended at {_at(deactivate)}: deactivate "
                                            f"the previous key {previous['id']}", str(previous["id"])))
            elif status != ACTIVE and now >= delete:
                how = "inactive for a grace period" if status == INACTIVE else "already gone"
                due.append(plan_rules.Timed(Action.REVOKE, f"delete the previous key {previous['id']} ({how}; "
                                            f"due at {_at(delete)})", str(previous["id"])))
        if reason is not None:
            due.append(plan_rules.Timed(Action.ROTATE, reason))
        return tuple(due)

    def forced(self, desired: plan_model.Desired, entry: state_model.ResourceState) -> plan_rules.Timed | None:
        return plan_rules.Timed(Action.ROTATE, "rotation asked for now (reconciler rotate)")

    def schedule(self, desired: plan_model.Desired, entry: state_model.ResourceState | None,
                 now: datetime.datetime, live: plan_model.Refreshed | None = None) -> tuple[str, ...]:
        if entry is None:
            return (f"{desired.address}: not yet initialised: the first access key of user "
                    f"{desired.attributes['userName']} is issued by the next apply",)
        current = entry.ids.get("current") or {}
        due = next_due(desired.attributes, entry.ids)
        lines = [f"{desired.address}: key {current.get('id')} of user {entry.ids.get('userName')} issued "
                 f"{current.get('issuedAt')}; next rotation due at {_at(due) if due else '?'}"
                 f"{' (due now)' if due is not None and now >= due else ''}"]
        previous = entry.ids.get("previous") or {}
        if previous.get("id"):
            deactivate, delete = retire_times(desired.attributes, previous)
            status = _view(entry, live).get("previousKey", ACTIVE)
            if status == ACTIVE:
                lines.append(f"{desired.address}: previous key {previous['id']} stays active until "
                             f"{_at(deactivate)} (grace period), then is deactivated; deleted at {_at(delete)}")
            else:
                lines.append(f"{desired.address}: previous key {previous['id']} is {str(status).lower()}; "
                             f"deleted at {_at(delete)}")
        foreign = _view(entry, live).get("foreignKeys") or {}
        if foreign:
            lines.append(f"{desired.address}: user {entry.ids.get('userName')} also holds "
                         f"{', '.join(f'{k} ({s})' for k, s in sorted(foreign.items()))}, not issued by this stack")
        return tuple(lines)

    def review(self, change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        after = change.after or change.before or {}
        user = after.get("userName")
        match change.action:
            case Action.CREATE:
                return plan_rules.Review(notes=(
                    f"not yet initialised: the first access key of user {user} is issued, verified "
                    f"(sts:GetCallerIdentity as {user}) and written to {output_names(after)}",))
            case Action.DELETE | Action.DELETE_THEN_CREATE:
                entry = context.prior.resources.get(change.resource_address)
                ids = entry.ids if entry is not None else {}
                keys = [str(k["id"]) for k in (ids.get("current") or {}, ids.get("previous") or {}) if k.get("id")]
                return plan_rules.Review(notes=(
                    f"deletes access key{'s' if len(keys) != 1 else ''} {', '.join(keys) or '(none)'} of user "
                    f"{ids.get('userName')} (whoever still uses them stops working) and the outputs "
                    f"{output_names(change.before or {})}",))
            case Action.UPDATE if "outputs" in {c.top for c in change.changes}:
                return plan_rules.Review(notes=(
                    f"the outputs moved: a new key pair is issued into {output_names(after)}; entries no "
                    "longer named are deleted once it is written",))
            case Action.ROTATE:
                return self._no_room(change, context)
            case _:
                return plan_rules.Review()

    @staticmethod
    def _no_room(change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        """A rotation the user's keys leave no room for: refused now, not half-way
        through apply; one that must delete the previous key inside its grace
        period (the user can hold two keys) says so."""
        entry = context.prior.resources.get(change.resource_address)
        live = change.before or {}
        if entry is None or context.prior.journal_of(change.resource_address, state_model.Operation.ROTATE):
            return plan_rules.Review()  # an interrupted rotation: room was made before it started; it resumes
        ids = entry.ids
        keys = {str(k): str(s) for k, s in (live.get("foreignKeys") or {}).items()}
        for which, status in (("current", live.get("currentKey")), ("previous", live.get("previousKey"))):
            key = (ids.get(which) or {}).get("id")
            if key and status in (ACTIVE, INACTIVE):
                keys[str(key)] = str(status)
        try:
            evict = _evictable(keys, ids, bool((change.after or {}).get("evictUnknownKeys")), str(ids.get("userName")))
        except errors.PlanError as exc:
            return plan_rules.Review(problems=(f"{change.resource_address}: {exc.message}",))
        previous = ids.get("previous") or {}
        if evict and evict == previous.get("id") and keys.get(evict) == ACTIVE:
            deactivate, _delete = retire_times(change.after or entry.attributes, previous)
            if context.now < deactivate:
                return plan_rules.Review(notes=(
                    f"deletes the previous key {evict} now, before its grace period ends at {_at(deactivate)}: "
                    "the user can hold only two keys; whoever still uses it stops working",))
        if evict:
            return plan_rules.Review(notes=(f"deletes {evict} ({keys.get(evict, '?').lower()}) first to make "
                                            "room: the user can hold only two keys",))
        return plan_rules.Review()

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """What apply's own identity needs: the output vaults' keys and stores
        (the IAM calls are the manager's: ``policy --for``)."""
        found: list[plan_rules.Permission] = []
        for which in OUTPUTS:
            vault = stack.get(f"{vaults.KIND}/{desired.attributes['outputs'][which]['vault']}")
            if vault is not None:
                found.extend(vaults.RULES.permissions(vault, stack, prior))
        return tuple(found)

    def granted(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        """The manager's least privilege: the five IAM calls, on the target user only."""
        entry = prior.resources.get(desired.address)
        arn = str(entry.ids.get("userArn")) if entry is not None and entry.ids.get("userArn") and \
            entry.ids.get("userName") == desired.attributes["userName"] else \
            f"arn:aws:iam::*:user/{desired.attributes['userName']}"
        note = SEED_NOTE
        if entry is None:
            note += ("; until the first apply records the user's ARN, a user with a path needs it "
                     "written in (arn:aws:iam::ACCOUNT:user/PATH/NAME)")
        return (plan_rules.Permission(MANAGER_ACTIONS, (arn,), note=note),)


RULES = AccessKeyRotationRules()

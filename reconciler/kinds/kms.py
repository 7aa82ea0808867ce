"""KmsProvider: a customer-managed KMS key, created or adopted.

Attributes (what plan compares; all JSON-shaped):
  region, keySpec, usage, multiRegion       immutable: a change replaces the key
  description, alias, tags, keyState        per key, primary and each replica
  rotation {enabled, periodDays}            symmetric keys only
  policy                                    only when the manifest gives one
  grants {name: {granteePrincipal, operations}}  only when the manifest gives them: the
                                            grants this stack created (by name); others are
                                            info drift, revoked only with exclusiveGrants
  exclusiveGrants                           only when true: every undeclared grant is revoked
  replicas {region: {alias, description, tags, keyState}}
  protect, deletionWindowDays               kept in state only, no AWS call
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from typing import Any

from reconciler import errors
from reconciler.aws import kms as kms_adapter
from reconciler.kinds import base, key_users, recovery
from reconciler.kinds import unmanaged as listing
from reconciler.kinds import vault as vault_kind
from reconciler.manifest import model as manifest
from reconciler.plan import actions as plan_actions
from reconciler.plan import diff
from reconciler.plan import model as plan_model
from reconciler.plan import planner, policydoc
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import model as state_model

KIND = "KmsProvider"
SYMMETRIC = "SYMMETRIC_DEFAULT"
REPLACE_ON = frozenset({"region", "keySpec", "usage", "multiRegion"})
LOCAL_ONLY = ("protect", "deletionWindowDays")
EXCLUSIVE = "exclusiveGrants"  # a setting kept in state only, and only when true
FOREIGN_GRANTS_NOTE = ("grants this stack did not create (AWS services such as EBS, RDS or Secrets Manager "
                       "make their own); reported, never revoked unless exclusiveGrants: true")
DEFAULT_ROTATION_DAYS = 365
TAG_PREFIX = "reconciler:"
STACK_TAG, ADDRESS_TAG, OPERATION_TAG = "reconciler:stack", "reconciler:address", "reconciler:operation"
ARNS = "arns"  # in ids: the key's ARN and its replicas', sorted
ADOPTED_AS = "adoptedAs"  # in ids: the keyId (id, ARN or alias) an adopted key was adopted by


def alias_name(name: str | None) -> str | None:
    if not name:
        return None
    return name if name.startswith("alias/") else f"alias/{name}"


def _rotation(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    enabled = bool((spec or {}).get("enabled"))
    return {"enabled": enabled,
            "periodDays": (spec or {}).get("periodDays", DEFAULT_ROTATION_DAYS) if enabled else None}


def _grants(spec: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {g["name"]: {"granteePrincipal": g["granteePrincipal"], "operations": sorted(g["operations"])}
            for g in spec}


def _live_grants(raw: list[Mapping[str, Any]],
                 ours: set[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grants on the key, by name (by id for unnamed ones): those named in
    ``ours`` (every grant when None: exclusiveGrants), and all others."""
    managed: dict[str, Any] = {}
    foreign: dict[str, Any] = {}
    for grant in raw:
        name = grant.get("Name") or f"grant-id:{grant['GrantId']}"
        shape = {"granteePrincipal": grant.get("GranteePrincipal"),
                 "operations": sorted(grant.get("Operations", []))}
        (managed if ours is None or name in ours else foreign)[name] = shape
    return managed, foreign


def _grant_scope(desired: plan_model.Desired | None,
                 entry: state_model.ResourceState | None) -> set[str] | None:
    """The grant names this stack manages on a key: declared now or recorded as
    declared before; None: every grant (exclusiveGrants)."""
    settings = desired.attributes if desired is not None else (entry.attributes if entry else {})
    if settings.get(EXCLUSIVE):
        return None
    names = set((desired.attributes.get("grants") or {}) if desired is not None else ())
    return names | set((entry.attributes.get("grants") or {}) if entry is not None else ())


def _pick_alias(aliases: list[str], wanted: tuple[str | None, ...], *, read_only: bool) -> str | None:
    """The alias attribute: the first of ``wanted`` (declared, then recorded) that
    points at this key; for a read-only key, else the first alias it has."""
    for alias in wanted:
        if alias and alias in aliases:
            return alias
    if read_only and aliases:
        return aliases[0]
    return None


class KmsProviderHandler:
    kind = KIND

    # -- pure ------------------------------------------------------------------
    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        region = config.region_of(resource)
        connection = {"region": region, "auth": dict(config.auth_of(resource))}
        if "keyId" in spec:
            lookup = {"keyId": spec["keyId"]}
            if not spec.get("manage"):
                return plan_model.Desired(KIND, resource.name, state_model.Mode.READ, {}, connection, lookup=lookup)
            attrs: dict[str, Any] = {"keyState": "Enabled"}
            for field in ("description", "tags", "policy"):
                if field in spec:
                    attrs[field] = spec[field]
            if "grants" in spec:
                attrs["grants"] = _grants(spec["grants"])
            if spec.get(EXCLUSIVE):
                attrs[EXCLUSIVE] = True
            if "alias" in spec:
                attrs["alias"] = alias_name(spec["alias"])
            if "rotation" in spec:
                attrs["rotation"] = _rotation(spec["rotation"])
            return plan_model.Desired(KIND, resource.name, state_model.Mode.ADOPTED, attrs, connection, lookup=lookup)

        key_spec = spec.get("spec", SYMMETRIC)
        per_key = {"alias": alias_name(spec.get("alias")), "description": spec.get("description", ""),
                   "tags": dict(spec.get("tags") or {}), "keyState": "Enabled"}
        attrs = {"region": region, "keySpec": key_spec, "usage": spec.get("usage", "ENCRYPT_DECRYPT"),
                 "multiRegion": bool(spec.get("multiRegion", False)), **per_key,
                 "protect": plan_model.protect_of(spec),
                 "deletionWindowDays": spec.get("deletionWindowDays", 30)}
        if key_spec == SYMMETRIC:
            attrs["rotation"] = _rotation(spec.get("rotation"))
        if "policy" in spec:
            attrs["policy"] = spec["policy"]
        if "grants" in spec:
            attrs["grants"] = _grants(spec["grants"])
        if spec.get(EXCLUSIVE):
            attrs[EXCLUSIVE] = True
        if attrs["multiRegion"]:
            attrs["replicas"] = {r: dict(per_key) for r in sorted(spec.get("replicaRegions") or [])}
        if "policy" not in spec and key_users.manages_users(config):  # a full policy is used as given
            attrs["keyUsers"] = key_users.desired_users(resource.name, config)
            for replica in (attrs.get("replicas") or {}).values():
                replica["keyUsers"] = attrs["keyUsers"]
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection,
                                  replace_on=REPLACE_ON, destroy_on=frozenset({"replicas"}))

    # -- reading -----------------------------------------------------------------
    def _read(self, aws: base.AwsContext, connection: Mapping[str, Any], key_id: str, *,
              wanted_alias: tuple[str | None, ...], with_policy: bool, with_grants: bool, read_only: bool,
              grant_scope: set[str] | None = None, with_users: bool = False, listed: bool = False,
              owned: bool = False) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
        """Live attributes and ids of a key (None, {} when it is gone), and the
        grants on it outside ``grant_scope``. ``listed``: aliases from the run's
        listing (``_aliases_of``), and for a key this stack made (``owned``:
        tagged as ours) its tags too (``_tags_of``), not per key."""
        kms = aws.kms(connection)
        meta = kms.describe_key(key_id)
        if meta is None:
            return None, {}, {}
        key_id = meta["KeyId"]
        attrs: dict[str, Any] = {
            "region": kms.region, "keySpec": meta.get("KeySpec", SYMMETRIC),
            "usage": meta.get("KeyUsage"), "multiRegion": bool(meta.get("MultiRegion", False)),
            "description": meta.get("Description", ""), "keyState": meta.get("KeyState"),
            "alias": _pick_alias(_aliases_of(aws, connection, kms, key_id, listed), wanted_alias,
                                 read_only=read_only),
            "tags": _user_tags(_tags_of(aws, connection, kms, meta, listed and owned)),
        }
        if attrs["keySpec"] == SYMMETRIC:
            enabled, period = kms.rotation(key_id)
            attrs["rotation"] = {"enabled": enabled, "periodDays": period if enabled else None}
        if with_policy:
            attrs["policy"] = kms.policy(key_id)
        if with_users:
            attrs["keyUsers"] = key_users.users_of(attrs["policy"] if with_policy else kms.policy(key_id))
        foreign: dict[str, Any] = {}
        if with_grants:
            attrs["grants"], foreign = _live_grants(kms.grants(key_id), None if read_only else grant_scope)
        mrc = meta.get("MultiRegionConfiguration") or {}
        ids: dict[str, Any] = {"keyId": key_id, "arn": meta["Arn"], ARNS: key_arns(meta)}
        if attrs["multiRegion"] and mrc.get("MultiRegionKeyType") == "PRIMARY":
            replicas: dict[str, Any] = {}
            for region in sorted({r["Region"] for r in mrc.get("ReplicaKeys", [])}):
                regional = aws.kms(connection, region)
                replica = regional.describe_key(key_id)
                if replica is None:
                    continue
                replicas[region] = {
                    "alias": _pick_alias(_aliases_of(aws, connection, regional, key_id, listed), wanted_alias,
                                         read_only=read_only),
                    "description": replica.get("Description", ""),
                    "tags": _user_tags(_tags_of(aws, connection, regional, replica, listed and owned)),
                    "keyState": replica.get("KeyState")}
                if with_users:
                    replicas[region]["keyUsers"] = key_users.users_of(regional.policy(key_id))
            attrs["replicas"] = replicas
        return attrs, ids, foreign

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        connection = dict(entry.connection)
        if desired is not None:
            connection["auth"] = desired.connection["auth"]
        wanted = (desired.attributes.get("alias") if desired else None, entry.attributes.get("alias"))
        def managed(field: str) -> bool:
            return entry.mode == "read" or field in entry.attributes or (
                desired is not None and field in desired.attributes)

        attrs, ids, foreign = self._read(aws, connection, entry.ids["keyId"], wanted_alias=wanted,
                                         with_policy=managed("policy"), with_grants=managed("grants"),
                                         with_users=entry.mode != "read" and managed("keyUsers"),
                                         read_only=entry.mode == "read",
                                         grant_scope=_grant_scope(desired, entry), listed=True,
                                         owned=entry.mode == "managed")
        if attrs is None:
            return planner.Refreshed(None)
        for field in (*LOCAL_ONLY, EXCLUSIVE):
            if field in entry.attributes:
                attrs[field] = entry.attributes[field]
        if entry.mode == "managed":  # a record written without it is protected, as the default says
            attrs[plan_model.PROTECT] = plan_model.protect_of(entry.attributes)
        moved: tuple[plan_model.DriftItem, ...] = ()
        if entry.mode == "read" and desired is not None:
            if _adopted_key(entry, desired) is None:  # keyId changed in the manifest: the key it names now
                ids = _named_key(aws, connection, desired.lookup["keyId"]) or ids
            moved = _alias_moved(aws, entry, desired)
        learned = {ARNS: ids.pop(ARNS)} if ARNS not in entry.ids else {}  # recorded before ids had them
        return planner.Refreshed(attrs, ids, info=(*_foreign_grants(entry.address, foreign), *moved),
                                 learned=learned)

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """An alias we would set that a key outside this stack holds refuses the
        plan (primary region and every replica region)."""
        alias = desired.attributes.get("alias")
        if not alias:
            return []
        ours, mine = _ours_in(aws), set()
        if entry is not None:
            mine.add(entry.ids["keyId"])
        elif desired.mode == "adopted":  # the key about to be adopted is ours
            meta = aws.kms(desired.connection).describe_key(desired.lookup["keyId"])
            if meta is not None:
                mine.add(meta["KeyId"])
        problems = []
        for region in [desired.connection["region"], *sorted(desired.attributes.get("replicas") or {})]:
            regional = aws.kms(desired.connection, region)
            holder = _alias_target(aws, desired.connection, regional, alias)
            if holder is None or holder in ours or holder in mine:
                continue
            owner = _owner(regional, holder, aws)
            if desired.mode == "managed" and owner == desired.address:
                continue  # the key this stack made for this address: the plan reads it in (find_owned)
            if owner:  # never taken from a key this stack's tags say it made for another address
                problems.append(f"{desired.address}: alias {alias} in {region} points at key {holder}, which this "
                                f"stack made for {owner} (its tags say so) but state does not record; an alias "
                                f"is never taken from a key the stack owns: restore the state, or declare "
                                f"{owner} again so the plan finds it")
                continue
            if entry is not None and _recorded_alias(entry, region) == alias:
                # ours once, moved out of band onto a key we do not manage: whoever moved it may
                # already encrypt through it, so taking it back is for a human to decide
                problems.append(f"{desired.address}: {kms_adapter.alias_moved_away(alias, region, holder, entry.ids['keyId'])}")
            else:
                problems.append(f"{desired.address}: {kms_adapter.alias_taken(alias, region, holder)}")
        return problems

    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        attrs, ids, foreign = self._read(aws, desired.connection, desired.lookup["keyId"],
                                         wanted_alias=(desired.attributes.get("alias"),), with_policy=True,
                                         with_grants=True, read_only=desired.mode == "read",
                                         grant_scope=_grant_scope(desired, None))
        if attrs is None:
            raise errors.AwsNotFound(f"the key to adopt, {desired.lookup['keyId']}, was not found in "
                                     f"{desired.connection['region']} (kms:DescribeKey: NotFoundException)",
                                     "NotFoundException")
        return planner.Refreshed(attrs, ids, info=_foreign_grants(desired.address, foreign))

    def find_owned(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed | None:
        """The key this stack made for the address (its reconciler:stack and
        reconciler:address tags), when state does not record it. Several (a
        state lost more than once): the one holding the alias, else an enabled
        one, else the oldest; the others are named (they still wrap data:
        never deleted by reconciler, see them with ``drift``)."""
        if desired.mode != "managed":
            return None
        tagged = aws.tagged_for_stack(desired.connection, ("kms:key",))
        ours = [arn for arn, tags in sorted(tagged.items()) if tags.get(ADDRESS_TAG) == desired.address]
        kms = aws.kms(desired.connection)
        metas = [m for m in (kms.describe_key(arn) for arn in ours)
                 if m is not None and (m.get("MultiRegionConfiguration") or {}).get("MultiRegionKeyType") != "REPLICA"]
        if not metas:
            return None
        alias = desired.attributes.get("alias")
        holder = kms.alias_target(alias) if alias else None

        def rank(meta: Mapping[str, Any]) -> tuple[int, int, str]:
            return (0 if meta["KeyId"] == holder else 1,
                    0 if meta.get("KeyState") not in ("PendingDeletion", "PendingReplicaDeletion") else 1,
                    str(meta.get("CreationDate", "")))

        chosen, *others = sorted(metas, key=rank)
        attrs, ids, foreign = self._read(
            aws, desired.connection, chosen["KeyId"], wanted_alias=(alias,),
            with_policy="policy" in desired.attributes, with_grants="grants" in desired.attributes,
            with_users="keyUsers" in desired.attributes, read_only=False,
            grant_scope=_grant_scope(desired, None))
        if attrs is None:
            return None
        for field in (*LOCAL_ONLY, EXCLUSIVE):
            if field in desired.attributes:
                attrs[field] = desired.attributes[field]
        also = (f"; {len(others)} other key(s) carry the same tags ({', '.join(m['KeyId'] for m in others)}) "
                "and are left as they are") if others else ""
        return planner.Refreshed(attrs, ids, info=_foreign_grants(desired.address, foreign),
                                 found_by=f"found key {chosen['KeyId']} by its tags ({STACK_TAG}={aws.stack}, "
                                          f"{ADDRESS_TAG}={desired.address}): read into state, not created "
                                          f"again{also}")

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        """A managed key state lacks: the one its tags name (``find_owned``).
        Adopt by ``keyId`` once; re-read an adopted key by the key id recorded
        then, never by its alias again: an alias moved out of band is drift, not
        a switch to another key under the vault's data."""
        if desired.mode == "managed" and "keyId" not in desired.lookup:  # not `reconciler import`
            found = self.find_owned(aws, desired)
            if found is None or found.attributes is None:
                raise errors.PlanError(f"{desired.address}: the key found by its tags at plan time is no longer "
                                       "found; run plan again")
            return state_model.ResourceState(KIND, desired.name, desired.mode, dict(found.ids),
                                             dict(found.attributes), desired.connection, desired.dependencies)
        adopted_as = desired.lookup["keyId"]
        recorded = _adopted_key(aws.state.resources.get(desired.address), desired)
        found = self.lookup(aws, desired if recorded is None else
                            dataclasses.replace(desired, lookup={"keyId": recorded}))
        ids = {**found.ids, ADOPTED_AS: adopted_as}
        return state_model.ResourceState(KIND, desired.name, desired.mode, ids, found.attributes or {},
                                         desired.connection, desired.dependencies)

    # -- writing -----------------------------------------------------------------
    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Journaled (SPEC 3): the intent is recorded, then CreateKey tags the key
        with the operation id, then the key is recorded and the entry closed in
        one state write; a run killed in between is found by ``recover``."""
        want = desired.attributes
        created = _as_created(want)
        journal = aws.begin(desired.address, state_model.Operation.CREATE, "create-key",
                            {"connection": dict(desired.connection), "attributes": created,
                             "dependencies": list(desired.dependencies)})
        kms = aws.kms(desired.connection)
        try:
            meta = kms.create_key(key_spec=want["keySpec"], usage=want["usage"],
                                  description=want["description"], multi_region=want["multiRegion"],
                                  tags={**want["tags"], **ownership(aws.stack, desired.address,
                                                                    journal.operation_id)},
                                  policy=want.get("policy"))
        except errors.AwsError:
            self._settle_failed(aws, journal)
            raise
        entry = state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED,
                                          {"keyId": meta["KeyId"], "arn": meta["Arn"], ARNS: [meta["Arn"]]},
                                          created, desired.connection, desired.dependencies)
        aws.settle(journal, entry)  # the key exists now: never lose track of it
        return self._converge(aws, desired, entry, dict(created), checkpoint)

    def _settle_failed(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> None:
        """After a failed CreateKey, look by the operation's tag now (a retried
        call may have made the key before the one that failed): record what
        was made, or roll the entry back; left open for the next plan when
        even the look-up fails."""
        try:
            outcome = self.recover(aws, journal)
        except errors.ReconcilerError:
            return
        aws.persist_outcome(outcome.applied(aws.state))

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """An interrupted create: the key its operation tagged, recorded as the
        resource (the plan then converges it), or nothing was created."""
        left_open = recovery.unless_create(journal, "key")
        if left_open is not None:
            return left_open
        what = recovery.what(journal)
        data = journal.data
        kms = aws.kms(data["connection"])
        found = kms.keys_tagged(OPERATION_TAG, journal.operation_id)
        if not found:
            return recovery.Recovery.rolled_back(journal, f"rolled back {what}: no key was created")
        metas = [m for m in map(kms.describe_key, found) if m is not None]
        if not metas:
            return recovery.Recovery.rolled_back(journal, f"rolled back {what}: no key was created")
        kind, name = journal.address.split("/", 1)

        def record(meta: Mapping[str, Any], attributes: Mapping[str, Any]) -> state_model.ResourceState:
            return state_model.ResourceState(kind, name, state_model.Mode.MANAGED,
                                             {"keyId": meta["KeyId"], "arn": meta["Arn"], ARNS: key_arns(meta)},
                                             dict(attributes), data["connection"],
                                             tuple(data.get("dependencies", ())))

        entry = record(metas[0], data["attributes"])
        # a retried CreateKey made more than one: the others are destroyed as deposed objects
        duplicates = tuple(record(m, {**data["attributes"], plan_model.PROTECT: False}) for m in metas[1:])
        extra = (f"; {len(duplicates)} duplicate key(s) made by the same operation are deposed, to be "
                 "scheduled for deletion") if duplicates else ""
        return recovery.Recovery.resumed(journal, entry, f"resuming {what}: found key {metas[0]['KeyId']}{extra}",
                                         duplicates)

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        return self._converge(aws, desired, entry, dict(change.before or entry.attributes), checkpoint)

    def replace(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """The successor key; the executor keeps ``entry`` as deposed until
        ``delete`` has scheduled its deletion."""
        return self.create(aws, desired, checkpoint)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        if entry.mode != "managed":
            return  # adopted keys are only forgotten
        self._schedule_deletion(aws, entry)

    def _schedule_deletion(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        if plan_model.protect_of(entry.attributes):
            raise errors.PlanError(f"{entry.address}: refusing to schedule deletion of a protected key")
        key_id = entry.ids["keyId"]
        days = int(entry.attributes.get("deletionWindowDays", 30))
        alias = entry.attributes.get("alias")
        regions = sorted((entry.attributes.get("replicas") or {}).keys())
        for region in [*regions, None]:
            kms = aws.kms(entry.connection, region)
            meta = kms.describe_key(key_id)
            if meta is None or meta.get("KeyState") in ("PendingDeletion", "PendingReplicaDeletion"):
                continue
            if alias and alias in kms.aliases_of(key_id):
                kms.delete_alias(alias)  # frees the name; a moved alias is left alone
            kms.schedule_deletion(key_id, days)

    def _converge(self, aws: base.AwsContext, desired: plan_model.Desired,
                  entry: state_model.ResourceState, current: dict[str, Any],
                  checkpoint: base.Checkpoint) -> state_model.ResourceState:
        want = desired.attributes
        key_id = entry.ids["keyId"]
        kms = aws.kms(desired.connection)
        ours = _ours_in(aws) | {key_id}
        _converge_key(kms, key_id, current, want, ours)
        if "rotation" in want and want["rotation"] != current.get("rotation"):
            kms.set_rotation(key_id, want["rotation"]["enabled"], want["rotation"]["periodDays"])
        if "policy" in want and not policydoc.equal(want["policy"], current.get("policy")):
            kms.put_policy(key_id, want["policy"])
        _converge_users(kms, key_id, entry, current, want)
        if "grants" in want and want["grants"] != current.get("grants"):
            scope = None if want.get(EXCLUSIVE) else set(want["grants"]) | set(current.get("grants") or {})
            _converge_grants(kms, key_id, want["grants"], scope)
        recorded = dict(want) if desired.mode == "managed" else {**current, **want}
        if "replicas" in want:
            have = dict(current.get("replicas") or {})
            for region, replica in sorted(want["replicas"].items()):
                regional = aws.kms(desired.connection, region)
                if region not in have:
                    kms.replicate_key(key_id, region, description=replica["description"],
                                      tags={**replica["tags"], **ownership(aws.stack, desired.address)},
                                      policy=want.get("policy"))
                    have[region] = {"alias": None, "description": replica["description"],
                                    "tags": replica["tags"], "keyState": "Enabled"}
                    checkpoint(dataclasses.replace(entry, attributes={**entry.attributes, "replicas": have}))
                _converge_key(regional, key_id, have[region], replica, ours)
                _converge_users(regional, key_id, entry, have[region], replica)
            for region in sorted(set(have) - set(want["replicas"])):
                if plan_model.protect_of(want):
                    raise errors.PlanError(f"{desired.address}: removing the replica in {region} schedules "
                                           "its deletion; set protect: false first")
                regional = aws.kms(desired.connection, region)
                regional.schedule_deletion(key_id, int(want.get("deletionWindowDays", 30)))
        if "replicas" in want:  # what an IamRole's grants name (plan/refs.py: KmsProvider/x#arns)
            entry = dataclasses.replace(entry, ids={**entry.ids, ARNS: sorted(
                [entry.ids["arn"], *(_replica_arn(entry.ids["arn"], r) for r in want["replicas"])])})
        elif desired.mode == state_model.Mode.MANAGED and ARNS not in entry.ids:  # recorded before ids had them
            entry = dataclasses.replace(entry, ids={**entry.ids, ARNS: [entry.ids["arn"]]})
        return dataclasses.replace(entry, mode=desired.mode, attributes=recorded,
                                   connection=desired.connection, dependencies=desired.dependencies)

    # -- drift --unmanaged --------------------------------------------------------
    def unmanaged(self, aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        """Keys tagged for this stack that state does not record, and keys whose
        alias sits under a prefix this stack's aliases use (``alias/team/``), in
        every region its keys and replicas live in. Keys pending deletion are
        left out: they are on their way out."""
        names = listing.recorded(prior)
        pairs: list[tuple[Mapping[str, Any], str]] = []
        prefixes: dict[str, set[str]] = {}
        for attributes, connection in listing.entries_of(KIND, desired, prior):
            regions = [str(attributes.get("region") or connection.get("region")),
                       *sorted(attributes.get("replicas") or {})]
            prefix = unmanaged_model.prefix_of(str(attributes.get("alias") or "").removeprefix("alias/"))
            for region in regions:
                pairs.append((connection, region))
                if prefix:
                    prefixes.setdefault(region, set()).add(f"alias/{prefix}")
        found: list[unmanaged_model.Unmanaged] = []
        for connection in listing.connections(aws, pairs):
            region = str(connection["region"])
            kms = aws.kms(connection)

            def live(key: str) -> Mapping[str, Any] | None:
                meta = kms.describe_key(key)
                if meta is None or meta.get("KeyState") in ("PendingDeletion", "PendingReplicaDeletion"):
                    return None
                return meta

            for arn, tags in sorted(aws.tagged_for_stack(connection, ("kms:key",)).items()):
                if arn in names or arn.rsplit("/", 1)[-1] in names or live(arn) is None:
                    continue
                found.append(listing.tagged_item(KIND, "kms:key", arn, region, tags, prior, aws.stack, "key"))
            under = sorted(prefixes.get(region, ()))
            if not under:
                continue
            for alias, target in sorted(kms.aliases().items()):
                prefix = next((p for p in under if alias.startswith(p)), None)
                if prefix is None or target in names:
                    continue
                meta = live(target)
                if meta is None or str(meta["Arn"]) in names:
                    continue
                found.append(unmanaged_model.Unmanaged(
                    KIND, "kms:key", str(meta["Arn"]), region, unmanaged_model.PREFIX,
                    f"alias {alias} is under {prefix}, a prefix this stack's aliases use; no resource in state "
                    "holds its key",
                    f"declare it and `reconciler import KmsProvider/NAME {alias}`, or leave it if another stack "
                    "owns it"))
        return found


def key_arns(meta: Mapping[str, Any]) -> list[str]:
    """The ARN of a key and, for a multi-Region primary, of every replica, sorted
    (as policy documents list them): what a grant on the key must name."""
    mrc = meta.get("MultiRegionConfiguration") or {}
    replicas = [r["Arn"] for r in mrc.get("ReplicaKeys", [])] if mrc.get("MultiRegionKeyType") == "PRIMARY" else []
    return sorted({str(meta["Arn"]), *map(str, replicas)})


def _replica_arn(arn: str, region: str) -> str:
    """A multi-Region replica's ARN: the primary's, in the replica's region (one key id)."""
    parts = arn.split(":")
    return ":".join([*parts[:3], region, *parts[4:]])


def ownership(stack: str, address: str, operation: str = "") -> dict[str, str]:
    """The tags naming who made a key (SPEC 3): stack, address, creating operation."""
    tags = {STACK_TAG: stack, ADDRESS_TAG: address}
    if operation:
        tags[OPERATION_TAG] = operation
    return tags


# -- the run's listings (plan time: kinds/context.py ``listed``) ------------------------
AliasIndex = tuple[dict[str, str], dict[str, list[str]]]  # alias -> key id, key id -> its aliases (sorted)


def _alias_index(aws: base.AwsContext, connection: Mapping[str, Any],
                 kms: kms_adapter.KmsAdapter) -> AliasIndex | None:
    """Every alias of ``kms``'s region, listed once per run (None during apply)."""
    def load() -> AliasIndex:
        table = kms.alias_table()
        by_key: dict[str, list[str]] = {}
        for alias, key in sorted(table.items()):
            by_key.setdefault(key, []).append(alias)
        return table, by_key
    return aws.listed("kms:ListAliases", [kms.region, connection.get("auth")], load)


def _aliases_of(aws: base.AwsContext, connection: Mapping[str, Any], kms: kms_adapter.KmsAdapter,
                key_id: str, listed: bool) -> list[str]:
    """The aliases of a key: from the region's listing when ``listed``, else ListAliases for the key."""
    index = _alias_index(aws, connection, kms) if listed else None
    if index is None:
        return kms.aliases_of(key_id)
    return list(index[1].get(key_id, []))


def _alias_target(aws: base.AwsContext, connection: Mapping[str, Any], kms: kms_adapter.KmsAdapter,
                  alias: str) -> str | None:
    """The key an alias points at (the region's listing at plan time, else DescribeKey)."""
    index = _alias_index(aws, connection, kms)
    if index is None:
        return kms.alias_target(alias)
    return index[0].get(alias)


def _tags_of(aws: base.AwsContext, connection: Mapping[str, Any], kms: kms_adapter.KmsAdapter,
             meta: Mapping[str, Any], listed: bool) -> dict[str, str]:
    """A key's tags: when ``listed`` and the key carries this stack's tag, from
    the run's Resource Groups Tagging API listing (one page per 100 keys);
    any other key (adopted, read-only, its stack tag removed) by ListResourceTags."""
    if listed and aws.persist is None:
        found = aws.tagged_for_stack(connection, ("kms:key",), kms.region).get(str(meta["Arn"]))
        if found is not None:
            return dict(found)
    return kms.tags(str(meta["KeyId"]))


def _user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags the manifest manages: ours (``reconciler:*``) are never drift."""
    return {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)}


def _as_created(want: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a new key has once CreateKey returns (what it was given)."""
    created = {field: want[field] for field in ("region", "keySpec", "usage", "multiRegion",
                                                "description", "tags", *LOCAL_ONLY)}
    created.update(alias=None, keyState="Enabled")
    if "rotation" in want:
        created["rotation"] = _rotation(None)
    if "policy" in want:
        created["policy"] = want["policy"]
    if "grants" in want:
        created["grants"] = {}
    if "keyUsers" in want:
        created["keyUsers"] = {}
    if want["multiRegion"]:
        created["replicas"] = {}
    return created


def _adopted_as(entry: state_model.ResourceState | None, desired: plan_model.Desired) -> str:
    """What ``keyId`` named when the key was adopted (older states: the manifest's)."""
    return str((entry.ids.get(ADOPTED_AS) if entry else None) or desired.lookup["keyId"])


def _adopted_key(entry: state_model.ResourceState | None, desired: plan_model.Desired) -> str | None:
    """The key id recorded at adoption, while the manifest's ``keyId`` still names
    what was adopted then (a changed ``keyId`` adopts again)."""
    if entry is None or entry.mode != desired.mode or not entry.ids.get("keyId"):
        return None
    if _adopted_as(entry, desired) != desired.lookup["keyId"]:
        return None
    return str(entry.ids["keyId"])


def _named_key(aws: base.AwsContext, connection: Mapping[str, Any], key_id: str) -> dict[str, Any] | None:
    """The ids of the key ``key_id`` (an id, ARN or alias) names, if it exists."""
    meta = aws.kms(connection).describe_key(key_id)
    return {"keyId": meta["KeyId"], "arn": meta["Arn"]} if meta is not None else None


def _alias_moved(aws: base.AwsContext, entry: state_model.ResourceState,
                 desired: plan_model.Desired | None) -> tuple[plan_model.DriftItem, ...]:
    """A read-only key adopted by an alias that now points elsewhere: drift, for
    as long as it lasts (this stack keeps the key it recorded)."""
    if desired is None or _adopted_key(entry, desired) is None:
        return ()
    alias = _adopted_as(entry, desired)
    if not alias.startswith("alias/"):
        return ()
    recorded = str(entry.ids["keyId"])
    holder = aws.kms(entry.connection).alias_target(alias)
    if holder == recorded:
        return ()
    where = f"now points at key {holder}" if holder else "no longer exists"
    note = (f"keyId {alias} {where}; this stack keeps using key {recorded}, recorded at adoption "
            f"(set keyId to the key id you mean to use)")
    return (plan_model.DriftItem(entry.address, "warning",
                                 (diff.AttributeChange(f"keyId({alias})", recorded, holder),), note=note),)


def _owner(kms: kms_adapter.KmsAdapter, key_id: str, aws: base.AwsContext) -> str:
    """The address this stack's tags (its name or a former one) say the key was
    made for ("" when not this stack's)."""
    try:
        tags = kms.tags(key_id)
    except (errors.AwsNotFound, errors.AwsAccessDenied):
        return ""  # gone meanwhile, or another team's key whose tags we may not read
    return tags.get(ADDRESS_TAG, "") if aws.ours(tags.get(STACK_TAG, "")) else ""


def _ours(state: state_model.State) -> set[str]:
    """Ids of the keys this stack manages (its own, adopted with manage: true,
    and deposed ones): an alias on one of them is ours to move."""
    entries = [*state.resources.values(), *(d.resource for ds in state.deposed.values() for d in ds)]
    return {str(e.ids["keyId"]) for e in entries
            if e.kind == KIND and e.mode in ("managed", "adopted") and e.ids.get("keyId")}


def _ours_in(aws: base.AwsContext) -> frozenset[str]:
    """``_ours(aws.state)``, computed once per state (each key's check asks: not per key)."""
    return aws.keyring.per_state(aws.state, "kms.ours", lambda: frozenset(_ours(aws.state)))


def _recorded_alias(entry: state_model.ResourceState, region: str) -> str | None:
    """The alias state records on ``entry``'s key in ``region`` (primary or replica)."""
    if region == entry.connection.get("region"):
        return entry.attributes.get("alias")
    return ((entry.attributes.get("replicas") or {}).get(region) or {}).get("alias")


def _converge_key(kms: kms_adapter.KmsAdapter, key_id: str, current: Mapping[str, Any],
                  want: Mapping[str, Any], ours: Set[str]) -> None:
    """Bring one key (primary or replica) from ``current`` to ``want`` for the
    per-key attributes ``want`` names."""
    state = current.get("keyState")
    if "keyState" in want and state != want["keyState"]:
        if state == "PendingDeletion":
            kms.cancel_deletion(key_id)  # leaves the key Disabled, as AWS does
        kms.enable(key_id)
    if "description" in want and want["description"] != current.get("description"):
        kms.update_description(key_id, want["description"])
    if "tags" in want and want["tags"] != current.get("tags"):
        have = current.get("tags") or {}
        kms.untag(key_id, sorted(k for k in have if k not in want["tags"]))
        kms.tag(key_id, {k: v for k, v in want["tags"].items() if have.get(k) != v})
    if "alias" in want and want["alias"] != current.get("alias"):
        if want["alias"]:
            kms.set_alias(want["alias"], key_id, movable_from=ours)
        if current.get("alias") and kms.alias_target(current["alias"]) == key_id:
            kms.delete_alias(current["alias"])  # only while it is still this key's


def _converge_users(kms: kms_adapter.KmsAdapter, key_id: str, entry: state_model.ResourceState,
                    current: Mapping[str, Any], want: Mapping[str, Any]) -> None:
    """The key-user statements of one key (primary or replica), composed into
    its live policy: other statements kept, the account-root one ensured."""
    if "keyUsers" not in want or want["keyUsers"] == current.get("keyUsers"):
        return
    account = key_users.account_of(str(entry.ids["arn"]))
    kms.put_policy(key_id, key_users.compose(kms.policy(key_id), want["keyUsers"], account))


def _foreign_grants(address: str, foreign: Mapping[str, Any]) -> tuple[plan_model.DriftItem, ...]:
    """Grants this stack does not manage, as info drift (they are nobody's mistake)."""
    if not foreign:
        return ()
    changes = tuple(diff.AttributeChange(f"grants.{name}", None, shape)
                    for name, shape in sorted(foreign.items()))
    return (plan_model.DriftItem(address, "info", changes, note=FOREIGN_GRANTS_NOTE),)


def _converge_grants(kms: kms_adapter.KmsAdapter, key_id: str, want: Mapping[str, Any],
                     scope: set[str] | None) -> None:
    """Revoke the grants in ``scope`` (every grant when None: exclusiveGrants)
    that are not declared or differ, then create the missing ones. A grant
    outside the scope (say, one an AWS service made) is never touched."""
    kept: set[str] = set()
    for grant in kms.grants(key_id):
        name = str(grant.get("Name") or "")
        shape = {"granteePrincipal": grant.get("GranteePrincipal"),
                 "operations": sorted(grant.get("Operations", []))}
        if name in want and want[name] == shape and name not in kept:
            kept.add(name)
            continue
        if scope is not None and (not name or name not in scope):
            continue
        kms.revoke_grant(key_id, grant["GrantId"])
    for name, grant in sorted(want.items()):
        if name not in kept:
            kms.create_grant(key_id, name, grant["granteePrincipal"], grant["operations"])


# -- plan rules (pure: the planner calls them through plan.rules.Rules) ---------------------
DELETION_NOTE = ("the key is scheduled for deletion in {days} days, never deleted outright; "
                 "cancel with `aws kms cancel-key-deletion` within the window")
REPLACE_NOTE = "a new key is created first; the old one is then scheduled for deletion"
NO_ARN_NOTE = ("kms:ListAliases and kms:ListKeys take no resource ARN in AWS (Resource \"*\"); "
               "ListKeys only finds a key an interrupted create made")
FIND_OWNED_NOTE = ("tag:GetResources takes no resource ARN (Resource \"*\"): it finds the objects this stack "
                   "made (its reconciler:stack tag) when state does not record them, instead of making duplicates")
CREATE_NOTE = ("kms:CreateKey takes no resource ARN (the key does not exist yet): scoped instead by key spec, "
               "usage, multi-Region and the reconciler:address tag every key is created with")
TAG_AT_CREATION_NOTE = ("CreateKey and ReplicateKey with Tags are authorized as kms:TagResource on the request, "
                        "before the key has an ARN: Resource \"*\", scoped by the tags requested")
NEW_KEY_NOTE = ("a key not yet in state has no ARN to name: any key of the region that carries this "
                "address's reconciler:address tag")


def _in_region(arn: str, region: str) -> str:
    """A multi-Region key's ARN in another region (replicas share the key id)."""
    parts = arn.split(":")
    return ":".join([*parts[:3], region, *parts[4:]])


def key_scope(desired: plan_model.Desired, prior: state_model.State,
               ) -> tuple[tuple[str, ...], tuple[plan_rules.Condition, ...]]:
    """The key's ARNs (primary and replicas): exact when state records the key
    or keyId names it; an adopted key named by alias, by the aliases it
    carries (kms:ResourceAliases); a key still to create, by its ownership tag."""
    region = str(desired.connection.get("region") or "*")
    replicas = sorted(desired.attributes.get("replicas") or {})
    entry = prior.resources.get(desired.address)
    if entry is not None and entry.ids.get("arn"):
        arn = str(entry.ids["arn"])
        return (arn, *(_in_region(arn, r) for r in replicas)), ()
    if desired.mode != "managed":
        key_id = str(desired.lookup["keyId"])
        if key_id.startswith("arn:"):
            return (key_id,), ()
        if key_id.startswith("alias/"):
            # the calls after DescribeKey name the key by id: scope by the alias it carries
            return (f"arn:aws:kms:{region}:*:key/*",), (("ForAnyValue:StringEquals", "kms:ResourceAliases",
                                                         (key_id,)),)
        return (f"arn:aws:kms:{region}:*:key/{key_id}",), ()
    return (tuple(f"arn:aws:kms:{r}:*:key/*" for r in [region, *replicas]),
            (("StringEquals", f"aws:ResourceTag/{ADDRESS_TAG}", (desired.address,)),))


def _key_actions(desired: plan_model.Desired) -> tuple[str, ...]:
    """The calls refresh and converge make on the key, for the attributes it manages."""
    attrs = desired.attributes
    if desired.mode == "read":
        return ("kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListGrants",
                "kms:ListResourceTags")
    wanted = ["kms:DescribeKey", "kms:ListResourceTags", "kms:EnableKey", "kms:CancelKeyDeletion"]
    if attrs.get("keySpec", SYMMETRIC) == SYMMETRIC:
        wanted.append("kms:GetKeyRotationStatus")  # every refresh of a symmetric key reads its rotation
    if desired.mode == "adopted":
        wanted.extend(("kms:GetKeyPolicy", "kms:ListGrants"))  # adoption reads (and records) both
    by_attribute = {"tags": ("kms:TagResource", "kms:UntagResource"), "description": ("kms:UpdateKeyDescription",),
                    "rotation": ("kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:DisableKeyRotation"),
                    "policy": ("kms:GetKeyPolicy", "kms:PutKeyPolicy"),
                    "grants": ("kms:ListGrants", "kms:CreateGrant", "kms:RevokeGrant"),
                    "keyUsers": ("kms:GetKeyPolicy", "kms:PutKeyPolicy"),
                    "alias": ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias")}
    for field, actions in by_attribute.items():
        if attrs.get(field) is not None:
            wanted.extend(actions)
    if desired.mode == "managed" and not plan_model.protect_of(attrs):
        wanted.append("kms:ScheduleKeyDeletion")  # a protected key is never scheduled for deletion
    return tuple(dict.fromkeys(wanted))


def _create_permission(desired: plan_model.Desired) -> plan_rules.Permission:
    attrs = desired.attributes
    return plan_rules.Permission(
        ("kms:CreateKey",), ("*",),
        (("Bool", "kms:MultiRegion", ("true" if attrs.get("multiRegion") else "false",)),
         ("StringEquals", "aws:RequestTag/" + ADDRESS_TAG, (desired.address,)),
         ("StringEquals", "kms:KeySpec", (str(attrs.get("keySpec", SYMMETRIC)),)),
         ("StringEquals", "kms:KeyUsage", (str(attrs.get("usage", "ENCRYPT_DECRYPT")),))), CREATE_NOTE)


def _tag_at_creation(desired: plan_model.Desired, *, key: bool, replicas: list[str]) -> plan_rules.Permission:
    """The Tags of CreateKey (``key``) and ReplicateKey (``replicas``) are
    authorized as kms:TagResource on the request, before any key ARN exists:
    Resource "*", narrowed to requests tagging this address with exactly the
    tag keys the manifest sets."""
    attrs = desired.attributes
    names = set(ownership("", desired.address)) | ({OPERATION_TAG} if key else set())
    if key:
        names.update(attrs.get("tags") or {})
    for region in replicas:
        names.update(((attrs.get("replicas") or {}).get(region) or {}).get("tags") or {})
    return plan_rules.Permission(
        ("kms:TagResource",), ("*",),
        (("StringEquals", "aws:RequestTag/" + ADDRESS_TAG, (desired.address,)),
         ("ForAllValues:StringEquals", "aws:TagKeys", tuple(sorted(names)))), TAG_AT_CREATION_NOTE)


def _creates_key(desired: plan_model.Desired, prior: state_model.State) -> bool:
    """Whether apply may call CreateKey for ``desired``: a key not in state, one
    replaced (an attribute that forces a new key changed), or a create the
    journal still has open (recovery looks for the key it made)."""
    entry = prior.resources.get(desired.address)
    if entry is None or any(j.address == desired.address and j.operation is state_model.Operation.CREATE
                            for j in prior.journal):
        return True
    return any(field in desired.attributes and field in entry.attributes
               and desired.attributes[field] != entry.attributes[field] for field in REPLACE_ON)


def _on_key(desired: plan_model.Desired, keys: tuple[str, ...], conditions: tuple[plan_rules.Condition, ...],
            note: str) -> list[plan_rules.Permission]:
    """What refresh and converge do to the key named by ``keys`` and ``conditions``."""
    found = [plan_rules.Permission(_key_actions(desired), keys, conditions, note)]
    replicas = sorted(desired.attributes.get("replicas") or {})
    if replicas and desired.mode == "managed":
        found.append(plan_rules.Permission(("kms:ReplicateKey",), keys[:1],
                                           (*conditions, ("StringEquals", "kms:ReplicaRegion", tuple(replicas)))))
    return found


def key_permissions(desired: plan_model.Desired, prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
    """Every call plan and apply make for one KmsProvider, least privilege."""
    keys, conditions = key_scope(desired, prior)
    entry = prior.resources.get(desired.address)
    found = [plan_rules.Permission(("kms:ListAliases",), ("*",), (), NO_ARN_NOTE),
             *_on_key(desired, keys, conditions, NEW_KEY_NOTE if conditions else "")]
    if desired.mode == "read":
        return tuple(found)
    region = str(desired.connection.get("region") or "*")
    replicas = sorted(desired.attributes.get("replicas") or {})
    if desired.mode == "managed":
        recorded = set((entry.attributes.get("replicas") or {}) if entry is not None else ())
        creates = _creates_key(desired, prior)
        if creates and entry is not None:  # the successor of a replaced key: named by its tag until recorded
            found.extend(_on_key(desired, *key_scope(desired, dataclasses.replace(
                prior, resources={a: r for a, r in prior.resources.items() if a != desired.address})),
                NEW_KEY_NOTE))
        new_replicas = replicas if creates else sorted(set(replicas) - recorded)
        if creates or new_replicas:  # a new key, or a replica to create in another region
            found.append(_create_permission(desired))
            found.append(_tag_at_creation(desired, key=creates, replicas=new_replicas))
        if creates:  # recovery of an interrupted create lists the region's keys
            found.append(plan_rules.Permission(("kms:ListKeys",), ("*",), (), NO_ARN_NOTE))
        if entry is None or entry.mode == "managed":  # a key state lacks is first looked for by its tags
            found.append(plan_rules.Permission(("tag:GetResources",), ("*",), (), FIND_OWNED_NOTE))
    aliases = {str(a) for a in [desired.attributes.get("alias"),
                                *(entry.attributes.get("alias") for entry in [entry] if entry is not None)] if a}
    for alias in sorted(aliases):  # the alias set, and the one recorded before (moved or deleted)
        found.append(plan_rules.Permission(("kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"),
                                           tuple(f"arn:aws:kms:{r}:*:{alias}" for r in [region, *replicas])))
    return tuple(found)


def _vault_users(address: str, desired: Mapping[str, plan_model.Desired]) -> list[str]:
    return sorted(w.address for w in desired.values()
                  if w.kind == vault_kind.KIND and f"{KIND}/{w.attributes.get('provider')}" == address)


def _still_wrapped(change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> list[str]:
    """A key that kept secret versions still need (an interrupted re-wrap, or
    versions recorded before every version was re-wrapped) is not destroyed:
    deletes run after every re-wrap and move of the plan, replaces before them."""
    entry = context.prior.resources.get(change.address)
    if entry is None or not entry.ids.get("arn"):
        return []
    key = str(entry.ids["arn"]).rsplit("/", 1)[-1]
    deleting = change.action is plan_actions.Action.DELETE
    moving = vault_kind.moving_away(context.changes, context.prior) if deleting else set()
    needs = {s.address: n for s in context.prior.resources.values()
             if s.kind == "Secret" and s.address not in moving
             and (n := vault_kind.kept_by_key(s, context.prior).get(key, 0))}
    if not needs:
        return []
    total = sum(needs.values())
    which = ", ".join(f"{a} ({n})" for a, n in sorted(needs.items())[:5]) + (", ..." if len(needs) > 5 else "")
    what = "destroyed" if deleting else "replaced"
    return [f"{change.address}: the key still wraps {total} kept secret version{'s' if total != 1 else ''} "
            f"({which}); it cannot be {what} until they are re-wrapped under another key (apply the "
            "vault's provider change first: it re-wraps every kept version)"]


class KmsRules(plan_rules.Rules):
    """Keys are replaced new-first and only ever scheduled for deletion; a key
    that wraps a vault's data, or kept secret versions, is never destroyed."""

    noun = "key"
    offers_protect = True

    def claims(self, change: plan_model.ResourceChange) -> frozenset[str]:
        """The aliases the key holds or takes, before and after, in any of its
        regions (by name alone: two keys of one name in different regions
        merely wait for each other): moving an alias from one key to another
        is two changes, which must not race (the one letting go deletes the
        alias only while it is still its own)."""
        found: set[str] = set()
        for attributes in (change.before, change.after):
            if not attributes:
                continue
            found.add(str(attributes.get("alias") or ""))
            for replica in (attributes.get("replicas") or {}).values():
                if isinstance(replica, Mapping):
                    found.add(str(replica.get("alias") or ""))
        return frozenset(f"kms-alias:{alias}" for alias in found if alias)

    def ids_changed_by(self, change: plan_model.ResourceChange) -> frozenset[str]:
        """Adding or removing a replica changes the key's ARNs (primary + replicas)."""
        replicas = any(c.top == "replicas" and "." not in c.path.removeprefix("replicas.")
                       for c in change.changes)
        return frozenset({"arns"}) if replicas else frozenset()
    replace_order = plan_actions.Action.CREATE_THEN_DELETE  # the successor exists before the old key goes
    protected_replace_hint = ("replacing it would schedule the old key's deletion. Declare a new KmsProvider "
                              "instead, or set protect: false and apply with --allow-destroy")

    def review(self, change: plan_model.ResourceChange, context: plan_rules.PlanContext) -> plan_rules.Review:
        notes: list[str] = []
        problems: list[str] = []
        managed = change.mode == "managed"
        match change.action:
            case plan_actions.Action.DELETE if managed:
                days = (change.before or {}).get("deletionWindowDays", 30)
                notes.append(DELETION_NOTE.format(days=days))
            case plan_actions.Action.CREATE_THEN_DELETE | plan_actions.Action.DELETE_THEN_CREATE:
                notes.append(REPLACE_NOTE)
            case (plan_actions.Action.DELETE | plan_actions.Action.NOOP | plan_actions.Action.CREATE
                  | plan_actions.Action.READ | plan_actions.Action.UPDATE | plan_actions.Action.ROTATE
                  | plan_actions.Action.REVOKE):
                pass
        if managed and not change.deposed and change.action in (
                plan_actions.Action.DELETE, plan_actions.Action.CREATE_THEN_DELETE,
                plan_actions.Action.DELETE_THEN_CREATE):
            users = _vault_users(change.address, context.desired)
            if users:
                problems.append(f"{change.address}: the key wraps the data of {', '.join(users)}; it cannot be "
                                "destroyed or replaced while a vault uses it (move the vault to another "
                                "provider first: that re-wraps its secrets)")
            else:
                problems.extend(_still_wrapped(change, context))
        return plan_rules.Review(tuple(notes), tuple(problems))

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        """A key (or replica) no longer Enabled breaks everything it wraps."""
        if path.endswith("keyState") and after != "Enabled":
            return plan_rules.Severity.CRITICAL
        return plan_rules.Severity.WARNING

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        return key_permissions(desired, prior)

RULES = KmsRules()

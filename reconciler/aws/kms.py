"""The KMS adapter: every KMS call reconciler makes, errors translated."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import adapter


ALIAS_PAGE = 100  # ListAliases returns at most 100 aliases a page


class KmsAdapter(adapter.Adapter):
    service = "kms"

    # -- reading -------------------------------------------------------------
    def describe_key(self, key_id: str) -> Mapping[str, Any] | None:
        """The key's metadata, or None if there is no such key."""
        try:
            return self._call("DescribeKey", KeyId=key_id)["KeyMetadata"]
        except errors.AwsNotFound:
            return None

    def aliases_of(self, key_id: str) -> list[str]:
        return sorted(a["AliasName"] for a in self._pages("ListAliases", "Aliases", KeyId=key_id))

    def alias_table(self) -> dict[str, str]:
        """Every alias of the region that points at a key -> that key's id: one
        ListAliases page per 100 aliases, for the whole region."""
        return {str(a["AliasName"]): str(a["TargetKeyId"])
                for a in self._pages("ListAliases", "Aliases", largest_page=ALIAS_PAGE) if a.get("TargetKeyId")}

    def rotation(self, key_id: str) -> tuple[bool, int | None]:
        status = self._call("GetKeyRotationStatus", KeyId=key_id)
        return bool(status.get("KeyRotationEnabled")), status.get("RotationPeriodInDays")

    def policy(self, key_id: str) -> dict[str, Any]:
        text = self._call("GetKeyPolicy", KeyId=key_id, PolicyName="default")["Policy"]
        return json.loads(text)

    def tags(self, key_id: str) -> dict[str, str]:
        return {t["TagKey"]: t["TagValue"] for t in self._pages("ListResourceTags", "Tags", KeyId=key_id)}

    def keys_tagged(self, tag: str, value: str) -> list[str]:
        """Ids of the keys in this region carrying ``tag: value`` (ListKeys, then
        ListResourceTags per key: only for an interrupted create, so rare). A key
        whose tags this identity may not read (another team's: AccessDenied) is
        not one this stack made, whose tags its policy lets it read: skipped."""
        found = []
        for key in self._pages("ListKeys", "Keys"):
            try:
                if self.tags(key["KeyId"]).get(tag) == value:
                    found.append(str(key["KeyId"]))
            except (errors.AwsNotFound, errors.AwsAccessDenied):
                continue  # deleted meanwhile, or not ours
        return found

    def aliases(self) -> dict[str, str]:
        """Every alias of this region that names a key: alias name -> target key id."""
        return {str(a["AliasName"]): str(a["TargetKeyId"]) for a in self._pages("ListAliases", "Aliases")
                if a.get("TargetKeyId")}

    def grants(self, key_id: str) -> list[Mapping[str, Any]]:
        return self._pages("ListGrants", "Grants", KeyId=key_id)

    # -- writing -------------------------------------------------------------
    def create_key(self, *, key_spec: str, usage: str, description: str, multi_region: bool,
                   tags: Mapping[str, str], policy: Mapping[str, Any] | None) -> Mapping[str, Any]:
        params: dict[str, Any] = dict(KeySpec=key_spec, KeyUsage=usage, Description=description,
                                      MultiRegion=multi_region, Tags=_tag_list(tags))
        if policy:
            params["Policy"] = json.dumps(policy)
        return self._call("CreateKey", **params)["KeyMetadata"]

    def replicate_key(self, key_id: str, replica_region: str, *, description: str,
                      tags: Mapping[str, str], policy: Mapping[str, Any] | None) -> Mapping[str, Any]:
        params: dict[str, Any] = dict(KeyId=key_id, ReplicaRegion=replica_region,
                                      Description=description, Tags=_tag_list(tags))
        if policy:
            params["Policy"] = json.dumps(policy)
        return self._call("ReplicateKey", **params)["ReplicaKeyMetadata"]

    def alias_target(self, alias: str) -> str | None:
        """The id of the key ``alias`` points at in this region, or None if no such alias."""
        meta = self.describe_key(alias)
        return str(meta["KeyId"]) if meta is not None else None

    def set_alias(self, alias: str, key_id: str, *, movable_from: Collection[str]) -> None:
        """Point ``alias`` at ``key_id``: create it, or move it from a key in
        ``movable_from`` (keys this stack manages). An alias on any other key is
        never taken over, not even one state records as ours that was moved out
        of band: apps using it would switch keys silently."""
        for _attempt in range(2):
            try:
                self._call("CreateAlias", AliasName=alias, TargetKeyId=key_id)
                return
            except errors.AwsError as exc:
                if exc.code != "AlreadyExistsException":
                    raise
            holder = self.alias_target(alias)
            if holder == key_id:
                return
            if holder is None:
                continue  # deleted meanwhile: create it
            if holder not in movable_from:
                raise errors.AwsError(alias_taken(alias, self.region, holder), "AlreadyExistsException")
            self._call("UpdateAlias", AliasName=alias, TargetKeyId=key_id)
            return
        raise errors.AwsError(f"alias {alias} in {self.region} keeps changing underneath this run; "
                              "run apply again", "AlreadyExistsException")

    def delete_alias(self, alias: str) -> None:
        try:
            self._call("DeleteAlias", AliasName=alias)
        except errors.AwsNotFound:
            pass

    def update_description(self, key_id: str, description: str) -> None:
        self._call("UpdateKeyDescription", KeyId=key_id, Description=description)

    def set_rotation(self, key_id: str, enabled: bool, period_days: int | None) -> None:
        if enabled:
            params: dict[str, Any] = {"KeyId": key_id}
            if period_days:
                params["RotationPeriodInDays"] = period_days
            self._call("EnableKeyRotation", **params)
        else:
            self._call("DisableKeyRotation", KeyId=key_id)

    def put_policy(self, key_id: str, policy: Mapping[str, Any]) -> None:
        self._call("PutKeyPolicy", KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))

    def tag(self, key_id: str, tags: Mapping[str, str]) -> None:
        if tags:
            self._call("TagResource", KeyId=key_id, Tags=_tag_list(tags))

    def untag(self, key_id: str, keys: list[str]) -> None:
        if keys:
            self._call("UntagResource", KeyId=key_id, TagKeys=keys)

    def create_grant(self, key_id: str, name: str, grantee: str, operations: list[str]) -> None:
        self._call("CreateGrant", KeyId=key_id, Name=name, GranteePrincipal=grantee, Operations=operations)

    def revoke_grant(self, key_id: str, grant_id: str) -> None:
        self._call("RevokeGrant", KeyId=key_id, GrantId=grant_id)

    def enable(self, key_id: str) -> None:
        self._call("EnableKey", KeyId=key_id)

    def cancel_deletion(self, key_id: str) -> None:
        self._call("CancelKeyDeletion", KeyId=key_id)

    def schedule_deletion(self, key_id: str, days: int) -> str:
        result = self._call("ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=days)
        return str(result.get("DeletionDate", ""))


def alias_taken(alias: str, region: str, holder: str) -> str:
    """Why an alias cannot be ours: it names the key that holds it and the ways out."""
    return (f"alias {alias} in {region} already points at key {holder}, which this stack does not "
            f"manage; adopt that key (keyId: {alias} with manage: true, or `reconciler import`) or "
            "choose another alias")


def alias_moved_away(alias: str, region: str, holder: str, ours: str) -> str:
    """An alias this stack set, moved out of band onto a key it does not manage."""
    return (f"alias {alias} in {region} was set by this stack on key {ours} but now points at key "
            f"{holder}, which this stack does not manage (moved outside reconciler; whatever encrypts "
            f"through the alias now uses {holder}). If that move was a mistake, point it back "
            f"(`aws kms update-alias --alias-name {alias} --target-key-id {ours} --region {region}`); "
            "otherwise choose another alias for this key")


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in sorted(tags.items())]



class KmsCrypto:
    """The cryptographic KMS calls, on top of an adapter."""

    def __init__(self, adapter: KmsAdapter) -> None:
        self.adapter = adapter

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        out = self.adapter._call("GenerateDataKey", KeyId=key_id, KeySpec="AES_256", EncryptionContext=dict(context))
        return out["Plaintext"], out["CiphertextBlob"]

    def public_key(self, key_id: str) -> bytes:
        return self.adapter._call("GetPublicKey", KeyId=key_id)["PublicKey"]

    def decrypt(self, blob: bytes, key_id: str, *, context: Mapping[str, str] | None = None,
                algorithm: str | None = None) -> bytes:
        params: dict[str, Any] = {"CiphertextBlob": blob, "KeyId": key_id}
        if context:
            params["EncryptionContext"] = dict(context)
        if algorithm:
            params["EncryptionAlgorithm"] = algorithm
        return self.adapter._call("Decrypt", **params)["Plaintext"]

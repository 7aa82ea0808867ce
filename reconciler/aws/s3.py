"""The S3 store: one JSON object per secret under bucket/prefix holding its
kept versions, replaced with conditional writes (If-Match on the ETag read,
If-None-Match for a new entry) so two writers never lose a version."""

from __future__ import annotations

from reconciler import errors
from reconciler.aws import adapter
from reconciler.stores import base


PRECONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict")


class S3Objects(adapter.Adapter):
    """Objects in one bucket, with the conditional writes state and locks need."""

    service = "s3"

    def __init__(self, client: object, region: str, bucket: str) -> None:
        super().__init__(client, region)
        self.bucket = bucket

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            out = self._call("GetObject", Bucket=self.bucket, Key=key)
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchKey":
                raise
            return None
        return out["Body"].read(), out["ETag"]

    def put(self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False) -> str | None:
        """Write; the new ETag, or None when the condition failed (someone else wrote first)."""
        condition = {"IfMatch": if_match} if if_match else ({"IfNoneMatch": "*"} if if_absent else {})
        try:
            out = self._call("PutObject", Bucket=self.bucket, Key=key, Body=body,
                             ContentType="application/json", **condition)
        except errors.AwsError as exc:
            if exc.code in PRECONDITION_FAILED:
                return None
            raise
        return str(out["ETag"])

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        """Delete; with ``if_match`` only while the object still has that ETag.
        False when the condition failed or the object is already gone."""
        condition = {"IfMatch": if_match} if if_match else {}
        try:
            self._call("DeleteObject", Bucket=self.bucket, Key=key, **condition)
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchKey":
                raise
            return False
        except errors.AwsError as exc:
            if exc.code in PRECONDITION_FAILED:
                return False
            raise
        return True


class S3Store(adapter.Adapter):
    """A vault store in a versioned bucket: one object per secret at
    <prefix><name>, each write a new S3 object version (its number in the
    ``rcl-version`` metadata), replaced with conditional writes; versions past
    ``keep`` are deleted. The bucket must have versioning enabled."""

    service = "s3"

    def __init__(self, client: object, region: str, bucket: str, prefix: str,
                 keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.bucket, self.prefix, self.keep = bucket, prefix, keep
        self._checked = False

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _check_versioning(self) -> None:
        if self._checked:
            return
        status = self._call("GetBucketVersioning", Bucket=self.bucket).get("Status")
        if status != "Enabled":
            raise errors.ConfigError(
                f"s3://{self.bucket}: bucket versioning is not enabled; a vault store keeps each secret's "
                f"versions as S3 object versions (aws s3api put-bucket-versioning --bucket {self.bucket} "
                "--versioning-configuration Status=Enabled)")
        self._checked = True

    def _get(self, name: str, version_id: str | None = None) -> tuple[base.Version, str] | None:
        params = {"Bucket": self.bucket, "Key": self._key(name)}
        if version_id:
            params["VersionId"] = version_id
        try:
            out = self._call("GetObject", **params)
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchKey":
                raise  # a missing bucket is an error, not a missing entry
            return None
        number = int(out.get("Metadata", {}).get("rcl-version", "0"))
        created = out["LastModified"].isoformat() if hasattr(out.get("LastModified"), "isoformat") else ""
        return base.Version(number, created, out["Body"].read().decode()), out["ETag"]

    def _object_versions(self, name: str) -> list[dict]:
        key = self._key(name)
        listed = self._pages("ListObjectVersions", "Versions", Bucket=self.bucket, Prefix=key)
        return [v for v in listed if v["Key"] == key]

    def latest(self, name: str) -> base.Version | None:
        found = self._get(name)
        return found[0] if found else None

    def versions(self, name: str) -> list[base.Version]:
        if self.latest(name) is None:
            return []  # absent, or deleted (a delete marker on top)
        found = []
        for item in self._object_versions(name):
            got = self._get(name, item["VersionId"])
            if got is not None:
                found.append(got[0])
        return sorted(found, key=lambda v: v.number)[-self.keep:]

    def put(self, name: str, envelope: str) -> base.Version:
        self._check_versioning()
        current = self._get(name)
        number = (current[0].number if current else 0) + 1
        condition = {"IfMatch": current[1]} if current else {"IfNoneMatch": "*"}
        try:
            self._call("PutObject", Bucket=self.bucket, Key=self._key(name), Body=envelope.encode(),
                       ContentType="text/plain", Metadata={"rcl-version": str(number)}, **condition)
        except errors.AwsError as exc:
            if exc.code in PRECONDITION_FAILED:
                raise errors.AwsError(f"{self.describe()}{name}: changed by someone else while writing; "
                                      "run apply again", exc.code) from None
            raise
        self._prune(name)
        return base.Version(number, base.now(), envelope)

    def _prune(self, name: str) -> None:
        versions = sorted(self._object_versions(name), key=lambda v: v["LastModified"], reverse=True)
        for old in versions[self.keep:]:
            self._call("DeleteObject", Bucket=self.bucket, Key=self._key(name), VersionId=old["VersionId"])

    def delete(self, name: str) -> None:
        """Every version goes: a removed secret leaves nothing readable behind."""
        key = self._key(name)
        listed = self._pages("ListObjectVersions", "Versions", Bucket=self.bucket, Prefix=key)
        markers = self._pages("ListObjectVersions", "DeleteMarkers", Bucket=self.bucket, Prefix=key)
        for item in listed + markers:
            if item["Key"] == key:
                self._call("DeleteObject", Bucket=self.bucket, Key=key, VersionId=item["VersionId"])

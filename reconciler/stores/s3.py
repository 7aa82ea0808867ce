"""The S3 vault store: one object per secret under bucket/prefix in a
versioned bucket, each write a new S3 object version, replaced with
conditional writes (If-Match on the ETag read, If-None-Match for a new
entry) so two writers never lose a version."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler import errors
from reconciler.aws import adapter
from reconciler.aws.s3 import PRECONDITION_FAILED
from reconciler.stores import base


VERSIONS_PAGE = 1000  # ListObjectVersions returns at most 1,000 object versions a page


class S3Store(adapter.Adapter):
    """A vault store in a versioned bucket: one object per secret at
    <prefix><name>, each write a new S3 object version carrying our version
    number and date in its metadata (``rcl-version``, ``rcl-created``),
    replaced with conditional writes; versions past ``keep`` are deleted. A
    copied or re-wrapped history is written oldest first, every write but the
    last marked ``rcl-history`` (so the current object is the newest version
    once the copy is complete, and a half-done one is read from the listing).
    The bucket must exist and have versioning enabled (checked at plan)."""

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

    def problems(self) -> list[str]:
        """Why this bucket cannot hold a vault (missing, or unversioned): checked at plan time."""
        try:
            status = self._call("GetBucketVersioning", Bucket=self.bucket).get("Status")
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchBucket":
                raise
            return [f"s3://{self.bucket}: the bucket does not exist (NoSuchBucket); create it with "
                    "versioning enabled, or point the vault's store at another bucket"]
        if status != "Enabled":
            return [f"s3://{self.bucket}: bucket versioning is not enabled; a vault store keeps each "
                    "secret's versions as S3 object versions (aws s3api put-bucket-versioning --bucket "
                    f"{self.bucket} --versioning-configuration Status=Enabled)"]
        self._checked = True
        return []

    def _check_versioning(self) -> None:
        if self._checked:
            return
        found = self.problems()
        if found:
            raise errors.ConfigError(found[0])

    def _get(self, name: str, version_id: str | None = None) -> tuple[base.Version, str, bool] | None:
        """A version, its ETag, and whether it was written as history (not the newest)."""
        params = {"Bucket": self.bucket, "Key": self._key(name)}
        if version_id:
            params["VersionId"] = version_id
        try:
            out = self._call("GetObject", **params)
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchKey":
                raise  # a missing bucket is an error, not a missing entry
            return None
        meta = out.get("Metadata", {})
        number = int(meta.get("rcl-version", "0"))
        created = meta.get("rcl-created") or base.stamp(out.get("LastModified"))
        version = base.Version(number, created, out["Body"].read().decode(), str(out.get("VersionId") or ""))
        return version, out["ETag"], meta.get("rcl-history") == "1"

    def _object_versions(self, name: str) -> list[dict]:
        """The object's S3 versions, newest first (as S3 lists them)."""
        key = self._key(name)
        listed = self._pages("ListObjectVersions", "Versions", Bucket=self.bucket, Prefix=key)
        return [v for v in listed if v["Key"] == key]

    def latest(self, name: str) -> base.Version | None:
        found = self._get(name)
        if found is None:
            return None
        if found[2]:  # a copy stopped halfway: the newest number is not the current object
            versions = self.versions(name)
            return versions[-1] if versions else found[0]
        return found[0]

    def versions(self, name: str) -> list[base.Version]:
        if self._get(name) is None:
            return []  # absent, or deleted (a delete marker on top)
        found = []
        for item in reversed(self._object_versions(name)):  # oldest write first
            got = self._get(name, item["VersionId"])
            if got is not None:
                found.append(got[0])
        return base.kept(found, self.keep)

    def put(self, name: str, envelope: str, *, tags: Mapping[str, str] | None = None) -> base.Version:
        self._check_versioning()
        current = self._get(name)
        last = (self.latest(name) if current[2] else current[0]) if current else None
        new = base.Version((last.number if last else 0) + 1, base.now(), envelope)
        written = self._write(name, new, current, history=False)
        self._prune(name)
        return written

    def put_version(self, name: str, version: base.Version, *, newest: bool,
                    tags: Mapping[str, str] | None = None) -> base.Version:
        self._check_versioning()
        written = self._write(name, version, self._get(name), history=not newest)
        if newest:
            self._prune_exact(name)
        return written

    def current_ids(self) -> dict[str, str]:
        """Entry name -> the S3 version id of its current object: ListObjectVersions
        over the prefix, one page per 1,000 object versions. A deleted entry (a
        delete marker on top) has none."""
        listed = self._pages("ListObjectVersions", "Versions", largest_page=VERSIONS_PAGE,
                             Bucket=self.bucket, Prefix=self.prefix)
        return {str(v["Key"])[len(self.prefix):]: str(v["VersionId"]) for v in listed
                if v.get("IsLatest") and str(v["Key"]).startswith(self.prefix)}

    def _write(self, name: str, version: base.Version, current: tuple[base.Version, str, bool] | None,
               *, history: bool) -> base.Version:
        """One conditional PUT over the object as read: two writers never lose a
        version. Returns the version with its S3 version id."""
        condition = {"IfMatch": current[1]} if current else {"IfNoneMatch": "*"}
        metadata = {"rcl-version": str(version.number), "rcl-created": version.created_at}
        if history:
            metadata["rcl-history"] = "1"
        try:
            out = self._call("PutObject", Bucket=self.bucket, Key=self._key(name), Body=version.envelope.encode(),
                             ContentType="text/plain", Metadata=metadata, **condition)
        except errors.AwsError as exc:
            if exc.code in PRECONDITION_FAILED:
                raise errors.AwsError(f"{self.describe()}{name}: changed by someone else while writing; "
                                      "run apply again", exc.code) from None
            raise
        return base.Version(version.number, version.created_at, version.envelope, str(out.get("VersionId") or ""))

    def _prune(self, name: str) -> None:
        for old in self._object_versions(name)[self.keep:]:
            self._call("DeleteObject", Bucket=self.bucket, Key=self._key(name), VersionId=old["VersionId"])

    def _prune_exact(self, name: str) -> None:
        """After a copy or re-wrap: keep the last write of each kept number, delete
        the rest (the versions it replaced still name the old key)."""
        listed = self._object_versions(name)
        numbers: dict[int, str] = {}
        for item in listed:  # newest first: the first seen of a number is its last write
            head = self._call("HeadObject", Bucket=self.bucket, Key=self._key(name), VersionId=item["VersionId"])
            numbers.setdefault(int(head.get("Metadata", {}).get("rcl-version", "0")), item["VersionId"])
        keep = {numbers[n] for n in sorted(numbers)[-self.keep:]}
        for item in listed:
            if item["VersionId"] not in keep:
                self._call("DeleteObject", Bucket=self.bucket, Key=self._key(name), VersionId=item["VersionId"])

    def delete(self, name: str) -> None:
        """Every version goes: a removed secret leaves nothing readable behind."""
        key = self._key(name)
        listed = self._pages("ListObjectVersions", "Versions", Bucket=self.bucket, Prefix=key)
        markers = self._pages("ListObjectVersions", "DeleteMarkers", Bucket=self.bucket, Prefix=key)
        for item in listed + markers:
            if item["Key"] == key:
                self._call("DeleteObject", Bucket=self.bucket, Key=key, VersionId=item["VersionId"])

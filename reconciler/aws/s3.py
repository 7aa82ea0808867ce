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

    def put(self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False) -> bool:
        """Write; False when the condition failed (someone else wrote first)."""
        condition = {"IfMatch": if_match} if if_match else ({"IfNoneMatch": "*"} if if_absent else {})
        try:
            self._call("PutObject", Bucket=self.bucket, Key=key, Body=body,
                       ContentType="application/json", **condition)
        except errors.AwsError as exc:
            if exc.code in PRECONDITION_FAILED:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._call("DeleteObject", Bucket=self.bucket, Key=key)


class S3Store(adapter.Adapter):
    service = "s3"

    def __init__(self, client: object, region: str, bucket: str, prefix: str,
                 keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.bucket, self.prefix, self.keep = bucket, prefix, keep

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}.json"

    def _read(self, name: str) -> tuple[list[base.Version], str | None]:
        try:
            out = self._call("GetObject", Bucket=self.bucket, Key=self._key(name))
        except errors.AwsNotFound as exc:
            if exc.code != "NoSuchKey":
                raise  # a missing bucket is an error, not a missing entry
            return [], None
        text = out["Body"].read().decode()
        return base.parse_document(text, f"s3://{self.bucket}/{self._key(name)}"), out["ETag"]

    def versions(self, name: str) -> list[base.Version]:
        return self._read(name)[0]

    def latest(self, name: str) -> base.Version | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def put(self, name: str, envelope: str) -> base.Version:
        current, etag = self._read(name)
        versions, new = base.next_versions(current, envelope, self.keep)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._call("PutObject", Bucket=self.bucket, Key=self._key(name),
                       Body=base.document(versions).encode(), ContentType="application/json",
                       **condition)
        except errors.AwsError as exc:
            if exc.code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise errors.AwsError(f"{self.describe()}{name}: changed by someone else while writing; "
                                      "run apply again", exc.code) from None
            raise
        return new

    def delete(self, name: str) -> None:
        self._call("DeleteObject", Bucket=self.bucket, Key=self._key(name))

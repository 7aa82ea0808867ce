"""S3 objects with the conditional writes the state backend and its lock
need (If-Match / If-None-Match); the S3 vault store builds on the same
precondition codes (stores/s3.py)."""

from __future__ import annotations

from reconciler import errors
from reconciler.aws import adapter


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

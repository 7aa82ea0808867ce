"""The Secrets Manager store: one secret per entry named <prefix><name>,
the envelope as its binary value; each write is a new secret version whose
client request token carries our version number, its date and when it was
written (``rcl-v<number>-<date>-<write>-<random>``), so a history copied
here or re-wrapped keeps its numbers and dates: the last write of a number
wins. A copied history is written oldest first under a staging label of its
own, so AWSCURRENT stays on the newest version.

An entry removed by reconciler is deleted with the default recovery window;
adding the Secret back restores it (RestoreSecret) and writes a new version
on top of its history, instead of failing for the length of the window."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import adapter
from reconciler.stores import base

_TOKEN = re.compile(r"^rcl-v(\d{8})-(?:(\d{8}T\d{6}Z)-([0-9a-f]{16})-)?")
HISTORY_STAGE = "rcl-history"
SECRETS_PAGE = 100  # ListSecrets returns at most 100 secrets a page
RECOVERY_DAYS = 7


def _deleted(exc: errors.AwsError) -> bool:
    """Secrets Manager's answer about a secret scheduled for deletion."""
    return exc.code == "InvalidRequestException" and "delet" in str(exc).lower()


def token(version: base.Version) -> str:
    """The ClientRequestToken (at most 64 characters) that records our number and date."""
    return f"rcl-v{version.number:08d}-{base.compact(version.created_at)}-{time.time_ns():016x}-" \
           f"{uuid.uuid4().hex[:8]}"


class SecretsManagerStore(adapter.Adapter):
    service = "secretsmanager"

    def __init__(self, client: object, region: str, prefix: str, keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.prefix, self.keep = prefix, keep

    def describe(self) -> str:
        return f"Secrets Manager {self.prefix}* in {self.region}"

    def _id(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _version(self, version_id: str, created: object, envelope: str) -> tuple[tuple[str, str], base.Version]:
        """Our version for a Secrets Manager version, and its write order (legacy tokens first)."""
        match = _TOKEN.match(version_id)
        number = int(match.group(1)) if match else 0
        date = base.expand(match.group(2)) if match and match.group(2) else base.stamp(created)  # type: ignore[arg-type]
        order = str(match.group(3)) if match and match.group(3) else ""
        return (order, version_id), base.Version(number, date, envelope, version_id)

    def versions(self, name: str) -> list[base.Version]:
        if self.latest(name) is None:
            return []  # absent, or scheduled for deletion (and stock moto fails listing an absent one)
        listed: list[dict] = []
        params = {"SecretId": self._id(name), "IncludeDeprecated": True, "MaxResults": 100}
        try:
            while True:  # botocore has no paginator for this operation
                page = self._call("ListSecretVersionIds", **params)
                listed.extend(page.get("Versions", []))
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
        except errors.AwsNotFound:
            return []
        found = []
        for item in listed:
            if not _TOKEN.match(item["VersionId"]):
                continue  # written by someone else: drift shows the current value
            try:
                value = self._call("GetSecretValue", SecretId=self._id(name), VersionId=item["VersionId"])
            except errors.AwsError as exc:
                if _deleted(exc):
                    return []  # scheduled for deletion: gone until restored
                raise
            found.append(self._version(item["VersionId"], item.get("CreatedDate"), _text(value)))
        return base.kept([v for _, v in sorted(found, key=lambda f: f[0])], self.keep)

    def latest(self, name: str) -> base.Version | None:
        try:
            value = self._call("GetSecretValue", SecretId=self._id(name), VersionStage="AWSCURRENT")
        except errors.AwsNotFound:
            return None
        except errors.AwsError as exc:
            if _deleted(exc):
                return None
            raise
        return self._version(value["VersionId"], value.get("CreatedDate"), _text(value))[1]

    def put(self, name: str, envelope: str, *, tags: Mapping[str, str] | None = None) -> base.Version:
        current = self.latest(name)
        if current is None and self._restore(name):
            current = self.latest(name)
        number = current.number if current else 0
        if current is not None and not number:  # the current value was written by someone else:
            number = max((v.number for v in self.versions(name)), default=0)  # after our newest, never again 1
        version = base.Version(number + 1, base.now(), envelope)
        return self._write(name, version, exists=current is not None, history=False, tags=tags)

    def put_version(self, name: str, version: base.Version, *, newest: bool,
                    tags: Mapping[str, str] | None = None) -> base.Version:
        exists = self.latest(name) is not None or self._restore(name)
        return self._write(name, version, exists=exists, history=not newest, tags=tags)

    def current_ids(self) -> dict[str, str]:
        """Entry name -> its AWSCURRENT version id: ListSecrets over the prefix,
        one page per 100 secrets (entries scheduled for deletion are left out)."""
        filters = [{"Key": "name", "Values": [self.prefix]}] if self.prefix else []
        listed = self._pages("ListSecrets", "SecretList", largest_page=SECRETS_PAGE, Filters=filters)
        found = {}
        for item in listed:
            name = str(item.get("Name", ""))
            if not name.startswith(self.prefix):
                continue  # the name filter ignores case
            current = [v for v, stages in (item.get("SecretVersionsToStages") or {}).items()
                       if "AWSCURRENT" in stages]
            if current:
                found[name[len(self.prefix):]] = str(current[0])
        return found

    def _write(self, name: str, version: base.Version, *, exists: bool, history: bool,
               tags: Mapping[str, str] | None = None) -> base.Version:
        """Write one version; returns it with its Secrets Manager version id (the request token)."""
        request = token(version)
        written = base.Version(version.number, version.created_at, version.envelope, request)
        if not exists:
            try:
                self._call("CreateSecret", Name=self._id(name), SecretBinary=version.envelope.encode(),
                           ClientRequestToken=request, Description="reconciler envelope",
                           Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())])
                return written
            except errors.AwsError as exc:
                if exc.code != "ResourceExistsException":
                    raise
        stages = {"VersionStages": [HISTORY_STAGE]} if history else {}
        self._call("PutSecretValue", SecretId=self._id(name), SecretBinary=version.envelope.encode(),
                   ClientRequestToken=request, **stages)
        return written

    def _restore(self, name: str) -> bool:
        """Bring back an entry scheduled for deletion (removed, then declared again): True if it was."""
        try:
            described = self._call("DescribeSecret", SecretId=self._id(name))
        except errors.AwsNotFound:
            return False
        if not described.get("DeletedDate"):
            return False
        self._call("RestoreSecret", SecretId=self._id(name))
        return True

    def delete(self, name: str) -> None:
        """Scheduled for deletion with a recovery window; declaring it again restores it."""
        try:
            self._call("DeleteSecret", SecretId=self._id(name), RecoveryWindowInDays=RECOVERY_DAYS)
        except errors.AwsNotFound:
            pass
        except errors.AwsError as exc:
            if not _deleted(exc):
                raise


def _text(value: Any) -> str:
    """What a version holds, as text: reconciler writes SecretBinary; a value
    written by hand as SecretString (or binary that is not text) is read as it
    is, so it shows as drift, never as an internal error."""
    if "SecretBinary" in value:
        return bytes(value["SecretBinary"]).decode(errors="replace")
    return str(value.get("SecretString", ""))

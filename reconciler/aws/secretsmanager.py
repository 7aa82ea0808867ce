"""The Secrets Manager store: one secret per entry named <prefix><name>,
the envelope as its binary value; each write is a new secret version whose
client request token carries our version number."""

from __future__ import annotations

import re
import uuid

from reconciler import errors
from reconciler.aws import adapter
from reconciler.stores import base

_TOKEN = re.compile(r"^rcl-v(\d{8})-")


class SecretsManagerStore(adapter.Adapter):
    service = "secretsmanager"

    def __init__(self, client: object, region: str, prefix: str, keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.prefix, self.keep = prefix, keep

    def describe(self) -> str:
        return f"Secrets Manager {self.prefix}* in {self.region}"

    def _id(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def versions(self, name: str) -> list[base.Version]:
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
            match = _TOKEN.match(item["VersionId"])
            if not match:
                continue  # written by someone else: drift shows the current value
            value = self._call("GetSecretValue", SecretId=self._id(name), VersionId=item["VersionId"])
            found.append(base.Version(int(match.group(1)), str(item.get("CreatedDate", "")),
                                      value["SecretBinary"].decode()))
        return sorted(found, key=lambda v: v.number)[-self.keep:]

    def latest(self, name: str) -> base.Version | None:
        try:
            value = self._call("GetSecretValue", SecretId=self._id(name), VersionStage="AWSCURRENT")
        except errors.AwsNotFound:
            return None
        match = _TOKEN.match(value["VersionId"])
        number = int(match.group(1)) if match else 0
        envelope = value["SecretBinary"].decode() if "SecretBinary" in value else value.get("SecretString", "")
        return base.Version(number, str(value.get("CreatedDate", "")), envelope)

    def put(self, name: str, envelope: str) -> base.Version:
        current = self.latest(name)
        number = (current.number if current else 0) + 1
        token = f"rcl-v{number:08d}-{uuid.uuid4().hex}"
        if current is None:
            try:
                self._call("CreateSecret", Name=self._id(name), SecretBinary=envelope.encode(),
                           ClientRequestToken=token, Description="reconciler envelope")
                return base.Version(number, base.now(), envelope)
            except errors.AwsError as exc:
                if exc.code != "ResourceExistsException":
                    raise
        self._call("PutSecretValue", SecretId=self._id(name), SecretBinary=envelope.encode(),
                   ClientRequestToken=token)
        return base.Version(number, base.now(), envelope)

    def delete(self, name: str) -> None:
        try:
            self._call("DeleteSecret", SecretId=self._id(name), RecoveryWindowInDays=7)
        except errors.AwsNotFound:
            pass

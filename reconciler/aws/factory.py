"""Adapters for any service, from one client factory: the one place that
turns (service, region, auth) into an adapter. IAM and STS are global (one
endpoint, no region argument); KMS, S3, Secrets Manager and SSM are regional.
Auth paths (a web-identity token file) are anchored at the stack directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import adapter, dynamodb, kms, s3, session, tagging

GLOBAL_REGION = "us-east-1"  # where the global services' (IAM, STS) clients are made

Auth = Mapping[str, Any] | None


class Adapters:
    """``Adapters(factory).kms(region, auth)``, ``.iam(auth)``, ``.sts(auth)``..."""

    def __init__(self, factory: session.ClientFactory | None = None,
                 directory: str | os.PathLike[str] = ".") -> None:
        self.factory = factory or session.ClientFactory()
        self.directory = directory

    def client(self, service: str, region: str, auth: Auth) -> Any:
        """A raw boto3 client, for adapters that take one (the vault stores)."""
        return self.factory.client(service, region, self._anchored(auth))

    def kms(self, region: str, auth: Auth) -> kms.KmsAdapter:
        return kms.KmsAdapter(self.client("kms", region, auth), region)

    def tagging(self, region: str, auth: Auth) -> tagging.TaggingAdapter:
        return tagging.TaggingAdapter(self.client("resourcegroupstaggingapi", region, auth), region)

    def s3_objects(self, region: str, auth: Auth, bucket: str) -> s3.S3Objects:
        """One bucket's objects with conditional writes (the S3 state backend and its lock)."""
        return s3.S3Objects(self.client("s3", region, auth), region, bucket)

    def lock_table(self, region: str, auth: Auth, table: str) -> dynamodb.LockTable:
        """A DynamoDB lock table (the S3 state backend's ``lockTable``)."""
        return dynamodb.LockTable(self.client("dynamodb", region, auth), region, table)

    def iam(self, auth: Auth) -> Iam:
        return Iam(self.client("iam", GLOBAL_REGION, auth), GLOBAL_REGION)

    def sts(self, auth: Auth) -> Sts:
        return Sts(self.client("sts", GLOBAL_REGION, auth), GLOBAL_REGION)

    def sts_with_key(self, key_id: str, secret: str) -> Sts:
        """STS as the holder of one access key (in memory only): who it is, if it works."""
        return Sts(self.factory.client_with_key("sts", GLOBAL_REGION, key_id, secret), GLOBAL_REGION)

    def check(self, auth: Auth, region: str | None) -> None:
        """Resolve ``auth`` now (env refs, token file, source credentials):
        session.AuthError names the field at fault. The default chain
        without a profile has nothing to resolve before its first call (and
        botocore is not imported for it: a plan --no-refresh needs none)."""
        if not auth or auth == {"defaultChain": {}}:
            return
        self.factory.session(self._anchored(auth), region)

    def _anchored(self, auth: Auth) -> Auth:
        return session.anchored(auth, self.directory)


class Iam(adapter.Adapter):
    """IAM (global): the coming IamRole / AccessKeyRotation kinds add their calls here."""

    service = "iam"

    def role_arn(self, name: str) -> str | None:
        """The ARN of role ``name``, or None if there is no such role."""
        try:
            return str(self._call("GetRole", RoleName=name)["Role"]["Arn"])
        except errors.AwsNotFound:
            return None


class Sts(adapter.Adapter):
    """STS (global)."""

    service = "sts"

    def caller_arn(self) -> str:
        return str(self._call("GetCallerIdentity")["Arn"])

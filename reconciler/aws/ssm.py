"""The SSM store: one parameter per entry at <path>/<name> holding the
envelope (already ciphertext under the customer's key); SSM's own parameter
versions are ours. SSM keeps the last 100 versions itself; ``keep`` limits
what history and get see."""

from __future__ import annotations

from reconciler import errors
from reconciler.aws import adapter
from reconciler.stores import base

STANDARD_LIMIT = 4096


class SsmStore(adapter.Adapter):
    service = "ssm"

    def __init__(self, client: object, region: str, path: str, keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.path, self.keep = path.rstrip("/"), keep

    def describe(self) -> str:
        return f"SSM {self.path}/ in {self.region}"

    def _name(self, name: str) -> str:
        return f"{self.path}/{name}"

    def versions(self, name: str) -> list[base.Version]:
        try:
            history = self._pages("GetParameterHistory", "Parameters", Name=self._name(name))
        except errors.AwsNotFound:
            return []
        found = [base.Version(int(p["Version"]), str(p.get("LastModifiedDate", "")), p["Value"])
                 for p in history]
        return sorted(found, key=lambda v: v.number)[-self.keep:]

    def latest(self, name: str) -> base.Version | None:
        try:
            p = self._call("GetParameter", Name=self._name(name))["Parameter"]
        except errors.AwsNotFound:
            return None
        return base.Version(int(p["Version"]), str(p.get("LastModifiedDate", "")), p["Value"])

    def put(self, name: str, envelope: str) -> base.Version:
        tier = "Standard" if len(envelope) <= STANDARD_LIMIT else "Advanced"
        out = self._call("PutParameter", Name=self._name(name), Value=envelope, Type="String",
                         Overwrite=True, Tier=tier)
        return base.Version(int(out["Version"]), base.now(), envelope)

    def delete(self, name: str) -> None:
        try:
            self._call("DeleteParameter", Name=self._name(name))
        except errors.AwsNotFound:
            pass

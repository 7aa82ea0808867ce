"""What every store offers: numbered versions of one envelope per secret,
the newest last, the oldest pruned beyond ``keep``. Envelopes are ciphertext:
nothing a store holds is a plaintext secret."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Protocol

from reconciler import errors

DEFAULT_KEEP = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    number: int
    created_at: str
    envelope: str = dataclasses.field(repr=False)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Store(Protocol):
    keep: int

    def describe(self) -> str: ...

    def versions(self, name: str) -> list[Version]:
        """Every kept version, oldest first (empty when the entry does not exist)."""

    def latest(self, name: str) -> Version | None: ...

    def put(self, name: str, envelope: str) -> Version:
        """Store a new version; returns it."""

    def delete(self, name: str) -> None: ...


def get(store: Store, name: str, number: int | None = None) -> Version:
    versions = store.versions(name)
    if not versions:
        raise errors.ConfigError(f"{name}: no such secret in {store.describe()}")
    if number is None:
        return versions[-1]
    for version in versions:
        if version.number == number:
            return version
    kept = ", ".join(str(v.number) for v in versions)
    raise errors.ConfigError(f"{name}: version {number} is not kept in {store.describe()} (kept: {kept})")


def document(versions: list[Version]) -> str:
    """The JSON document the local and S3 stores keep per secret."""
    return json.dumps({"format": "reconciler-entry/v1", "versions": [
        {"version": v.number, "createdAt": v.created_at, "envelope": v.envelope} for v in versions]},
        indent=2) + "\n"


def parse_document(text: str, where: str) -> list[Version]:
    try:
        data: Any = json.loads(text)
        return [Version(int(v["version"]), v["createdAt"], v["envelope"]) for v in data["versions"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise errors.StateError(f"{where}: not a reconciler vault entry (damaged?)") from exc


def next_versions(versions: list[Version], envelope: str, keep: int) -> tuple[list[Version], Version]:
    number = versions[-1].number + 1 if versions else 1
    new = Version(number, now(), envelope)
    return (versions + [new])[-keep:], new

"""What every store offers: numbered versions of one envelope per secret,
the newest last, the oldest pruned beyond ``keep``. Envelopes are ciphertext:
nothing a store holds is a plaintext secret."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any, Protocol

from reconciler import clock, errors

DEFAULT_KEEP = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    number: int
    created_at: str
    envelope: str = dataclasses.field(repr=False)
    store_id: str = ""  # the store's own id of the object holding it ("": not known), see Lists


class Lists(Protocol):
    """A store that lists, in pages, the id of every entry's current version
    (Secrets Manager ListSecrets, SSM DescribeParameters, S3 ListObjectVersions):
    an entry whose current id is the one state recorded at write is unchanged,
    so refresh reads no value. The ids change with every write (and a deleted
    then re-created entry never gets an old one back)."""

    def current_ids(self) -> dict[str, str]:
        """Entry name -> the ``store_id`` of its current version, for every entry of the store."""


def now() -> str:
    """A new version's date, by the one clock (tests set it)."""
    return stamp(clock.now())


def stamp(when: datetime.datetime | str | None) -> str:
    """One date format for every store (ISO 8601, UTC, seconds), so a version
    copied to another store shows the same date it had."""
    if when is None or when == "":
        return ""
    if isinstance(when, str):
        try:
            when = datetime.datetime.fromisoformat(when)
        except ValueError:
            return str(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC).isoformat(timespec="seconds")


def compact(created_at: str) -> str:
    """A date as the 16 characters SSM labels and Secrets Manager tokens can carry."""
    text = stamp(created_at) or now()
    try:
        return datetime.datetime.fromisoformat(text).strftime("%Y%m%dT%H%M%SZ")
    except ValueError:
        return datetime.datetime.fromisoformat(now()).strftime("%Y%m%dT%H%M%SZ")


def expand(compacted: str) -> str:
    """The date ``compact`` packed."""
    return stamp(datetime.datetime.strptime(compacted, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC))


class Store(Protocol):
    keep: int

    def describe(self) -> str: ...

    def versions(self, name: str) -> list[Version]:
        """Every kept version, oldest first (empty when the entry does not exist)."""

    def latest(self, name: str) -> Version | None: ...

    def put(self, name: str, envelope: str, *, tags: Mapping[str, str] | None = None) -> Version:
        """Store a new version; returns it. ``tags`` (stack, address, operation)
        go on the entry where the store has tags and the entry is created now."""

    def put_version(self, name: str, version: Version, *, newest: bool,
                    tags: Mapping[str, str] | None = None) -> Version:
        """Store ``version`` with its own number and date (a copy or a re-wrap),
        replacing a kept version of that number. History is written oldest
        first; ``newest`` marks the last write, which becomes the current entry."""

    def delete(self, name: str) -> None: ...


def get(store: Store, name: str, number: int | None = None) -> Version:
    """A kept version of entry ``name`` (the caller names the secret in errors)."""
    versions = store.versions(name)
    if not versions:
        raise errors.ConfigError(f"no such secret in {store.describe()}")
    if number is None:
        return versions[-1]
    for version in versions:
        if version.number == number:
            return version
    kept = ", ".join(str(v.number) for v in versions)
    raise errors.ConfigError(f"version {number} is not kept in {store.describe()} (kept: {kept})")


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


def kept(versions: list[Version], keep: int) -> list[Version]:
    """The last ``keep`` numbers, oldest first; for a number written more than
    once (a re-wrap or a copy) the last write, so ``versions`` comes in write order."""
    by_number = {v.number: v for v in versions}
    return [by_number[n] for n in sorted(by_number)][-keep:]


def with_version(versions: list[Version], version: Version, keep: int) -> list[Version]:
    """A document's versions once ``version`` is written with its own number."""
    return kept([v for v in versions if v.number != version.number] + [version], keep)


def next_versions(versions: list[Version], envelope: str, keep: int) -> tuple[list[Version], Version]:
    number = versions[-1].number + 1 if versions else 1
    new = Version(number, now(), envelope)
    return (versions + [new])[-keep:], new

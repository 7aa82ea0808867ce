"""The local store: one JSON file per secret in a directory (the embedded
default), written atomically."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

from reconciler.stores import base


class LocalStore:
    def __init__(self, directory: pathlib.Path, keep: int = base.DEFAULT_KEEP) -> None:
        self.directory = directory
        self.keep = keep

    def describe(self) -> str:
        return f"local store {self.directory}"

    def _path(self, name: str) -> pathlib.Path:
        return self.directory / f"{name}.json"

    def versions(self, name: str) -> list[base.Version]:
        path = self._path(name)
        try:
            return base.parse_document(path.read_text(), str(path))
        except FileNotFoundError:
            return []

    def latest(self, name: str) -> base.Version | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def put(self, name: str, envelope: str, *, tags: Mapping[str, str] | None = None) -> base.Version:
        versions, new = base.next_versions(self.versions(name), envelope, self.keep)
        self._write(name, versions)
        return new

    def put_version(self, name: str, version: base.Version, *, newest: bool,
                    tags: Mapping[str, str] | None = None) -> base.Version:
        self._write(name, base.with_version(self.versions(name), version, self.keep))
        return version

    def _write(self, name: str, versions: list[base.Version]) -> None:
        """Replace the entry's document atomically (temp file, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, base.document(versions).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

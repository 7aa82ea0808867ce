"""The local state backend: a JSON file written atomically (temp file, fsync,
``os.replace``) with the previous version kept as ``<file>.backup``, and an
OS-level lock (``fcntl.flock``) on ``<file>.lock`` held for the whole of a
state-changing command. The lock file records who holds it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

from reconciler import errors
from reconciler.state import locks, model


class LocalBackend:
    def __init__(self, path: pathlib.Path | str) -> None:
        self.path = pathlib.Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None
        self._written: tuple[bytes, model.State] | None = None  # what this lock holder wrote last
        self._encoded: model.EncodeCache = {}
        self.lock_id: str | None = None

    def describe(self) -> str:
        return str(self.path)

    # -- reading and writing -------------------------------------------------
    def read(self) -> model.State:
        raw = self._read_bytes()
        return self._parse(raw) if raw is not None else model.State.empty()

    def read_backup(self) -> model.State | None:
        """The previous version (None when there is none, or it is unreadable)."""
        try:
            raw = self.backup_path.read_bytes()
            return model.State.from_json(json.loads(raw), origin=str(self.backup_path))
        except (OSError, ValueError, errors.ReconcilerError):
            return None

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise errors.StateError(f"{self.path}: cannot read state ({exc.strerror})") from exc

    def _parse(self, raw: bytes) -> model.State:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise errors.StateError(
                f"{self.path}:{exc.lineno}:{exc.colno}: state file is not valid JSON ({exc.msg}); "
                f"the previous version is in {self.backup_path}") from exc
        return model.State.from_json(data, origin=str(self.path))

    def write(self, state: model.State, *, replace_lineage: bool = False) -> model.State:
        """Write ``state`` as the next serial; returns what was written."""
        if self._lock_fd is None:
            raise errors.StateError("internal: state written without holding the lock")
        if self._written is None:  # first write under this lock: see what is there
            previous = self._read_bytes()
            current = self._current(previous, tolerate_damage=replace_lineage)
            current = model.above_backup(current, self.read_backup())
        else:  # we hold the lock and wrote last: nobody else changed it
            previous, current = self._written
        written = model.successor(state, current, str(self.path), replace_lineage=replace_lineage)
        payload = model.dumps(written, self._encoded).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if previous is not None:
            self._keep_backup(previous)
        self._atomic_write(self.path, payload)
        self._written = (payload, written)
        return written

    def _current(self, previous: bytes | None, *, tolerate_damage: bool) -> model.State:
        return model.current_of(previous, self._parse, tolerate_damage=tolerate_damage)

    def _keep_backup(self, previous: bytes) -> None:
        """The version about to be replaced becomes the backup: a second name
        for the state file as it is (a hard link, renamed into place), so the
        bytes are not written and synced again on every save; where the file
        system has no hard links, a copy. The rename is made durable by the
        directory sync of the write that follows (``_atomic_write``)."""
        temp = self.backup_path.with_name(f".{self.backup_path.name}.{os.getpid()}.tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            os.link(self.path, temp)
            os.replace(temp, self.backup_path)
        except OSError:  # no hard links here (or the file went away): write it out
            with contextlib.suppress(OSError):
                os.unlink(temp)
            self._atomic_write(self.backup_path, previous)

    @staticmethod
    def _atomic_write(path: pathlib.Path, data: bytes) -> None:
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- locking -------------------------------------------------------------
    def _holder(self) -> dict[str, Any] | None:
        try:
            text = self.lock_path.read_text()
            return json.loads(text) if text.strip() else None
        except (OSError, json.JSONDecodeError):
            return None

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[str]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise errors.LockError(
                        f"state {self.path} is locked by {locks.describe(self._holder())}; "
                        "wait for it to finish, retry with --lock-timeout, or if that process is "
                        "gone run `reconciler state unlock ID`") from None
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        holder = locks.new_holder(operation)
        lock_id = holder["id"]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._lock_fd, self.lock_id, self._written = fd, lock_id, None
        try:
            yield lock_id
        finally:
            self._written, self._encoded = None, {}
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock_fd, self.lock_id = None, None

    def unlock(self, lock_id: str) -> str:
        """Break a lock left behind. An OS lock dies with its process, so what
        can be left is the holder record of a process that is gone (or a lock on
        a shared filesystem whose holder crashed)."""
        holder = self._holder()
        if not holder:
            raise errors.LockError(f"state {self.path} is not locked")
        if holder.get("id") != lock_id:
            raise errors.LockError(f"lock ID {lock_id} does not match the lock on {self.path} "
                                   f"(held by {locks.describe(holder)})")
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise errors.LockError(
                    f"lock {lock_id} is held by a running process ({locks.describe(holder)}); "
                    "stop that process first") from None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return f"Lock {lock_id} on {self.path} released."

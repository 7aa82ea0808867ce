"""The S3 state backend: the state object replaced with conditional writes
(If-Match on the ETag read, If-None-Match for the first), the previous
version copied to ``<key>.backup`` first, and a lock object ``<key>.lock``
created with If-None-Match so only one holder can exist; it names its
holder, and ``state unlock ID`` deletes a lock left by a crashed run. A lock
is deleted only with If-Match on the ETag of the lock object its holder saw,
so a run never deletes a lock another run took meanwhile."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from reconciler import errors
from reconciler.state import locks, model


class S3Backend:
    def __init__(self, objects: Any, key: str) -> None:
        self.objects = objects  # aws.s3.S3Objects
        self.key = key
        self.lock_key = key + ".lock"
        self.backup_key = key + ".backup"
        self.lock_id: str | None = None
        # what this lock holder wrote last (body, ETag, state), so later writes need no GET
        self._written: tuple[bytes, str, model.State] | None = None
        self._encoded: model.EncodeCache = {}

    def describe(self) -> str:
        return f"s3://{self.objects.bucket}/{self.key}"

    def read(self) -> model.State:
        found = self.objects.get(self.key)
        return self._parse(found[0]) if found is not None else model.State.empty()

    def _parse(self, body: bytes) -> model.State:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise errors.StateError(f"{self.describe()}: state is not valid JSON ({exc.msg}); the previous "
                                    f"version is in s3://{self.objects.bucket}/{self.backup_key}") from exc
        return model.State.from_json(data, origin=self.describe())

    def write(self, state: model.State) -> model.State:
        if self.lock_id is None:
            raise errors.StateError("internal: state written without holding the lock")
        previous: bytes | None
        etag: str | None
        if self._written is None:  # first write under this lock: see what is there
            found = self.objects.get(self.key)
            previous, etag = found if found is not None else (None, None)
            current = self._parse(previous) if previous is not None else model.State.empty()
        else:  # we hold the lock and wrote last; If-Match still catches anyone else
            previous, etag, current = self._written
        written = model.successor(state, current, self.describe())
        if previous is not None:
            self.objects.put(self.backup_key, previous)
        body = model.dumps(written, self._encoded).encode()
        new_etag = self.objects.put(self.key, body, if_match=etag, if_absent=etag is None)
        if new_etag is None:
            raise errors.StateError(f"{self.describe()}: state was changed by someone else during this run "
                                    "(conditional write refused); nothing was overwritten")
        self._written = (body, new_etag, written)
        return written

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[str]:
        holder = locks.new_holder(operation)
        lock_id = holder["id"]
        deadline = time.monotonic() + timeout
        while (etag := self.objects.put(self.lock_key, json.dumps(holder).encode(), if_absent=True)) is None:
            if time.monotonic() >= deadline:
                raise errors.LockError(
                    f"state {self.describe()} is locked by {locks.describe(self._holder()[0])}; "
                    "wait for it to finish, retry with --lock-timeout, or if that run is gone "
                    "run `reconciler state unlock ID`")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self.lock_id, self._written, self._encoded = lock_id, None, {}
        try:
            yield lock_id
        finally:
            self.lock_id, self._written, self._encoded = None, None, {}
            # only the lock object this run wrote: if it was broken and taken by another
            # run meanwhile, its ETag differs and that run's lock stays
            self.objects.delete(self.lock_key, if_match=etag)

    def _holder(self) -> tuple[dict[str, Any] | None, str | None]:
        """The lock's holder record (None if unreadable) and the lock object's ETag."""
        found = self.objects.get(self.lock_key)
        if found is None:
            return None, None
        try:
            return json.loads(found[0]), found[1]
        except json.JSONDecodeError:
            return None, found[1]

    def unlock(self, lock_id: str) -> str:
        holder, etag = self._holder()
        if etag is None:
            raise errors.LockError(f"state {self.describe()} is not locked")
        if holder is None or holder.get("id") != lock_id:
            raise errors.LockError(f"lock ID {lock_id} does not match the lock on {self.describe()} "
                                   f"(held by {locks.describe(holder)})")
        if not self.objects.delete(self.lock_key, if_match=etag):
            raise errors.LockError(f"the lock on {self.describe()} changed while unlocking (lock ID "
                                   f"{lock_id} was released or taken over); nothing was deleted")
        return f"Lock {lock_id} on {self.describe()} released."

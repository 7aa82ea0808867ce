"""The S3 state backend: the state object replaced with conditional writes
(If-Match on the ETag read, If-None-Match for the first), the previous
version copied to ``<key>.backup`` first, and a lock only one holder can
take: a lock object ``<key>.lock`` created with If-None-Match, or (with
``lockTable``) an item of a DynamoDB table in Terraform's layout (hash key
``LockID`` = ``<bucket>/<key>``, the holder in ``Info``) created with
``attribute_not_exists(LockID)``. Either names its holder, and ``state
unlock ID`` breaks one left by a crashed run. A lock is released only while
it is still the one its holder took (If-Match on the lock object's ETag, or
``Info = :seen`` on the item), so a run never deletes a lock another run
took meanwhile.

With ``encryptWith`` the state object and its backup are envelope-encrypted
(state/encryption.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any, Protocol

from reconciler import errors
from reconciler.state import encryption, locks, model


class Lock(Protocol):
    """Where a lock is held: take it, see who holds it, release what one took."""

    where: str  # said after the state's name in lock messages ("" for the lock object)

    def take(self, holder: dict[str, Any]) -> str | None:
        """Take the lock; a token for ``release``, or None when it is held."""

    def current(self) -> tuple[dict[str, Any] | None, str | None]:
        """The holder record (None if unreadable) and a release token (None: not locked)."""

    def release(self, token: str) -> bool:
        """Release the lock while it is still the one ``token`` names; False if it changed."""


class ObjectLock:
    """The lock object ``<key>.lock`` (conditional writes)."""

    where = ""

    def __init__(self, objects: Any, key: str) -> None:
        self.objects = objects  # aws.s3.S3Objects
        self.key = key

    def take(self, holder: dict[str, Any]) -> str | None:
        etag: str | None = self.objects.put(self.key, json.dumps(holder).encode(), if_absent=True)
        return etag

    def current(self) -> tuple[dict[str, Any] | None, str | None]:
        found = self.objects.get(self.key)
        if found is None:
            return None, None
        try:
            holder = json.loads(found[0])
        except json.JSONDecodeError:
            return None, found[1]
        return (holder if isinstance(holder, dict) else None), found[1]

    def release(self, token: str) -> bool:
        return bool(self.objects.delete(self.key, if_match=token))


class TableLock:
    """An item of a DynamoDB lock table, in Terraform's layout."""

    def __init__(self, table: Any, lock_id: str) -> None:
        self.table = table  # aws.dynamodb.LockTable
        self.lock_id = lock_id  # <bucket>/<key>, as Terraform names it
        self.where = f" (lock table {table.table}, LockID {lock_id})"

    def take(self, holder: dict[str, Any]) -> str | None:
        info = locks.terraform_info(holder, self.lock_id)
        return info if self.table.put_if_absent(self.lock_id, info) else None

    def current(self) -> tuple[dict[str, Any] | None, str | None]:
        info = self.table.get(self.lock_id)
        if info is None:
            return None, None
        return locks.from_terraform_info(info), info

    def release(self, token: str) -> bool:
        return bool(self.table.delete_if(self.lock_id, token))


class S3Backend:
    def __init__(self, objects: Any, key: str, *, lock: Lock | None = None,
                 cipher: encryption.StateCipher | None = None) -> None:
        self.objects = objects  # aws.s3.S3Objects
        self.key = key
        self.lock_key = key + ".lock"
        self.backup_key = key + ".backup"
        self.locker: Lock = lock or ObjectLock(objects, self.lock_key)
        self.cipher = cipher
        self.lock_id: str | None = None
        # what this lock holder wrote last (body, ETag, state), so later writes need no GET
        self._written: tuple[bytes, str, model.State] | None = None
        self._encoded: model.EncodeCache = {}

    def describe(self) -> str:
        return f"s3://{self.objects.bucket}/{self.key}"

    def read(self) -> model.State:
        found = self.objects.get(self.key)
        return self._parse(found[0]) if found is not None else model.State.empty()

    def read_backup(self) -> model.State | None:
        """The previous version (None when there is none, or it is unreadable)."""
        try:
            found = self.objects.get(self.backup_key)
            return self._parse(found[0]) if found is not None else None
        except errors.StateError:
            return None

    def _plaintext(self, body: bytes) -> bytes:
        if not encryption.is_sealed(body):
            return body  # a plaintext state (with encryptWith: encrypted at its next write)
        if self.cipher is None:
            raise errors.StateError(
                f"{self.describe()}: the state is encrypted (with {encryption.sealed_key(body) or 'a KMS key'}) "
                "but this stack's backend has no encryptWith; set backend.s3.encryptWith to read it")
        return self.cipher.open(body)

    def _parse(self, body: bytes) -> model.State:
        text = self._plaintext(body)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.StateError(f"{self.describe()}: state is not valid JSON ({exc.msg}); the previous "
                                    f"version is in s3://{self.objects.bucket}/{self.backup_key}") from exc
        return model.State.from_json(data, origin=self.describe())

    def write(self, state: model.State, *, replace_lineage: bool = False) -> model.State:
        if self.lock_id is None:
            raise errors.StateError("internal: state written without holding the lock")
        previous: bytes | None
        etag: str | None
        if self._written is None:  # first write under this lock: see what is there
            found = self.objects.get(self.key)
            previous, etag = found if found is not None else (None, None)
            current = self._current(previous, tolerate_damage=replace_lineage)
            current = model.above_backup(current, self.read_backup())
        else:  # we hold the lock and wrote last; If-Match still catches anyone else
            previous, etag, current = self._written
        written = model.successor(state, current, self.describe(), replace_lineage=replace_lineage)
        body = model.dumps(written, self._encoded).encode()
        backup = previous
        if self.cipher is not None:
            key_arn = self.cipher.key_for(written, current, previous=previous)
            if key_arn is None:
                raise errors.StateError(_no_key(self.cipher))
            body = self.cipher.seal(body, key_arn)
            if previous is not None and not encryption.is_sealed(previous):
                backup = self.cipher.seal(previous, key_arn)  # a plaintext predecessor: its backup too
        if backup is not None:
            self.objects.put(self.backup_key, backup)
        new_etag = self.objects.put(self.key, body, if_match=etag, if_absent=etag is None)
        if new_etag is None:
            raise errors.StateError(f"{self.describe()}: state was changed by someone else during this run "
                                    "(conditional write refused); nothing was overwritten")
        self._written = (body, new_etag, written)
        return written

    def _current(self, previous: bytes | None, *, tolerate_damage: bool) -> model.State:
        return model.current_of(previous, self._parse, tolerate_damage=tolerate_damage)

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[str]:
        holder = locks.new_holder(operation)
        lock_id = holder["id"]
        deadline = time.monotonic() + timeout
        while (token := self.locker.take(holder)) is None:
            if time.monotonic() >= deadline:
                raise errors.LockError(
                    f"state {self.describe()}{self.locker.where} is locked by "
                    f"{locks.describe(self.locker.current()[0])}; wait for it to finish, retry with "
                    "--lock-timeout, or if that run is gone run `reconciler state unlock ID`")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self.lock_id, self._written, self._encoded = lock_id, None, {}
        try:
            self._check_key()
            yield lock_id
        finally:
            self.lock_id, self._written, self._encoded = None, None, {}
            if self.cipher is not None:
                self.cipher.forget()
            # only the lock this run took: if it was broken and taken by another
            # run meanwhile, it changed and that run's lock stays
            self.locker.release(token)

    def _check_key(self) -> None:
        """With encryptWith naming a KmsProvider, its key must be in state before
        any write: checked when the lock is taken, so nothing is half-done."""
        if self.cipher is None or self.cipher.provider is None:
            return
        found = self.objects.get(self.key)
        previous, etag = found if found is not None else (None, None)
        try:
            current = self._current(previous, tolerate_damage=False)
        except errors.StateError:
            return  # damaged: said by the command's own read (`state push --force` may replace it)
        if self.cipher.key_for(current, previous=previous) is None:
            raise errors.ConfigError(_no_key(self.cipher))
        if previous is not None and etag is not None:
            self._written = (previous, etag, current)  # the first write needs no second GET

    def unlock(self, lock_id: str) -> str:
        holder, token = self.locker.current()
        if token is None:
            raise errors.LockError(f"state {self.describe()}{self.locker.where} is not locked")
        if holder is None or holder.get("id") != lock_id:
            raise errors.LockError(f"lock ID {lock_id} does not match the lock on {self.describe()}"
                                   f"{self.locker.where} (held by {locks.describe(holder)})")
        if not self.locker.release(token):
            raise errors.LockError(f"the lock on {self.describe()} changed while unlocking (lock ID "
                                   f"{lock_id} was released or taken over); nothing was deleted")
        return f"Lock {lock_id} on {self.describe()}{self.locker.where} released."


def _no_key(cipher: encryption.StateCipher) -> str:
    return (f"{cipher.where}: backend.s3.encryptWith names {cipher.provider}, which is not in state yet, "
            "so there is no key to encrypt the state with (a stack's state cannot be encrypted with a key "
            f"the same stack has not created). Apply {cipher.provider} first without encryptWith, then "
            "set encryptWith; or give encryptWith a key ARN")

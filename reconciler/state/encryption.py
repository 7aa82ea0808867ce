"""Envelope encryption of the S3 state object (``backend.s3.encryptWith``).

The stored object is one JSON document, the marker first::

    {"reconcilerState": "encrypted-v1", "keyArn": ..., "context": {...},
     "wrappedKey": ..., "nonce": ..., "ciphertext": ...}

The state's text is AES-256-GCM (``cryptography``'s AESGCM) under a data key
from KMS ``GenerateDataKey``; the data key is wrapped by the KMS key under an
encryption context naming the stack and the state key
(``reconciler:stack``, ``reconciler:state-key``), and the header (marker,
key ARN, context) is the GCM associated data. Decryption always asks KMS
with the context of the stack reading it, never the one the object claims:
an object copied from another stack's state, or one whose header was edited,
is refused by KMS. Nothing but the key ARN, the stack name and the state key
is readable in the object.

One data key serves every write made under one lock (a fresh nonce for each),
so an apply costs one GenerateDataKey, not one per resource.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler import errors
from reconciler.state import model

MARKER = "encrypted-v1"
_PREFIX = b'{"reconcilerState"'
NONCE_BYTES = 12
INVALID_CIPHERTEXT = "InvalidCiphertextException"


class KeyCrypto(Protocol):
    """The two KMS calls (aws.kms.KmsCrypto)."""

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]: ...

    def decrypt(self, blob: bytes, key_id: str, *, context: Mapping[str, str] | None = None,
                algorithm: str | None = None) -> bytes: ...


def is_sealed(raw: bytes) -> bool:
    """Whether ``raw`` is an encrypted state object (not a plaintext state)."""
    return raw.lstrip().startswith(_PREFIX)


def sealed_key(raw: bytes) -> str | None:
    """The key ARN an encrypted object names (None if it is not one, or is unreadable)."""
    if not is_sealed(raw):
        return None
    try:
        value = json.loads(raw).get("keyArn")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _region(key_arn: str) -> str:
    parts = key_arn.split(":")
    return parts[3] if len(parts) > 5 else ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclasses.dataclass(slots=True)
class StateCipher:
    """Seals and opens one stack's state object.

    The key is ``key_arn`` when ``encryptWith`` gives an ARN; when it names a
    KmsProvider (``provider``, an address), the key is the one state records
    for it (the state being written, else the one read, else the key the
    object was last sealed with)."""

    stack: str
    state_key: str  # the S3 key of the state object
    where: str  # s3://bucket/key, for messages
    crypto_for: Callable[[str], KeyCrypto] = dataclasses.field(repr=False)  # region -> KMS
    key_arn: str | None = None
    provider: str | None = None
    _data_keys: dict[str, tuple[bytes, bytes]] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def context(self) -> dict[str, str]:
        return {"reconciler:stack": self.stack, "reconciler:state-key": self.state_key}

    def describe_key(self) -> str:
        return self.key_arn or f"{self.provider}'s key"

    def key_for(self, *states: model.State, previous: bytes | None = None) -> str | None:
        """The key to seal with, from the first of ``states`` that records it."""
        if self.key_arn:
            return self.key_arn
        for state in states:
            entry = state.resources.get(self.provider or "")
            arn = entry.ids.get("arn") if entry is not None else None
            if isinstance(arn, str) and arn:
                return arn
        return sealed_key(previous) if previous is not None else None

    def forget(self) -> None:
        """Drop the cached data keys (the lock was released)."""
        self._data_keys.clear()

    # -- sealing -------------------------------------------------------------
    def _header(self, key_arn: str, context: Mapping[str, str]) -> dict[str, Any]:
        return {"reconcilerState": MARKER, "keyArn": key_arn, "context": dict(context)}

    @staticmethod
    def _associated(header: Mapping[str, Any]) -> bytes:
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()

    def seal(self, plaintext: bytes, key_arn: str) -> bytes:
        cached = self._data_keys.get(key_arn)
        if cached is None:
            try:
                cached = self.crypto_for(_region(key_arn)).generate_data_key(key_arn, self.context)
            except errors.AwsError as exc:
                raise type(exc)(f"{self.where}: cannot encrypt the state with {key_arn}: {exc}", exc.code) from exc
            self._data_keys[key_arn] = cached
        data_key, wrapped = cached
        header = self._header(key_arn, self.context)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, self._associated(header))
        body = {**header, "wrappedKey": _b64(wrapped), "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
        return json.dumps(body).encode() + b"\n"  # insertion order: the marker first (is_sealed)

    # -- opening -------------------------------------------------------------
    def open(self, raw: bytes) -> bytes:
        """The state text of an encrypted object, or a clear StateError."""
        try:
            body = json.loads(raw)
            header = self._header(str(body["keyArn"]), dict(body["context"]))
            wrapped, nonce, ciphertext = (base64.b64decode(body[f], validate=True)
                                          for f in ("wrappedKey", "nonce", "ciphertext"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise errors.StateError(f"{self.where}: the encrypted state object is malformed "
                                    f"({type(exc).__name__}){model.REPAIR}") from None
        key_arn, claimed = header["keyArn"], header["context"]
        try:
            data_key = self.crypto_for(_region(key_arn)).decrypt(wrapped, key_arn, context=self.context)
        except errors.AwsError as exc:
            if exc.code == INVALID_CIPHERTEXT:
                raise errors.StateError(self._refused(key_arn, claimed)) from exc
            raise type(exc)(f"{self.where}: cannot decrypt the state with {key_arn}: {exc}", exc.code) from exc
        try:
            return AESGCM(data_key).decrypt(nonce, ciphertext, self._associated(header))
        except (InvalidTag, ValueError):
            raise errors.StateError(f"{self.where}: the encrypted state failed authentication (it was "
                                    f"changed after it was written){model.REPAIR}") from None

    def _refused(self, key_arn: str, claimed: Mapping[str, Any]) -> str:
        ours = self.context
        if dict(claimed) != ours:
            return (f"{self.where}: cannot decrypt the state: the object was encrypted for stack "
                    f"{claimed.get('reconciler:stack', '?')} (state key {claimed.get('reconciler:state-key', '?')}), "
                    f"not for stack {self.stack} (state key {self.state_key}), and KMS refuses its data key "
                    f"under this stack's encryption context; it was copied from another stack's state: "
                    f"restore this stack's own object (its .backup, or an earlier S3 version)")
        return (f"{self.where}: cannot decrypt the state: KMS refused its data key under this stack's "
                f"encryption context (stack {self.stack}, state key {self.state_key}) with key {key_arn}: "
                f"the object was altered, or not written for this stack{model.REPAIR}")

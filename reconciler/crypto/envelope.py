"""The envelope format. Pure: no KMS here.

    rcl:v1:<header>:<wrapped key>:<nonce>:<ciphertext+tag>

each part base64url without padding. The header is compact JSON naming the
KMS key ARN (``k``), the wrapping algorithm (``a``: ``SYMMETRIC_DEFAULT``
for a data key from GenerateDataKey, ``RSAES_OAEP_SHA_256`` for a local data
key wrapped with the key's public half) and the binding (``c``: stack,
vault, secret). The value is AES-256-GCM under a fresh 32-byte data key with
the literal ``rcl:v1:<header>`` as associated data, so a changed byte
anywhere (header included) fails decryption; for symmetric keys the same
binding is also the KMS encryption context of the wrapped key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler import errors

PREFIX = "rcl:v1:"
SYMMETRIC = "SYMMETRIC_DEFAULT"
RSA_OAEP = "RSAES_OAEP_SHA_256"
ALGORITHMS = (SYMMETRIC, RSA_OAEP)
MAX_VALUE_BYTES = 64 * 1024
MAX_HEADER_CHARS = 2048  # base64 of the header JSON: a key ARN and three names fit in ~500
KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-)?[A-Za-z0-9-]{1,64}")
NONCE_BYTES = 12
DATA_KEY_BYTES = 32


class EnvelopeError(errors.ReconcilerError):
    """An envelope that is malformed, tampered with, or bound elsewhere."""


@dataclasses.dataclass(frozen=True, slots=True)
class Binding:
    stack: str
    vault: str
    secret: str

    def context(self) -> dict[str, str]:
        """The KMS encryption context."""
        return {"reconciler:stack": self.stack, "reconciler:vault": self.vault,
                "reconciler:secret": self.secret}

    def describe(self) -> str:
        return f"stack {self.stack}, vault {self.vault}, secret {self.secret}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    key_arn: str
    algorithm: str
    binding: Binding
    wrapped_key: bytes = dataclasses.field(repr=False)
    nonce: bytes = dataclasses.field(repr=False)
    ciphertext: bytes = dataclasses.field(repr=False)

    @property
    def header(self) -> str:
        body = {"a": self.algorithm, "c": dataclasses.asdict(self.binding), "k": self.key_arn}
        return _b64(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())

    @property
    def aad(self) -> bytes:
        return (PREFIX + self.header).encode()

    def to_string(self) -> str:
        return ":".join([PREFIX + self.header, _b64(self.wrapped_key), _b64(self.nonce),
                         _b64(self.ciphertext)])

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, text: str) -> Envelope:
        if not isinstance(text, str) or not text.startswith(PREFIX):
            raise EnvelopeError("not a reconciler envelope (expected rcl:v1:...)")
        parts = text[len(PREFIX):].strip().split(":")
        if len(parts) != 4:
            raise EnvelopeError(f"malformed envelope: expected 4 parts after rcl:v1:, found {len(parts)}")
        if len(parts[0]) > MAX_HEADER_CHARS:
            raise EnvelopeError(f"malformed envelope: its header is longer than {MAX_HEADER_CHARS} characters")
        try:
            header = json.loads(_unb64(parts[0]))
            wrapped, nonce, ciphertext = (_unb64(p) for p in parts[1:])
            binding = Binding(**header["c"])
            envelope = cls(header["k"], header["a"], binding, wrapped, nonce, ciphertext)
        except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise EnvelopeError("malformed envelope: its header or a part is not valid") from exc
        if not all(isinstance(v, str) for v in (envelope.key_arn, envelope.algorithm, binding.stack,
                                                binding.vault, binding.secret)):
            raise EnvelopeError("malformed envelope: its header or a part is not valid")
        if not KEY_ARN.fullmatch(envelope.key_arn):
            raise EnvelopeError("malformed envelope: its header does not name a KMS key ARN")
        if envelope.algorithm not in ALGORITHMS:
            raise EnvelopeError(f"envelope uses unknown wrapping algorithm {envelope.algorithm!r}")
        if len(nonce) != NONCE_BYTES or len(ciphertext) < 16 or not wrapped:
            raise EnvelopeError("malformed envelope: truncated")
        if envelope.to_string() != text.strip():
            raise EnvelopeError("malformed envelope: not in canonical form")
        return envelope

    def check_binding(self, expected: Binding) -> None:
        if self.binding != expected:
            renamed = (f" (or, if the stack was renamed from {self.binding.stack}, list {self.binding.stack} "
                       "under the Stack's spec.formerNames)") if (self.binding.vault, self.binding.secret) == (
                           expected.vault, expected.secret) and self.binding.stack != expected.stack else ""
            raise EnvelopeError(f"the envelope is bound to {self.binding.describe()}, not to "
                                f"{expected.describe()}; encrypt the value for this name with "
                                f"`reconciler secret encrypt`{renamed}")


def seal(value: bytes, data_key: bytes, *, key_arn: str, algorithm: str, binding: Binding,
         wrapped_key: bytes) -> Envelope:
    """Encrypt ``value`` under ``data_key`` (AES-256-GCM, fresh nonce)."""
    if len(value) > MAX_VALUE_BYTES:
        raise EnvelopeError(f"secret value is larger than {MAX_VALUE_BYTES} bytes")
    if len(data_key) != DATA_KEY_BYTES:
        raise EnvelopeError("data key must be 32 bytes")
    draft = Envelope(key_arn, algorithm, binding, wrapped_key, secrets.token_bytes(NONCE_BYTES), b"\0" * 16)
    ciphertext = AESGCM(data_key).encrypt(draft.nonce, value, draft.aad)
    return dataclasses.replace(draft, ciphertext=ciphertext)


def unseal(envelope: Envelope, data_key: bytes) -> bytes:
    try:
        return AESGCM(data_key).decrypt(envelope.nonce, envelope.ciphertext, envelope.aad)
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError("the envelope does not decrypt: it was changed or damaged "
                            "(authentication failed)") from exc


def binding_of(context: Mapping[str, str]) -> Binding:
    return Binding(context["reconciler:stack"], context["reconciler:vault"], context["reconciler:secret"])

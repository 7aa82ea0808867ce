"""Wrapping and unwrapping data keys with the vault's KMS key.

Symmetric keys: GenerateDataKey / Decrypt with the binding as encryption
context. RSA keys: a local random data key wrapped with the public key from
GetPublicKey (RSAES_OAEP_SHA_256), cached per key ARN so encrypting costs no
KMS call after the first; unwrapped with kms:Decrypt.

Small keys of reconciler's own (a vault's fingerprint key) are sealed the
same way and unwrapped once per run (cached here, failures too), so a plan
costs one KMS call per such key whatever the number of secrets."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reconciler import errors
from reconciler.aws import factory
from reconciler.aws import kms as kms_adapter
from reconciler.crypto import envelope as env

T = TypeVar("T")
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def region_of(arn: str) -> str:
    return arn.split(":")[3]


def in_region(arn: str, region: str) -> str:
    """The same multi-Region key's ARN in another region."""
    parts = arn.split(":")
    parts[3] = region
    return ":".join(parts)


class Keyring:
    """Takes the adapter factory, not the apply context: crypto sits below kinds."""

    def __init__(self, adapters: factory.Adapters) -> None:
        self.adapters = adapters
        self._public: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()
        self._small: dict[str, bytes | errors.ReconcilerError] = {}  # envelope text -> key (or why not)
        self._made: dict[tuple[str, str, env.Binding], tuple[bytes, str]] = {}
        self._keys: dict[str, bool] = {}  # key ARN -> exists
        self._indexes: dict[str, tuple[object, Any]] = {}
        self._small_lock = threading.Lock()

    def _crypto(self, connection: Mapping[str, Any], arn: str) -> kms_adapter.KmsCrypto:
        return kms_adapter.KmsCrypto(self.adapters.kms(region_of(arn), connection.get("auth")))

    def _public_key(self, connection: Mapping[str, Any], arn: str) -> rsa.RSAPublicKey:
        with self._lock:
            if arn not in self._public:
                der = self._crypto(connection, arn).public_key(arn)
                key = serialization.load_der_public_key(der)
                if not isinstance(key, rsa.RSAPublicKey):
                    raise errors.AwsError(f"{arn} is not an RSA key")
                self._public[arn] = key
            return self._public[arn]

    def encrypt(self, value: bytes, *, key_arn: str, key_spec: str, binding: env.Binding,
                connection: Mapping[str, Any]) -> env.Envelope:
        try:
            if key_spec == env.SYMMETRIC:
                data_key, wrapped = self._crypto(connection, key_arn).generate_data_key(key_arn, binding.context())
                algorithm = env.SYMMETRIC
            else:
                data_key = os.urandom(env.DATA_KEY_BYTES)
                wrapped = self._public_key(connection, key_arn).encrypt(data_key, _OAEP)
                algorithm = env.RSA_OAEP
        except errors.AwsError as exc:
            raise _explain(exc, key_arn) from None
        return env.seal(value, data_key, key_arn=key_arn, algorithm=algorithm, binding=binding,
                        wrapped_key=wrapped)

    def decrypt(self, envelope: env.Envelope, *, binding: env.Binding, connection: Mapping[str, Any],
                region: str | None = None) -> bytes:
        """The value; ``region`` decrypts with the multi-Region replica there."""
        envelope.check_binding(binding)
        arn = in_region(envelope.key_arn, region) if region else envelope.key_arn
        crypto = self._crypto(connection, arn)
        try:
            if envelope.algorithm == env.SYMMETRIC:
                data_key = crypto.decrypt(envelope.wrapped_key, arn, context=binding.context())
            else:
                data_key = crypto.decrypt(envelope.wrapped_key, arn, algorithm=env.RSA_OAEP)
        except errors.AwsNotFound as exc:
            if region:
                raise errors.AwsNotFound(f"no replica of {envelope.key_arn} in {region}: --region needs a "
                                         "multi-Region key replicated there (replicaRegions)", exc.code) from None
            raise _explain(exc, arn) from None
        except errors.AwsError as exc:
            raise _explain(exc, arn) from None
        return env.unseal(envelope, data_key)


    def unwrap_cached(self, sealed: str, *, binding: env.Binding, connection: Mapping[str, Any]) -> bytes:
        """A small key from its one-line envelope, decrypted at most once per run."""
        with self._small_lock:
            if sealed not in self._small:
                try:
                    self._small[sealed] = self.decrypt(env.Envelope.parse(sealed), binding=binding,
                                                       connection=connection)
                except errors.ReconcilerError as exc:
                    self._small[sealed] = exc
            found = self._small[sealed]
        if isinstance(found, errors.ReconcilerError):
            raise found
        return found

    def new_small_key(self, *, key_arn: str, key_spec: str, binding: env.Binding,
                      connection: Mapping[str, Any]) -> tuple[bytes, str]:
        """32 random bytes and their envelope under ``key_arn``: one per key and
        binding per run, so every secret a run fingerprints shares it."""
        with self._small_lock:
            made = self._made.get((key_arn, key_spec, binding))
            if made is None:
                key = os.urandom(env.DATA_KEY_BYTES)
                sealed = self.encrypt(key, key_arn=key_arn, key_spec=key_spec, binding=binding,
                                      connection=connection).to_string()
                made = self._made[(key_arn, key_spec, binding)] = (key, sealed)
                self._small[sealed] = key
            return made

    def per_state(self, state: object, name: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per state object (states are immutable: apply
        replaces the object), so per-secret lookups stay O(1) at 10,000."""
        with self._small_lock:
            held = self._indexes.get(name)
            if held is None or held[0] is not state:
                held = self._indexes[name] = (state, compute())
            return cast(T, held[1])

    def key_exists(self, arn: str, *, connection: Mapping[str, Any]) -> bool:
        """Whether a KMS key still exists (DescribeKey, once per key per run)."""
        with self._small_lock:
            if arn not in self._keys:
                kms = self.adapters.kms(region_of(arn), connection.get("auth"))
                self._keys[arn] = kms.describe_key(arn) is not None
            return self._keys[arn]


def _explain(exc: errors.AwsError, arn: str) -> errors.ReconcilerError:
    match exc.code:
        case "DisabledException":
            return errors.AwsError(f"KMS key {arn} is disabled, so nothing it wraps can be read or "
                                   "written; re-enable it (`reconciler apply` does for keys it manages, "
                                   f"or `aws kms enable-key --key-id {arn}`)", exc.code)
        case "KMSInvalidStateException":
            return errors.AwsError(f"KMS key {arn} is pending deletion (or otherwise unusable); cancel the "
                                   f"deletion now (`aws kms cancel-key-deletion --key-id {arn}`, then "
                                   "enable it) or every secret it wraps is lost", exc.code)
        case "InvalidCiphertextException":
            return env.EnvelopeError(f"the envelope does not decrypt under {arn}: it was made for another "
                                     "key or name, or it was damaged")
        case _:
            return exc

"""A stack on disk: its manifests, loaded and validated, and the state
backend its Stack document names."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import factory, kms, session
from reconciler.manifest import model as manifest
from reconciler.state import backend as state_backend
from reconciler.state import encryption, local
from reconciler.state import s3 as s3_state

DEFAULT_STATE_PATH = ".reconciler/state.json"


@dataclasses.dataclass(frozen=True)
class Workspace:
    config: manifest.Config
    backend: state_backend.Backend
    warnings: tuple[errors.Diagnostic, ...]


def backend_for(config: manifest.Config) -> state_backend.Backend:
    match dict(config.stack.backend):
        case {"local": spec}:
            path = pathlib.Path(spec.get("path", DEFAULT_STATE_PATH))
            if not path.is_absolute():
                path = config.source.directory / path
            return local.LocalBackend(path)
        case {"s3": spec}:
            region = spec.get("region") or config.stack.region
            if not region:
                raise errors.ConfigError(f"Stack/{config.stack.name}: the s3 backend needs a region "
                                         "(backend.s3.region or spec.region)")
            adapters = factory.Adapters(session.ClientFactory(), config.source.directory)
            lock = (s3_state.TableLock(adapters.lock_table(region, config.stack.auth, spec["lockTable"]),
                                       f"{spec['bucket']}/{spec['key']}") if spec.get("lockTable") else None)
            return s3_state.S3Backend(adapters.s3_objects(region, config.stack.auth, spec["bucket"]), spec["key"],
                                      lock=lock, cipher=_state_cipher(config, adapters, spec))
        case other:
            raise errors.ConfigError(f"Stack/{config.stack.name}: unknown backend {sorted(other)}")


def _state_cipher(config: manifest.Config, adapters: factory.Adapters,
                  spec: Mapping[str, Any]) -> encryption.StateCipher | None:
    """``encryptWith``: a key ARN (used with the Stack's auth), or the name of a
    KmsProvider of this stack (its key as state records it, used with that
    KmsProvider's auth); it must be symmetric and protected, since the state
    cannot be read once its key is gone."""
    named = spec.get("encryptWith")
    if not named:
        return None
    where = f"s3://{spec['bucket']}/{spec['key']}"
    position = config.stack.document.position(("spec", "backend", "s3", "encryptWith")) \
        if config.stack.document is not None else config.stack.name
    auth: Mapping[str, Any] | None = config.stack.auth
    key_arn, provider = (named, None) if named.startswith("arn:") else (None, f"KmsProvider/{named}")
    if provider is not None:
        resource = config.resources.get(provider)
        if resource is None:
            raise errors.ConfigError(f"{position}: encryptWith names {provider}, which this stack does not "
                                     "declare; name one of its KmsProviders or give a KMS key ARN")
        if resource.spec.get("spec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            raise errors.ConfigError(f"{position}: encryptWith names {provider}, an {resource.spec['spec']} "
                                     "key; state encryption needs a SYMMETRIC_DEFAULT key (GenerateDataKey)")
        if resource.spec.get("protect", True) is not True:
            raise errors.ConfigError(f"{position}: encryptWith names {provider}, which has protect: false; "
                                     "the key that encrypts a stack's state must be protected (were it "
                                     "deleted, the state could never be read again)")
        auth = config.auth_of(resource)

    def crypto_for(region: str) -> kms.KmsCrypto:
        return kms.KmsCrypto(adapters.kms(region, auth))

    return encryption.StateCipher(config.stack.name, spec["key"], where, crypto_for, key_arn=key_arn,
                                  provider=provider)


def open_stack(directory: str | pathlib.Path) -> Workspace:
    config, warnings = manifest.load_or_raise(str(directory))
    return Workspace(config, backend_for(config), tuple(warnings))

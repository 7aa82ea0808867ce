"""The `secret` commands' work: envelopes for manifests, values and history
read back from a vault's store. The CLI only parses and prints. Values and
history are read where state records the data (a store edited in the
manifests but not applied yet holds nothing); envelopes are made for the
vault as declared."""

from __future__ import annotations

import dataclasses
import pathlib

from reconciler import engine, errors
from reconciler.crypto import envelope as env
from reconciler.kinds import base
from reconciler.kinds import vault as vaults
from reconciler.stores import base as store_base


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRow:
    number: int
    created_at: str
    key_arn: str
    current: bool


def _context(directory: str | pathlib.Path) -> tuple[engine.Workspace, base.AwsContext]:
    workspace = engine.open_stack(directory)
    aws = engine.new_context(workspace)
    aws.desired = engine.desired_of(workspace.config, resolve_values=False)
    aws.state = workspace.backend.read()
    return workspace, aws


def split(address: str) -> tuple[str, str]:
    vault, _, name = address.partition("/")
    if not vault or not name:
        raise errors.ConfigError(f"{address}: expected VAULT/NAME")
    return vault, name


def encrypt(directory: str | pathlib.Path, vault: str, name: str, value: bytes) -> str:
    """A one-line envelope of ``value`` for Secret ``name`` in ``vault``."""
    if not value:
        raise errors.ConfigError("no value on standard input")
    workspace, aws = _context(directory)
    info = vaults.resolve(aws, vault)
    sealed = aws.keyring.encrypt(value, key_arn=info.key_arn, key_spec=info.key_spec,
                                 binding=env.Binding(workspace.config.stack.name, vault, name),
                                 connection=info.connection)
    return sealed.to_string()


def read(directory: str | pathlib.Path, address: str, *, version: int | None = None,
         region: str | None = None) -> bytes:
    """The value of VAULT/NAME (a kept version; decrypted in ``region`` if given).
    Every error names the secret as VAULT/NAME."""
    vault, name = split(address)
    workspace, aws = _context(directory)
    try:
        info = vaults.resolve_stored(aws, vault, name)
        stored = store_base.get(info.store, name, version)
        sealed = env.Envelope.parse(stored.envelope)
        binding = env.Binding(workspace.config.stack.name, vault, name)
        if vaults.bound_here(aws, sealed.binding, vault, name):
            binding = sealed.binding  # a version stored before the stack was renamed
        return aws.keyring.decrypt(sealed, binding=binding, connection=info.connection, region=region)
    except errors.ReconcilerError as exc:
        raise errors.prefixed(exc, f"{address}: ") from None


def history(directory: str | pathlib.Path, address: str) -> list[HistoryRow]:
    """Kept versions, newest first: numbers, dates and keys, never values."""
    _workspace, aws = _context(directory)
    vault, name = split(address)
    info = vaults.resolve_stored(aws, vault, name)
    versions = info.store.versions(name)
    if not versions:
        raise errors.ConfigError(f"{address}: no such secret in {info.store.describe()}")
    return [HistoryRow(v.number, v.created_at, env.Envelope.parse(v.envelope).key_arn, v is versions[-1])
            for v in reversed(versions)]

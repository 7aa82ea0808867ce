"""A stack on disk: its manifests, loaded and validated, and the state
backend its Stack document names."""

from __future__ import annotations

import dataclasses
import pathlib

from reconciler import errors
from reconciler.aws import factory, session
from reconciler.manifest import model as manifest
from reconciler.state import backend as state_backend
from reconciler.state import local
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
            return s3_state.S3Backend(adapters.s3_objects(region, config.stack.auth, spec["bucket"]), spec["key"])
        case other:
            raise errors.ConfigError(f"Stack/{config.stack.name}: unknown backend {sorted(other)}")


def open_stack(directory: str | pathlib.Path) -> Workspace:
    config, warnings = manifest.load_or_raise(str(directory))
    return Workspace(config, backend_for(config), tuple(warnings))

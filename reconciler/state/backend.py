"""What every state backend offers (local file, S3 object)."""

from __future__ import annotations

import contextlib
from typing import Protocol

from reconciler.state import model


class Backend(Protocol):
    def describe(self) -> str: ...

    def read(self) -> model.State: ...

    def write(self, state: model.State, *, replace_lineage: bool = False) -> model.State:
        """Write ``state`` as the next serial (only while holding the lock), keeping
        the previous version as a backup; ``replace_lineage`` (`state push --force`)
        writes over a state of another lineage, or over a damaged one."""

    def lock(self, operation: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[str]:
        """Hold the lock for a state-changing command; yields the lock ID."""

    def unlock(self, lock_id: str) -> str: ...

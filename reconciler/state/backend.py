"""What every state backend offers (local file, S3 object)."""

from __future__ import annotations

import contextlib
from typing import Protocol

from reconciler import errors
from reconciler.state import model


class Backend(Protocol):
    def describe(self) -> str: ...

    def read(self) -> model.State: ...

    def read_backup(self) -> model.State | None:
        """The previous version, kept at every write (None when there is none)."""

    def write(self, state: model.State, *, replace_lineage: bool = False) -> model.State:
        """Write ``state`` as the next serial (only while holding the lock), keeping
        the previous version as a backup; ``replace_lineage`` (`state push --force`)
        writes over a state of another lineage, or over a damaged one."""

    def lock(self, operation: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[str]:
        """Hold the lock for a state-changing command; yields the lock ID."""

    def unlock(self, lock_id: str) -> str: ...


ROLLBACK_HINT = ("re-run with --force to go on with it (keys, roles, OIDC providers and vault entries made since "
                 "are found by their tags or bindings, never made twice; rotations and leases made since are not "
                 "in it)")


def check_rollback(backend: Backend, state: model.State, *, force: bool) -> None:
    """A state whose serial went backwards (restored from an older copy) or that
    is missing while its backup is there is refused unless ``force``: what was
    applied since is not in it. The backup is the previous version, so an
    older serial than the backup's cannot come from reconciler's own writes."""
    if force:
        return
    backup = backend.read_backup()
    if backup is None or backup.lineage is None:
        return
    where = backend.describe()
    if state.lineage is None and state.serial == 0 and not state.resources:
        raise errors.StateError(f"{where}: the state is missing, but its backup holds serial {backup.serial} "
                                f"(lineage {backup.lineage}); restore it from the backup, or {ROLLBACK_HINT}")
    if state.lineage == backup.lineage and state.serial < backup.serial:
        raise errors.StateError(f"{where}: the state's serial went backwards ({state.serial}, its backup has "
                                f"{backup.serial}): it was restored from an older copy; restore the newest "
                                f"copy, or {ROLLBACK_HINT}")

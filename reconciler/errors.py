"""The error tree. Every expected failure is one of these; the CLI prints
``str(error)`` on one line and exits with ``error.exit_code``.

    ReconcilerError                  exit 1, one line
    ├── ManifestError                a list of Diagnostics (file:line:col)
    ├── StateError                   state file unreadable / wrong lineage
    │   └── LockError                state locked by someone else
    ├── PlanError                    plan refused (stale, protected, already applied)
    ├── ConfigError                  env var missing, backend unsupported ...
    └── AwsError                     translated botocore errors (see aws/errors.py)
        ├── AwsAccessDenied
        ├── AwsNotFound
        └── AwsThrottled

Nothing here may carry a secret value: messages are built from names, ids,
AWS error codes and positions only.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the manifests."""

    message: str
    position: Position | None = None
    address: str | None = None  # "Kind/name"
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        parts = []
        if self.position is not None:
            parts.append(str(self.position))
        if self.address:
            parts.append(self.address)
        prefix = ": ".join(parts)
        label = "" if self.severity == "error" else f"{self.severity}: "
        return f"{prefix}: {label}{self.message}" if prefix else f"{label}{self.message}"


class ReconcilerError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ManifestError(ReconcilerError):
    """One or more problems in the manifests, all collected before raising."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class StateError(ReconcilerError):
    pass


class LockError(StateError):
    pass


class PlanError(ReconcilerError):
    pass


class ConfigError(ReconcilerError):
    pass


class AwsError(ReconcilerError):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AwsAccessDenied(AwsError):
    pass


class AwsNotFound(AwsError):
    pass


class AwsThrottled(AwsError):
    pass


def prefixed(exc: ReconcilerError, prefix: str, suffix: str = "") -> ReconcilerError:
    """The same error, its message naming where it happened (once)."""
    if not exc.message.startswith(prefix):
        exc.message = f"{prefix}{exc.message}{suffix}"
        exc.args = (exc.message,)
    return exc

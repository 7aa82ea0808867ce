"""The one clock. ``RECONCILER_NOW`` (ISO-8601, with or without a zone: UTC
assumed) sets it, so tests and reproducible CI runs plan at a fixed time
instead of sleeping; otherwise the system's UTC time."""

from __future__ import annotations

import datetime
import os

ENV = "RECONCILER_NOW"


def now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    fixed = os.environ.get(ENV)
    if not fixed:
        return datetime.datetime.now(datetime.UTC)
    try:
        when = datetime.datetime.fromisoformat(fixed)
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        from reconciler import errors

        raise errors.ConfigError(f"{ENV}={fixed!r}: not an ISO-8601 time in range (such as "
                                 "2026-01-15T12:00:00Z)") from None


def stamp() -> str:
    """``now()`` as recorded in plans and state: ISO-8601 to the second."""
    return now().isoformat(timespec="seconds")

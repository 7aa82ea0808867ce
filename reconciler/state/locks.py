"""What a state lock records about its holder, and how that is told to the
next comer. Shared by every backend."""

from __future__ import annotations

import contextlib
import datetime
import getpass
import os
import socket
import uuid
from typing import Any


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_holder(operation: str) -> dict[str, Any]:
    """A fresh lock record: a new lock ID, this process, this host, now."""
    return {"id": str(uuid.uuid4()), "pid": os.getpid(), "host": socket.gethostname(),
            "user": getpass.getuser(), "since": now().isoformat(timespec="seconds"), "operation": operation}


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (no holder information)"
    since = holder.get("since", "?")
    age = ""
    with contextlib.suppress(ValueError, TypeError):
        seconds = int((now() - datetime.datetime.fromisoformat(since)).total_seconds())
        age = f" ({seconds}s ago)"
    return (f"PID {holder.get('pid')} on {holder.get('host')} since {since}{age}, "
            f"running {holder.get('operation', '?')} (lock ID {holder.get('id')})")

"""What a state lock records about its holder, and how that is told to the
next comer. Shared by every backend; a DynamoDB lock table holds the same
record in Terraform's ``LockInfo`` shape (``terraform_info``)."""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import os
import socket
import uuid
from typing import Any

from reconciler import __version__


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


def terraform_info(holder: dict[str, Any], path: str) -> str:
    """``holder`` as the ``Info`` of a Terraform lock table item (``LockInfo``:
    ID, Operation, Info, Who, Version, Created, Path), so ``terraform
    force-unlock``-minded operators and tools read it as they know it."""
    return json.dumps({"ID": holder["id"], "Operation": holder["operation"], "Info": f"pid {holder['pid']}",
                       "Who": f"{holder['user']}@{holder['host']}", "Version": f"reconciler {__version__}",
                       "Created": holder["since"], "Path": path}, sort_keys=True)


def from_terraform_info(info: str) -> dict[str, Any] | None:
    """The holder record of a lock table item's ``Info`` (None if unreadable)."""
    try:
        data = json.loads(info)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ID"), str):
        return None
    who = str(data.get("Who", "?"))
    user, _, host = who.rpartition("@") if "@" in who else ("", "", who)
    extra = str(data.get("Info", ""))
    pid = extra.removeprefix("pid ") if extra.startswith("pid ") else "?"
    return {"id": data["ID"], "pid": pid, "host": host, "user": user, "since": data.get("Created", "?"),
            "operation": data.get("Operation", "?")}

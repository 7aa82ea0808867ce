"""AWS request quotas, kept: a parallel apply never sends a write faster than
AWS accepts it, instead of being throttled and backing off.

``QUOTAS`` is the one table: requests per second AWS accepts by default for
an operation, per account and region (the KMS figures are the defaults of
"Request quotas" in the AWS KMS Developer Guide; every one is adjustable).
Each (service, operation, region) of a run has its own sliding one-second
window: a request waits until fewer than its quota were sent in the last
second, so no window of one second ever holds more. Every attempt counts (a
retry is a request to AWS too): the window is kept on botocore's
``before-send`` event. Operations the table does not name are not paced (their
quotas are far above what a run sends).

An account whose quotas were raised says so in ``RECONCILER_REQUEST_QUOTAS``:
``kms:CreateKey=50,kms:PutKeyPolicy=100`` (``=0``: not paced).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler import errors

QUOTAS: dict[tuple[str, str], int] = {
    ("kms", "CreateKey"): 5,
    ("kms", "PutKeyPolicy"): 15,
    ("kms", "TagResource"): 10,
    ("kms", "UntagResource"): 5,
    ("kms", "CreateAlias"): 5,
    ("kms", "UpdateAlias"): 5,
    ("kms", "DeleteAlias"): 5,
    ("kms", "EnableKeyRotation"): 5,
    ("kms", "DisableKeyRotation"): 5,
    ("kms", "UpdateKeyDescription"): 5,
    ("kms", "ScheduleKeyDeletion"): 15,
    ("kms", "ReplicateKey"): 5,
}
WINDOW = 1.0  # seconds: quotas are requests per second
ENV = "RECONCILER_REQUEST_QUOTAS"

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def overrides(text: str | None) -> dict[tuple[str, str], int]:
    """``service:Operation=N,...`` (ENV) as a table."""
    table: dict[tuple[str, str], int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, equals, value = item.strip().partition("=")
        service, colon, operation = name.partition(":")
        try:
            rate = int(value)
        except ValueError:
            rate = -1
        if not equals or not colon or not service or not operation or rate < 0:
            raise errors.ConfigError(f"{ENV}: expected service:Operation=N (whole requests per second), "
                                     f"got {item.strip()!r}")
        table[(service, operation)] = rate
    return table


class Window:
    """At most ``quota`` grants in any ``WINDOW`` of ``clock`` time. A grant is
    reserved under the lock (the earliest time the window has room for it),
    then waited for outside it: callers side by side each get their own slot."""

    def __init__(self, quota: int, clock: Clock, sleep: Sleep) -> None:
        self.quota = max(1, quota)
        self._sent: collections.deque[float] = collections.deque(maxlen=self.quota)
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> float:
        """Wait for a slot; returns the time it was granted for."""
        with self._lock:
            now = self._clock()
            at = now if len(self._sent) < self.quota else max(now, self._sent[0] + WINDOW)
            self._sent.append(at)  # the oldest of the last ``quota`` falls out
        if at > now:
            self._sleep(at - now)
        return at


class Limiter:
    """One run's windows, by (service, operation, region)."""

    def __init__(self, quotas: Mapping[tuple[str, str], int] | None = None, *,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.quotas = dict(QUOTAS if quotas is None else quotas)
        if quotas is None:
            self.quotas.update(overrides(os.environ.get(ENV)))
        self._windows: dict[tuple[str, str, str], Window] = {}
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def window(self, service: str, operation: str, region: str) -> Window | None:
        quota = self.quotas.get((service, operation))
        if not quota:
            return None
        key = (service, operation, region)
        with self._lock:
            if key not in self._windows:
                self._windows[key] = Window(quota, self._clock, self._sleep)
            return self._windows[key]

    def acquire(self, service: str, operation: str, region: str) -> float | None:
        """Wait until a request may be sent (None: the operation is not paced)."""
        window = self.window(service, operation, region)
        return window.acquire() if window is not None else None

    def attach(self, client: Any) -> None:
        """Pace ``client``'s requests of the operations the table names."""
        service = client.meta.service_model.service_name
        event_service = client.meta.service_model.service_id.hyphenize()
        region = client.meta.region_name or ""
        for (quoted, operation), quota in self.quotas.items():
            if quoted == service and quota:
                window = self.window(service, operation, region)
                assert window is not None
                client.meta.events.register(f"before-send.{event_service}.{operation}", _pacer(window))


def _pacer(window: Window) -> Callable[..., None]:
    def pace(**_kwargs: Any) -> None:
        window.acquire()  # returns None: botocore sends the request
    return pace

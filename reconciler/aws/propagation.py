"""IAM is eventually consistent: a role or OIDC provider created a moment ago
may be refused as an "invalid principal" by a policy that names it (AWS
answers MalformedPolicyDocument until the new identity has propagated,
terraform-provider-aws #245, #14449). A call refused that way, while the
policy names an identity created moments ago in this apply, is retried with
bounded backoff; any other refusal, or one that outlasts the budget, fails
with one clear line.

The budget counts the time slept, not a clock: the backoff is bounded even
when the one clock is frozen (``RECONCILER_NOW``), and tests inject ``sleep``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from reconciler import errors
from reconciler.aws import iam

T = TypeVar("T")
BUDGET_SECONDS = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of ``first``, doubling up to ``cap``, until ``budget`` seconds were slept."""

    budget: float = BUDGET_SECONDS
    first: float = 0.5
    cap: float = 8.0
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> list[float]:
        """Every wait, in order: their sum never exceeds ``budget``."""
        found: list[float] = []
        delay = self.first
        while sum(found) + delay <= self.budget:
            found.append(delay)
            delay = min(delay * 2, self.cap)
        return found


DEFAULT = Backoff()


def retry_new_principals(call: Callable[[], T], fresh: Sequence[str], what: str,
                         backoff: Backoff = DEFAULT) -> T:
    """``call()``, retried while AWS refuses a principal and ``fresh`` (identities
    the policy names that this apply created moments ago) is not empty."""
    waits = backoff.delays() if fresh else []
    for attempt, delay in enumerate([*waits, None], 1):
        try:
            return call()
        except errors.AwsError as exc:
            if not iam.invalid_principal(exc) or not fresh:
                raise
            if delay is None:
                raise errors.AwsError(
                    f"{exc.message}; {what} names {', '.join(fresh)}, created moments ago, and AWS still "
                    f"refused it after {attempt} attempts over {sum(waits):.0f}s (IAM propagates new "
                    "identities eventually): run apply again in a minute", exc.code) from None
            backoff.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")

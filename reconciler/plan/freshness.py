"""``plan --refresh-ttl``: whether a plan may trust the recorded state instead
of reading live AWS. Pure: the engine hands in the state, the clock's now and
the manifests; this says skip or refresh, and why, in one line.

The refresh is skipped only when nothing can have changed but what the TTL
accepts not to see (an out-of-band change since the last read): the state
records the manifests of its last complete apply and they are the ones on
disk (their parsed-documents hash), nothing is in flight (no journal entry,
no deposed object), the state is not behind its backup, the manifests and
the state name the same objects, and every one of them in scope was read
from live AWS within the TTL by the clock. When in doubt: refresh."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Iterable

from reconciler import errors
from reconciler.state import model as state_model

MAX_TTL = datetime.timedelta(hours=24)  # a plan that trusts state for longer than a day is not a plan
_DURATION = re.compile(r"^([0-9]{1,9})([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
LISTED = 3  # addresses a reason names; the rest are counted


def parse_ttl(text: str, option: str = "--refresh-ttl") -> datetime.timedelta:
    """``300``, ``90s``, ``5m``, ``1h`` (``1d``): more than 0, at most MAX_TTL;
    ConfigError in one line otherwise."""
    match = _DURATION.match(text.strip())
    expected = f"give seconds (300) or a number with s, m or h (90s, 5m, 1h), at most {span(MAX_TTL)}"
    if match is None:
        raise errors.ConfigError(f"{option} {text}: not a duration; {expected}")
    ttl = datetime.timedelta(seconds=int(match[1]) * _UNIT[match[2]])
    if not ttl:
        raise errors.ConfigError(f"{option} {text}: must be more than 0 (leave {option} out to always refresh)")
    if ttl > MAX_TTL:
        raise errors.ConfigError(f"{option} {text}: longer than {span(MAX_TTL)}; {expected}")
    return ttl


def span(duration: datetime.timedelta) -> str:
    """A duration as Terraform and Go write one: ``2m5s``, ``1h``, ``0s``."""
    seconds = int(duration.total_seconds())
    parts = [f"{n}{unit}" for n, unit in ((seconds // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s"))
             if n]
    return "".join(parts) or "0s"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What ``--refresh-ttl`` decided for one plan: ``skipped`` the refresh or
    not, and ``reason``, one line (``Refresh skipped: {reason}; ...``)."""

    ttl: str  # as span() writes it
    skipped: bool
    reason: str

    def refreshed_after_all(self, reason: str) -> Decision:
        return dataclasses.replace(self, skipped=False, reason=reason)

    @property
    def line(self) -> str:
        """The one line a plan shows."""
        if self.skipped:
            return f"Refresh skipped: {self.reason}; live AWS was not read."
        return f"Refreshed despite --refresh-ttl {self.ttl}: {self.reason}."

    def to_json(self) -> dict[str, object]:
        return {"ttl": self.ttl, "skipped": self.skipped, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Decision:
        return cls(str(data["ttl"]), bool(data["skipped"]), str(data["reason"]))


CHANGES_WITHOUT_REFRESH = ("a plan from the recorded state would change something, and changes are planned "
                           "against live AWS only")


def _named(addresses: list[str]) -> str:
    shown = ", ".join(addresses[:LISTED])
    return shown + (f" and {len(addresses) - LISTED} more" if len(addresses) > LISTED else "")


def decide(ttl: datetime.timedelta, now: datetime.datetime, state: state_model.State, *, stack: str,
           manifests_hash: str, desired: Iterable[str], scope: set[str] | None = None,
           behind_backup: bool = False) -> Decision:
    """Skip the refresh of a plan at ``now`` over ``state`` (as read, before
    any journal entry is recovered), or not. ``desired``: the addresses the
    manifests declare; ``scope``: a targeted plan's targets and what they
    depend on (None: everything); ``behind_backup``: the state's serial is
    below its backup's (gone on with --force)."""
    told = span(ttl)

    def refresh(reason: str) -> Decision:
        return Decision(told, False, reason)

    if behind_backup:
        return refresh("the state is behind its backup (restored from an older copy)")
    if state.journal:
        count = len(state.journal)
        return refresh(f"the state's journal holds {count} open operation{'s' if count != 1 else ''} "
                       f"({_named(sorted({e.address for e in state.journal}))}): an interrupted run to finish")
    if state.deposed:
        return refresh(f"the state holds deposed objects ({_named(sorted(state.deposed))}): an interrupted replace")
    if state.stack is not None and state.stack != stack:
        return refresh(f"the state was written by stack {state.stack}")
    if not state.manifests_hash:
        return refresh("the state records no complete apply of these manifests (none yet, one under way, or one "
                       "that did not finish)")
    if state.manifests_hash != manifests_hash:
        return refresh("the manifests changed since they were last applied")
    wanted = {a for a in desired if scope is None or a in scope}
    recorded = {a for a in state.resources if scope is None or a in scope}
    if wanted - recorded:
        return refresh(f"not in state: {_named(sorted(wanted - recorded))}")
    if recorded - wanted:
        return refresh(f"in state, not in the manifests: {_named(sorted(recorded - wanted))}")
    if not recorded:
        return refresh("nothing in state to read")
    ages: dict[str, datetime.timedelta] = {}
    for address in sorted(recorded):
        when = state_model.parse_time(state.resources[address].read_at)
        if when is None:
            return refresh(f"{address} has no recorded read from live AWS")
        if when > now:
            return refresh(f"{address} was read at {state.resources[address].read_at}, later than now by the "
                           "clock (the clock went back)")
        ages[address] = now - when
    oldest = min(ages, key=lambda a: (-ages[a], a))  # the first by address among the oldest
    if ages[oldest] > ttl:
        stale = sorted((a for a in ages if ages[a] > ttl), key=lambda a: (-ages[a], a))
        others = f" ({len(stale) - 1} more read over {told} ago)" if len(stale) > 1 else ""
        return refresh(f"{oldest} was read {span(ages[oldest])} ago, over {told}{others}")
    count = len(recorded)
    what = "every object" if scope is None else f"every object in scope ({count})"
    return Decision(told, True, f"{what} was read within {told} (oldest {span(ages[oldest])} ago)")

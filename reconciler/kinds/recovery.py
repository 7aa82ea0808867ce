"""What a kind's ``recover`` hook makes of an open journal entry left by an
interrupted run: resumed (what the operation made is recorded), rolled back
(nothing was made), or continued by the resource's own change. Pure values:
the engine applies them to state (in memory for plan, written for apply)."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Protocol

from reconciler.kinds import context
from reconciler.state import model as state_model


def what(journal: state_model.JournalEntry) -> str:
    """How plan notes name an open entry."""
    return f"interrupted {journal.operation.value} of {journal.address} (operation {journal.operation_id})"


def unless_create(journal: state_model.JournalEntry, noun: str) -> Recovery | None:
    """For a kind that journals only its create: any other entry is left open
    for the resource's change (None: it is a create, the kind recovers it)."""
    match journal.operation:
        case state_model.Operation.CREATE:
            return None
        case state_model.Operation.WRITE | state_model.Operation.COPY | state_model.Operation.MOVE \
                | state_model.Operation.ROTATE:
            return Recovery.continues(journal, f"{what(journal)} left open: a {noun} journals only its create")


class Outcome(enum.StrEnum):
    RESUMED = "resumed"  # what the operation made is recorded; the entry is closed
    ROLLED_BACK = "rolled back"  # nothing was made; the entry is closed
    CONTINUES = "continues"  # the resource's own change picks it up where it stopped; the entry stays open


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    journal: state_model.JournalEntry
    outcome: Outcome
    note: str  # one line for the plan: what was found, never a secret
    resource: state_model.ResourceState | None = None  # RESUMED: the record to keep
    forget: bool = False  # ROLLED_BACK: the address's record stood for nothing stored (older states)
    deposed: tuple[state_model.ResourceState, ...] = ()  # RESUMED: duplicates made too, to destroy
    at: str = ""  # the address whose change resumes it (default: the entry's)

    @property
    def address(self) -> str:
        return self.at or self.journal.address


    @classmethod
    def resumed(cls, journal: state_model.JournalEntry, resource: state_model.ResourceState, note: str,
                deposed: tuple[state_model.ResourceState, ...] = ()) -> Recovery:
        return cls(journal, Outcome.RESUMED, note, resource, deposed=deposed)

    @classmethod
    def rolled_back(cls, journal: state_model.JournalEntry, note: str, *, forget: bool = False) -> Recovery:
        return cls(journal, Outcome.ROLLED_BACK, note, forget=forget)

    @classmethod
    def continues(cls, journal: state_model.JournalEntry, note: str, *, at: str = "") -> Recovery:
        return cls(journal, Outcome.CONTINUES, note, at=at)

    def applied(self, state: state_model.State) -> state_model.State:
        """``state`` with this outcome recorded."""
        match self.outcome:
            case Outcome.RESUMED:
                assert self.resource is not None
                for extra in self.deposed:  # the same id at plan and at apply: the plan's delete finds it
                    deposed = state_model.Deposed(_stable_id(extra), extra)
                    if state.deposed_object(self.journal.address, deposed.id) is None:
                        state = state.with_deposed(self.journal.address, deposed)
                return state.with_resource(self.resource).without_journal(self.journal.operation_id)
            case Outcome.ROLLED_BACK:
                state = state.without_journal(self.journal.operation_id)
                return state.without_resource(self.journal.address) if self.forget else state
            case Outcome.CONTINUES:
                return state.with_journal(self.journal.retried())


def _stable_id(resource: state_model.ResourceState) -> str:
    """A deposed id derived from the object's ids."""
    return hashlib.sha256(json.dumps(dict(resource.ids), sort_keys=True).encode()).hexdigest()[:8]


class Recovers(Protocol):
    """A kind that journals multi-step work (optional Handler hook)."""

    def recover(self, aws: context.ApplyContext, journal: state_model.JournalEntry) -> Recovery:
        """Look at AWS (the operation's tag, the stored digest) and say what the entry became."""

"""What a kind's AWS side runs with: the adapters (aws/factory.py), the
keyring, and an explicit apply context: the stack's name, directory and
default connection, the desired resources, the state as it stands (kept
current by the executor), the references resolved so far, and the journal
of multi-step work (recorded through the executor's state writer).
References between resources resolve against that state (``outputs``), so
a value known only after apply (a key created earlier in the same apply)
is there by the time a dependent runs (dependency order)."""

from __future__ import annotations

import copy
import json
import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from reconciler import clock, errors
from reconciler.aws import factory, kms, session
from reconciler.crypto import keyring as keyrings
from reconciler.plan import model as plan_model
from reconciler.state import model as state_model

Persist = Callable[[state_model.State], None]
T = TypeVar("T")


def now() -> str:
    """When a journal entry starts: the one clock (``RECONCILER_NOW`` in tests)."""
    return clock.stamp()


class ApplyContext:
    """One run's context. ``persist`` is set by the executor during apply (the
    state writer, serialised: one write at a time); at plan time it is None
    and the journal cannot be written."""

    def __init__(self, adapters: factory.Adapters | None = None, *, stack: str = "",
                 directory: pathlib.Path | None = None,
                 default_connection: Mapping[str, Any] | None = None) -> None:
        self.directory = directory or pathlib.Path(".")
        self.adapters = adapters or factory.Adapters(session.ClientFactory(), self.directory)
        self.stack = stack
        self.former_names: tuple[str, ...] = ()  # the Stack's spec.formerNames
        self.default_connection = dict(default_connection or {})
        self.desired: Mapping[str, plan_model.Desired] = {}
        self.state: state_model.State = state_model.State.empty()
        self.regenerate_lost = False  # plan option: new values for generated secrets whose key is gone
        self.persist: Persist | None = None
        self.keyring = keyrings.Keyring(self.adapters)
        self._tagged: dict[str, dict[str, dict[str, str]] | errors.ReconcilerError] = {}
        self._tagged_lock = threading.Lock()
        self._listed: dict[str, tuple[threading.Lock, list[Any]]] = {}

    def fork(self) -> ApplyContext:
        """This context for one action running beside others (a parallel apply):
        the same adapters, keyring, caches and desired resources; its own
        ``state`` and ``persist``, which the executor sets. The executor's one
        state writer takes the writes of every fork one at a time, under its
        lock (apply.py ``_Writer``)."""
        return copy.copy(self)

    # -- adapters by connection ---------------------------------------------------
    def kms(self, connection: Mapping[str, Any], region: str | None = None) -> kms.KmsAdapter:
        return self.adapters.kms(region or connection["region"], connection.get("auth"))

    def client(self, service: str, connection: Mapping[str, Any] | None = None,
               region: str | None = None) -> Any:
        connection = connection or self.default_connection
        return self.adapters.client(service, region or connection["region"], connection.get("auth"))

    def former_stacks(self) -> tuple[str, ...]:
        """Names this stack had before a rename: the Stack's ``formerNames`` and
        the names state recorded. Envelopes bound to them are this stack's (to be
        re-bound); objects tagged with them are this stack's."""
        names = [*self.former_names, *self.state.former_stacks, *([self.state.stack] if self.state.stack else [])]
        return tuple(dict.fromkeys(n for n in names if n and n != self.stack))

    def ours(self, binding_stack: str) -> bool:
        """Whether an envelope bound to (or an object tagged with) ``binding_stack`` is this stack's."""
        return binding_stack == self.stack or binding_stack in self.former_stacks()

    def tagged_for_stack(self, connection: Mapping[str, Any], types: tuple[str, ...],
                         region: str | None = None) -> dict[str, dict[str, str]]:
        """ARN -> tags of the objects of ``types`` in the region that carry this
        stack's ``reconciler:stack`` tag: one paged Resource Groups Tagging
        API read per region, auth and types for the whole run (the kinds'
        ``find_owned`` hooks filter it by address)."""
        region = region or connection["region"]
        key = json.dumps([region, connection.get("auth"), types], sort_keys=True, default=str)
        with self._tagged_lock:
            if key not in self._tagged:
                adapter = self.adapters.tagging(region, connection.get("auth"))
                try:
                    self._tagged[key] = {arn: tags for name in (self.stack, *self.former_stacks())
                                         for arn, tags in adapter.tagged({"reconciler:stack": name}, types).items()}
                except errors.ReconcilerError as exc:  # every address waiting on it fails with it, at once
                    self._tagged[key] = exc
            found = self._tagged[key]
        if isinstance(found, errors.ReconcilerError):
            raise copy.copy(found)  # a copy each: callers prefix it with their address
        return found

    def listed(self, what: str, scope: Any, load: Callable[[], T]) -> T | None:
        """A listing (every alias of a region, the current version id of every
        entry of a vault store, the account's users...) made once per run and
        shared by every resource it covers, so a refresh pays one paged read
        instead of one call per object (or one read that hooks of a run share:
        a rotation's refresh and check, the user's access keys). ``what`` and ``scope`` (region, auth, store...) name it;
        ``load`` makes it, once, whichever thread asks first (the others wait).
        None during apply (``persist`` set): what apply writes would make a
        listing stale, so apply-time reads go to AWS object by object."""
        if self.persist is not None:
            return None
        key = json.dumps([what, scope], sort_keys=True, default=str)
        with self._tagged_lock:
            lock, slot = self._listed.setdefault(key, (threading.Lock(), []))
        with lock:
            if not slot:
                slot.append(load())
            return slot[0]  # type: ignore[no-any-return]

    def check_connection(self, connection: Mapping[str, Any]) -> None:
        self.adapters.check(connection.get("auth"), connection.get("region"))

    def outputs(self, address: str) -> Mapping[str, Any] | None:
        """What another resource can refer to: the ids and attributes state
        records for ``address`` (None while it is not applied yet)."""
        entry = self.state.resources.get(address)
        if entry is None:
            return None
        return {**entry.attributes, **entry.ids}

    # -- the journal ----------------------------------------------------------------
    def begin(self, address: str, operation: state_model.Operation, step: str,
              data: Mapping[str, Any]) -> state_model.JournalEntry:
        """Record the intent before the AWS call that creates or stores something."""
        entry = state_model.JournalEntry.begin(address, operation, step, data, now())
        self._write(self.state.with_journal(entry))
        return entry

    def advance(self, entry: state_model.JournalEntry, step: str,
                data: Mapping[str, Any]) -> state_model.JournalEntry:
        moved = entry.advanced(step, data)
        self._write(self.state.with_journal(moved))
        return moved

    def settle(self, entry: state_model.JournalEntry, resource: state_model.ResourceState | None) -> None:
        """Record what the operation made and close it, in one state write."""
        state = self.state if resource is None else self.state.with_resource(resource)
        self._write(state.without_journal(entry.operation_id))

    def persist_outcome(self, state: state_model.State) -> None:
        """Write a state a kind's recovery computed (kinds/recovery.py)."""
        self._write(state)

    def journal_data(self, address: str, *operations: state_model.Operation) -> Mapping[str, Any]:
        """The data of the open entry of ``address`` ({} when none)."""
        entry = self.state.journal_of(address, *operations)
        return entry.data if entry is not None else {}

    def _write(self, state: state_model.State) -> None:
        if self.persist is None:
            raise errors.StateError("internal: the journal is written only during apply")
        self.persist(state)

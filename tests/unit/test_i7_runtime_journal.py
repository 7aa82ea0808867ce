"""Issue 7 item 3: the typed journal in the state model, what a recovery
does to state, and how the plan says so. Pure: no AWS."""

from __future__ import annotations

import json

import pytest

from reconciler import errors, resume
from reconciler.kinds import recovery
from reconciler.plan import actions
from reconciler.plan import model as plan_model
from reconciler.state import model as state_model

Operation = state_model.Operation


def _entry(address: str = "KmsProvider/main", operation: Operation = Operation.CREATE) -> state_model.JournalEntry:
    return state_model.JournalEntry.begin(address, operation, "create-key", {"attributes": {"region": "us-east-1"}},
                                          "2026-11-24T13:00:00+00:00")


def _resource(name: str = "main", key: str = "k-1") -> state_model.ResourceState:
    return state_model.ResourceState("KmsProvider", name, "managed", {"keyId": key}, {"protect": False},
                                     {"region": "us-east-1"})


def _round_trip(state: state_model.State) -> state_model.State:
    return state_model.State.from_json(json.loads(state_model.dumps(state)))


def test_journal_entries_are_typed_and_survive_the_state_file():
    entry = _entry().failed("kms:CreateKey failed (KMSInternalException)")
    state = state_model.State(lineage="l", serial=3).with_journal(entry)
    loaded = _round_trip(state)
    assert loaded.journal == (entry,)
    [found] = loaded.journal
    assert isinstance(found.operation, Operation) and found.operation is Operation.CREATE
    assert (found.attempts, found.last_error) == (1, "kms:CreateKey failed (KMSInternalException)")
    assert json.loads(state_model.dumps(state))["journal"][0]["operationId"] == entry.operation_id


def test_recording_an_entry_again_replaces_it_and_completion_drops_every_entry_of_the_address():
    first = _entry()
    state = state_model.State().with_journal(first).with_journal(_entry("Secret/s", Operation.WRITE))
    moved = first.advanced("converging", {"keyId": "k-1"})
    state = state.with_journal(moved)
    assert [e.step for e in state.journal if e.address == "KmsProvider/main"] == ["converging"]
    assert state.journal_of("KmsProvider/main") == moved
    assert state.journal_of("KmsProvider/main", Operation.WRITE) is None
    assert [e.address for e in state.without_journal_of("KmsProvider/main").journal] == ["Secret/s"]
    assert state.without_journal(moved.operation_id).journal_of("KmsProvider/main") is None


@pytest.mark.parametrize("journal", [[], None])
def test_an_older_state_with_an_empty_journal_still_loads(journal):
    data = {"version": 1, "lineage": "l", "serial": 1, "resources": {}, "journal": journal}
    assert state_model.State.from_json(data).journal == ()


def test_an_older_states_secret_pending_ids_move_onto_the_journal():
    write = {"digest": "d1", "attributes": {"vault": "main", "value": "generation:1"}, "ids": {}}
    move = {"digest": "d2", "attributes": {"vault": "old"}, "copies": {"1": "d2"},
            "move": {"to": {"vault": "new"}, "copied": True}}
    copy = {"digest": "d3", "attributes": {"vault": "main"}, "copies": {"1": "d3"}}
    resources = {f"Secret/{name}": {"kind": "Secret", "name": name, "ids": {"version": 1, "pending": pending}}
                 for name, pending in (("w", write), ("m", move), ("c", copy))}
    loaded = state_model.State.from_json({"version": 1, "lineage": "l", "serial": 4, "resources": resources,
                                          "journal": []})
    assert all("pending" not in e.ids and e.ids["version"] == 1 for e in loaded.resources.values())
    found = {e.address: (e.operation, e.step, dict(e.data)) for e in loaded.journal}
    assert found == {"Secret/w": (Operation.WRITE, "storing", write),
                     "Secret/m": (Operation.MOVE, "copied", move),
                     "Secret/c": (Operation.COPY, "copying", copy)}


def test_a_malformed_journal_entry_is_a_one_line_state_error():
    data = {"version": 1, "lineage": "l", "serial": 1, "resources": {},
            "journal": [{"operationId": "x", "address": "A/b", "operation": "explode"}]}
    with pytest.raises(errors.StateError, match=r"^state: malformed journal entry"):
        state_model.State.from_json(data)


def test_a_resumed_create_records_the_object_and_closes_the_entry():
    entry = _entry()
    state = state_model.State().with_journal(entry)
    done = recovery.Recovery.resumed(entry, _resource(), "resuming").applied(state)
    assert done.journal == () and done.resources["KmsProvider/main"].ids == {"keyId": "k-1"}


def test_duplicates_become_deposed_with_the_same_id_every_time():
    entry = _entry()
    state = state_model.State().with_journal(entry)
    outcome = recovery.Recovery.resumed(entry, _resource(), "resuming", (_resource(key="k-2"),))
    first, again = outcome.applied(state), outcome.applied(state)
    [deposed] = first.deposed["KmsProvider/main"]
    assert deposed.resource.ids == {"keyId": "k-2"}
    assert again.deposed == first.deposed  # plan (in memory) and apply (written) agree on its id
    assert outcome.applied(first).deposed == first.deposed  # applied twice: still one


def test_a_rolled_back_entry_is_closed_and_an_older_placeholder_forgotten():
    entry = _entry("Secret/s", Operation.WRITE)
    placeholder = state_model.ResourceState("Secret", "s", "managed", {}, {}, {})
    state = state_model.State().with_resource(placeholder).with_journal(entry)
    kept = recovery.Recovery.rolled_back(entry, "rolled back").applied(state)
    assert kept.journal == () and "Secret/s" in kept.resources
    forgotten = recovery.Recovery.rolled_back(entry, "rolled back", forget=True).applied(state)
    assert forgotten.journal == () and "Secret/s" not in forgotten.resources


def test_a_continued_entry_stays_open_and_counts_the_run_that_picks_it_up():
    entry = _entry("Secret/s", Operation.MOVE)
    state = state_model.State().with_journal(entry)
    outcome = recovery.Recovery.continues(entry, "resuming with its change", at="Vault/main")
    assert outcome.address == "Vault/main"
    [picked] = outcome.applied(state).journal
    assert (picked.operation_id, picked.attempts) == (entry.operation_id, 2)  # one more run works on it


def _plan(*changes: plan_model.ResourceChange) -> plan_model.Plan:
    return plan_model.Plan("p", "now", "test", "/d", "h", "l", 1, True, (), changes, (), {})


def _change(address: str, action: actions.Action) -> plan_model.ResourceChange:
    kind, name = address.split("/")
    return plan_model.ResourceChange(address, kind, name, action, "managed", {}, {}, notes=("kept",))


def test_the_plan_says_what_became_of_each_entry_and_records_a_resumed_object_with_nothing_to_change():
    resumed = recovery.Recovery.resumed(_entry(), _resource(), "resuming interrupted create")
    rolled = recovery.Recovery.rolled_back(_entry("Secret/s", Operation.WRITE), "rolled back write")
    plan = resume.noted(_plan(_change("KmsProvider/main", actions.Action.NOOP),
                              _change("Secret/s", actions.Action.CREATE),
                              _change("Vault/main", actions.Action.NOOP)), (resumed, rolled))
    by = {c.address: c for c in plan.changes}
    assert by["KmsProvider/main"].action is actions.Action.UPDATE  # so apply records it
    assert by["KmsProvider/main"].notes == ("resuming interrupted create", "kept")
    assert by["Secret/s"].action is actions.Action.CREATE and by["Secret/s"].notes[0] == "rolled back write"
    assert by["Vault/main"].action is actions.Action.NOOP and by["Vault/main"].notes == ("kept",)
    assert resume.noted(plan, ()) is plan

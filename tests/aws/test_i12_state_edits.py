"""Issue 12, state for teams: `state pull`, `state push` (refuses another
lineage or a serial not newer than the recorded one unless --force), `state
rm` (forgets, deletes nothing; refuses an address with an operation in
flight unless --force) and `state mv` (refuses an existing destination or
another kind). Each write takes the lock and keeps the previous state as the
backup. Nothing here calls AWS: the state is made by pushing it."""

from __future__ import annotations

import copy
import json

import pytest

from reconciler import engine
from tests.conftest import run, state_of

ARN = "arn:aws:kms:us-east-1:123456789012:key/"


def entry(kind: str, name: str, key_id: str = "", dependencies: tuple[str, ...] = ()) -> dict:
    ids = {"keyId": key_id, "arn": ARN + key_id} if key_id else {"store": "local"}
    return {"kind": kind, "name": name, "mode": "managed", "ids": ids, "attributes": {},
            "connection": {"region": "us-east-1"}, "dependencies": list(dependencies)}


STATE = {
    "version": 1, "lineage": "lineage-one", "serial": 5, "leases": {}, "appliedPlans": [],
    "resources": {"KmsProvider/main": entry("KmsProvider", "main", "k-main"),
                  "KmsProvider/spare": entry("KmsProvider", "spare", "k-spare"),
                  "Vault/files": entry("Vault", "files", dependencies=("KmsProvider/main",))},
    "deposed": {"KmsProvider/main": [{"id": "d0ld", **entry("KmsProvider", "main", "k-old")}]},
    "journal": [{"operationId": "op-1", "address": "KmsProvider/spare", "operation": "create", "step": "creating",
                 "data": {}, "startedAt": "2026-01-01T00:00:00+00:00", "attempts": 1, "lastError": ""}],
}


@pytest.fixture()
def local(stack, tmp_path):
    """A stack whose local state is STATE, pushed (serial 6)."""
    directory = stack({})
    pushed = run("state", "push", write(tmp_path / "start.json", STATE), "--dir", directory)
    assert pushed.exit_code == 0, pushed.output
    assert pushed.output == f"Pushed {tmp_path / 'start.json'} to {directory / '.reconciler/state.json'}: " \
                            "serial 6, lineage lineage-one.\n"
    return directory


def write(path, data) -> str:
    path.write_text(json.dumps(data) if isinstance(data, dict) else data)
    return str(path)


def backup_of(directory) -> dict:
    return json.loads((directory / ".reconciler" / "state.json.backup").read_text())


def error(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = result.output.splitlines()
    return line


def test_pull_prints_the_state_push_takes(local, tmp_path):
    pulled = run("state", "pull", local)
    assert pulled.exit_code == 0
    state = json.loads(pulled.output)
    assert state == {**STATE, "serial": 6} and state == state_of(local)

    # the same serial again (or an older one) would undo later writes
    same = run("state", "push", write(tmp_path / "same.json", pulled.output), "--dir", local)
    assert error(same) == (f"Error: {tmp_path / 'same.json'}: serial 6 is not newer than the serial of "
                           f"{local / '.reconciler/state.json'} (6): pushing it would undo later writes; nothing "
                           "was written (pull the state again and edit that, or --force)")
    older = run("state", "push", write(tmp_path / "older.json", STATE), "--dir", local)
    assert "serial 5 is not newer than the serial" in error(older)
    assert state_of(local)["serial"] == 6

    edited = {**state, "serial": 7, "resources": {k: v for k, v in state["resources"].items() if k != "Vault/files"}}
    newer = run("state", "push", write(tmp_path / "newer.json", edited), "--dir", local)
    assert newer.exit_code == 0, newer.output
    assert state_of(local) == {**edited, "serial": 8}
    assert backup_of(local)["serial"] == 6 and "Vault/files" in backup_of(local)["resources"]


def test_push_refuses_another_lineage_unless_forced(local, tmp_path):
    other = write(tmp_path / "other.json", {**STATE, "lineage": "lineage-two", "serial": 99})
    refused = run("state", "push", other, "--dir", local)
    assert error(refused) == (f"Error: {other}: lineage lineage-two is not the lineage of "
                              f"{local / '.reconciler/state.json'} (lineage-one): it is another stack's state, or "
                              "one started afresh; nothing was written (--force replaces it anyway)")
    assert state_of(local)["lineage"] == "lineage-one"
    forced = run("state", "push", other, "--dir", local, "--force")
    assert forced.exit_code == 0, forced.output
    assert (state_of(local)["lineage"], state_of(local)["serial"]) == ("lineage-two", 100)
    assert (backup_of(local)["lineage"], backup_of(local)["serial"]) == ("lineage-one", 6)


def test_push_refuses_what_is_not_a_state(local, tmp_path):
    broken = write(tmp_path / "broken.json", '{"lineage": "x",\n  "serial": }')
    assert error(run("state", "push", broken, "--dir", local)) == \
        f"Error: {broken}:2:13: not valid JSON (Expecting value)"
    other = write(tmp_path / "plan.json", {"format_version": "1.2"})
    assert error(run("state", "push", other, "--dir", local)) == f"Error: {other}: not a reconciler state file"
    fresh = write(tmp_path / "fresh.json", {**STATE, "lineage": None})
    assert "the state has no lineage" in error(run("state", "push", fresh, "--dir", local))
    assert state_of(local)["serial"] == 6


def test_rm_forgets_without_deleting_and_refuses_an_operation_in_flight(local):
    in_flight = run("state", "rm", "KmsProvider/spare", "--dir", local)
    assert error(in_flight) == ("Error: KmsProvider/spare: an operation is in flight (create op-1, step creating, "
                                "started 2026-01-01T00:00:00+00:00); run apply to finish it first, or --force to "
                                "forget it too (whatever it created in AWS is then left unmanaged)")
    missing = run("state", "rm", "KmsProvider/nope", "--dir", local)
    assert error(missing) == ("Error: KmsProvider/nope: not in state; in state: KmsProvider/main, "
                              "KmsProvider/spare, Vault/files")
    assert state_of(local)["serial"] == 6

    forced = run("state", "rm", "KmsProvider/spare", "--dir", local, "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.output == ("Removed from state: KmsProvider/spare, 1 journal entry. Nothing was deleted in AWS. "
                             "State serial 7.\n")
    state = state_of(local)
    assert "KmsProvider/spare" not in state["resources"] and state["journal"] == []
    assert backup_of(local)["serial"] == 6 and "KmsProvider/spare" in backup_of(local)["resources"]

    removed = run("state", "rm", "KmsProvider/main", "--dir", local)
    assert removed.output.startswith("Removed from state: KmsProvider/main, 1 deposed object of it.")
    assert set(state_of(local)["resources"]) == {"Vault/files"} and state_of(local)["deposed"] == {}


def test_mv_renames_and_refuses_an_existing_destination_or_another_kind(local):
    kinds = run("state", "mv", "KmsProvider/main", "Vault/main", "--dir", local)
    assert error(kinds) == ("Error: Vault/main: cannot move a KmsProvider to a Vault (state mv renames an address; "
                            "the kind stays)")
    taken = run("state", "mv", "KmsProvider/main", "KmsProvider/spare", "--dir", local)
    assert error(taken) == ("Error: KmsProvider/spare: already in state; `reconciler state rm KmsProvider/spare` "
                            "first if it is to go")
    in_flight = run("state", "mv", "KmsProvider/spare", "KmsProvider/other", "--dir", local)
    assert "KmsProvider/spare: an operation is in flight (create op-1" in error(in_flight)
    assert "not in state" in error(run("state", "mv", "Vault/nope", "Vault/other", "--dir", local))
    assert state_of(local)["serial"] == 6

    # Vault/files records its provider by name: moving the key would leave that naming nothing
    referred = run("state", "mv", "KmsProvider/main", "KmsProvider/payments", "--dir", local)
    assert error(referred) == ("Error: KmsProvider/main: Vault/files refers to it by name in what state records of "
                               "it, which state mv cannot rewrite; move it only with nothing referring to it "
                               "(or keep the name main)")
    assert state_of(local)["serial"] == 6

    moved = run("state", "mv", "Vault/files", "Vault/docs", "--dir", local)
    assert moved.exit_code == 0, moved.output
    assert moved.output == "Moved Vault/files to Vault/docs. State serial 7.\n"
    state = state_of(local)
    expected = copy.deepcopy(STATE["resources"]["Vault/files"])
    expected["name"] = "docs"
    assert state["resources"]["Vault/docs"] == expected and "Vault/files" not in state["resources"]
    assert "Vault/files" in backup_of(local)["resources"]

    run("state", "rm", "Vault/docs", "--dir", local)  # nothing refers to the key any more: it moves
    moved = run("state", "mv", "KmsProvider/main", "KmsProvider/payments", "--dir", local)
    assert moved.exit_code == 0, moved.output
    state = state_of(local)
    assert "KmsProvider/payments" in state["resources"] and "KmsProvider/main" not in state["resources"]
    assert [(d["id"], d["name"]) for d in state["deposed"]["KmsProvider/payments"]] == [("d0ld", "payments")]


@pytest.mark.parametrize("command", [["rm", "Vault/files"], ["mv", "Vault/files", "Vault/docs"],
                                     ["push", "PUSHED"]])
def test_every_state_write_takes_the_lock(local, tmp_path, command):
    pushed = write(tmp_path / "pushed.json", {**STATE, "serial": 50})
    args = [pushed if a == "PUSHED" else a for a in command]
    backend = engine.open_stack(local).backend
    with backend.lock("apply") as lock_id:
        held = run("state", *args, "--dir", local)
        assert "is locked by PID" in error(held) and lock_id in held.output
    assert state_of(local)["serial"] == 6
    assert run("state", *args, "--dir", local).exit_code == 0


def test_pull_of_a_stack_without_state(stack):
    pulled = run("state", "pull", stack({}))
    assert pulled.exit_code == 0 and pulled.stdout == "" and pulled.stderr == "No state recorded yet.\n"

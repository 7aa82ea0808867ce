"""Issue 12: `apply --only-due` (the hourly maintain workflow) performs only
timed work and refuses, changing nothing, whatever else the plan holds; and
`--require-remote-state` accepts a stack whose state is in S3. The real CLI
against the sandbox; the clock set by RECONCILER_NOW, never slept."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from reconciler.aws import session
from reconciler.plan import actions
from reconciler.plan import model as plan_model
from reconciler.state import model as state_model
from tests.aws import test_i9_rotation as rotation
from tests.aws.test_i6_keys_quota import _Raw, inject  # noqa: F401  (fixture)
from tests.aws.test_i7_runtime_journal import Killed, KillAfter, kill_after  # noqa: F401  (fixture)
from tests.aws.test_i9_rotation import manager, rotated  # noqa: F401  (fixtures)
from tests.aws.test_i10_leases import account, applied, create, lease_users, leases  # noqa: F401  (fixtures)
from tests.aws.test_vaults import docs, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

ONLY_DUE = ("apply", "--only-due", "--auto-approve")


def _state_text(directory) -> str:
    return (directory / ".reconciler" / "state.json").read_text()


def test_nothing_due_is_nothing_to_do_and_a_due_rotation_is_performed(rotated, monkeypatch, calls):
    directory = rotated()
    before = _state_text(directory)
    calls.clear()
    idle = run(*ONLY_DUE, directory)
    assert idle.exit_code == 0, idle.output
    assert idle.output.rstrip().endswith("Nothing to do: no timed work is due.")
    assert "next rotation due at 2030-01-31T00:00:00+00:00" in idle.output  # what comes next is shown
    assert calls.writes == [] and _state_text(directory) == before

    old_id, _old_secret = rotation.pair(directory)
    rotation.at(monkeypatch, rotation.DUE)
    result = run(*ONLY_DUE, directory)
    assert result.exit_code == 0, result.output
    assert "! AccessKeyRotation/app\n" in result.output
    assert "Apply complete: 1 rotate." in result.output
    new_id, new_secret = rotation.pair(directory)
    assert new_id != old_id and rotation.current(directory) == new_id
    assert rotation.caller(new_id, new_secret).endswith(":user/app-user")
    assert rotation.user_keys() == {old_id: "Active", new_id: "Active"}  # retired only after the grace period


def test_an_interrupted_rotation_is_finished_by_only_due(rotated, monkeypatch, kill_after):
    directory = rotated()
    old_id = rotation.current(directory)
    rotation.at(monkeypatch, rotation.DUE)
    hook = kill_after(1, "CreateAccessKey")
    with pytest.raises(Killed):
        run("apply", directory, "--auto-approve")
    session.unregister_hook("after-call", hook)
    [journal] = state_of(directory)["journal"]
    assert journal["operation"] == "rotate"
    result = run(*ONLY_DUE, directory)
    assert result.exit_code == 0, result.output
    assert f"resume the interrupted rotation (operation {journal['operationId']}" in " ".join(result.output.split())
    new_id, new_secret = rotation.pair(directory)
    assert new_id != old_id and rotation.current(directory) == new_id and state_of(directory)["journal"] == []
    assert rotation.caller(new_id, new_secret).endswith(":user/app-user")


def test_a_manifest_edit_refuses_only_due_and_not_even_the_due_work_is_done(rotated, monkeypatch, calls):
    directory = rotated()
    old_id = rotation.current(directory)
    keys = rotation.user_keys()
    (directory / "extra.yaml").write_text(secret_doc("unreviewed", "generate: {length: 16}"))
    rotation.at(monkeypatch, rotation.DUE)
    before = _state_text(directory)
    calls.clear()
    result = run(*ONLY_DUE, directory)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line == ("Error: apply --only-due: refusing, the plan also holds 1 change that is not timed work "
                    "(Secret/unreviewed create); nothing was changed and the due work (AccessKeyRotation/app "
                    "rotate) was not done either; review them with `reconciler plan` and apply them through "
                    "the reviewed path first")
    assert calls.writes == []  # not the rotation, not a journal entry, nothing
    assert _state_text(directory) == before
    assert rotation.current(directory) == old_id and rotation.user_keys() == keys
    # the reviewed path applies both
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert rotation.current(directory) != old_id
    assert "Secret/unreviewed" in state_of(directory)["resources"]


def test_a_change_in_place_refuses_only_due_even_with_nothing_due(rotated, calls):
    directory = rotated()
    main = directory / "main.yaml"
    main.write_text(docs(key_doc(), vault_doc(extra="  description: edited after review\n"), rotation.rotation_doc()))
    calls.clear()
    result = run(*ONLY_DUE, directory)
    assert result.exit_code == 1
    assert result.output == ("Error: apply --only-due: refusing, the plan also holds 1 change that is not timed "
                             "work (Vault/main update); nothing was changed and nothing was due; review them "
                             "with `reconciler plan` and apply them through the reviewed path first\n")
    assert calls.writes == []


def test_an_expired_lease_is_revoked_and_a_failed_revoke_retried_by_only_due(applied, inject, monkeypatch):
    directory = applied()
    first, second = create(directory, "--ttl", "1h"), create(directory, "--ttl", "3h")
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-01T01:00:00Z")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    def refuse(request, **_kwargs):
        body = b"<ErrorResponse><Error><Code>ServiceFailure</Code><Message>try later</Message></Error></ErrorResponse>"
        return AWSResponse(request.url, 500, {"Content-Type": "text/xml"}, _Raw(body))

    inject("before-send.iam.DeleteUser", refuse)
    failed = run(*ONLY_DUE, directory)
    assert failed.exit_code == 1
    assert leases(directory)[first["leaseId"]]["revokeAttempts"] == 1
    inject.clear()
    retried = run(*ONLY_DUE, directory)
    assert retried.exit_code == 0, retried.output
    assert "! DynamicIamTemplate/ci (revoke expired leases)" in retried.output
    assert set(leases(directory)) == {second["leaseId"]}
    assert lease_users() == [second["userName"]]


def test_an_interrupted_lease_create_is_cleaned_up_by_only_due(applied):
    directory = applied()
    hook = KillAfter(1, "CreateUser")
    session.register_hook("after-call", hook)
    try:
        with pytest.raises(Killed):
            run("lease", "create", "ci", "--dir", directory)
    finally:
        session.unregister_hook("after-call", hook)
    assert state_of(directory)["journal"] and lease_users()  # a user nobody holds, and the intent recorded
    result = run(*ONLY_DUE, directory)
    assert result.exit_code == 0, result.output
    assert "clean up interrupted lease creates" in result.output
    assert lease_users() == [] and state_of(directory)["journal"] == []


def test_the_ci_example_runs_as_the_workflows_run_it_with_nothing_on_the_runners_disk(aws, example, monkeypatch):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="example-reconciler-state")
    directory = example("ci")
    monkeypatch.setenv("RECONCILER_REQUIRE_REMOTE_STATE", "1")  # as every workflow sets it
    assert run("validate", directory).exit_code == 0
    assert run("plan", directory, "--detailed-exitcode").exit_code == 2  # changes: not a failure
    first = run(*ONLY_DUE, directory)  # creates are reviewed work: the schedule never makes them
    assert first.exit_code == 1 and "the plan also holds 3 changes that are not timed work" in first.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert run("drift", directory).exit_code == 0
    assert "Nothing to do: no timed work is due." in run(*ONLY_DUE, directory).output
    assert not (directory / ".reconciler").exists()  # state, lock and vault all remote
    state = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket="example-reconciler-state", Key="stacks/ci/state.json")["Body"].read()
    assert "Secret/api-token" in json.loads(state)["resources"]

def test_a_change_that_only_records_an_interrupted_run_is_timed_and_survives_a_saved_plan():
    change = plan_model.ResourceChange("KmsProvider/main", "KmsProvider", "main", actions.Action.UPDATE,
                                       state_model.Mode.MANAGED, {}, {}, resumes=True)
    edited = dataclasses.replace(change, resumes=False)
    assert change.timed and not edited.timed
    assert plan_model.ResourceChange.from_json(change.to_json()) == change
    assert "resumes" not in edited.to_json()  # plans without one read as before
    assert plan_model.ResourceChange.from_json(edited.to_json()) == edited

"""Issue 6 item 5: a replace keeps the old key in state as *deposed* until its
deletion succeeds; plan shows it, the next apply retries its deletion."""

from __future__ import annotations

import json

import boto3

from tests.aws.test_i6_keys_quota import inject, json_error  # noqa: F401  (fixture)
from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run, state_of

MULTI = SYMMETRIC + "  multiRegion: true\n"  # multiRegion cannot change in place: a replace


def kms():
    return boto3.client("kms", region_name="us-east-1")


def aliases(key_id: str) -> list[str]:
    return [a["AliasName"] for a in kms().list_aliases(KeyId=key_id)["Aliases"]]


def test_failed_deletion_during_replace_keeps_the_old_key_as_deposed(aws, stack, inject):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    (directory / "key.yaml").write_text(MULTI)
    inject("before-send.kms.ScheduleKeyDeletion", json_error("AccessDeniedException", "not allowed"))
    failed = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert failed.exit_code == 1
    assert "AWS denied kms:ScheduleKeyDeletion" in failed.output and "Traceback" not in failed.output

    state = state_of(directory)
    new = state["resources"]["KmsProvider/main"]["ids"]["keyId"]
    assert new != old and new.startswith("mrk-")
    ((deposed,),) = state["deposed"].values()
    assert list(state["deposed"]) == ["KmsProvider/main"]
    assert deposed["ids"]["keyId"] == old and len(deposed["id"]) == 8
    assert kms().describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"
    assert aliases(new) == ["alias/team/main"] and aliases(old) == []  # the alias moved to the new key

    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert f"- KmsProvider/main (deposed {deposed['id']})" in plan.output
    assert "deposed object left by an interrupted replace; its deletion is retried" in plan.output
    assert "Plan: 0 to create, 0 to update, 0 to replace, 1 to destroy." in plan.output
    listed = run("state", "list", directory).output.splitlines()
    assert listed[1].startswith(f"KmsProvider/main (deposed {deposed['id']})\tdeposed\tarn:aws:kms:")
    assert listed[1].endswith(old)
    shown = json.loads(run("plan", directory, "--format", "json").output)
    (change,) = [c for c in shown["changes"] if c["action"] != "no-op"]
    assert (change["action"], change["deposed"], change["before"]["keySpec"]) == (
        "delete", deposed["id"], "SYMMETRIC_DEFAULT")

    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1 and "--allow-destroy" in refused.output
    inject.clear()  # AWS lets the deletion through now
    done = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert done.exit_code == 0, done.output
    meta = kms().describe_key(KeyId=old)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"  # scheduled with its window, never deleted outright
    assert kms().describe_key(KeyId=new)["KeyMetadata"]["KeyState"] == "Enabled"
    after = state_of(directory)
    assert after["deposed"] == {} and after["resources"]["KmsProvider/main"]["ids"]["keyId"] == new
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_failed_create_during_replace_keeps_the_old_key_current(aws, stack, inject):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    before = state_of(directory)["resources"]["KmsProvider/main"]
    (directory / "key.yaml").write_text(MULTI)
    inject("before-send.kms.CreateKey", json_error("AccessDeniedException", "not allowed"))
    failed = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert failed.exit_code == 1 and "AWS denied kms:CreateKey" in failed.output
    state = state_of(directory)
    assert state["resources"]["KmsProvider/main"] == before and state["deposed"] == {}


def test_replace_moves_the_alias_to_the_new_key_and_schedules_the_old(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    (directory / "key.yaml").write_text(MULTI)
    done = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert done.exit_code == 0, done.output
    new = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    assert aliases(new) == ["alias/team/main"] and aliases(old) == []
    assert kms().describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert state_of(directory)["deposed"] == {}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

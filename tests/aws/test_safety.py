"""Safety rules: protected keys, --allow-destroy, saved plans, the state lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC, key_id
from tests.conftest import run, state_of

PROTECTED = SYMMETRIC.replace("  protect: false\n", "")


def test_removing_a_protected_key_is_refused(aws, stack):
    directory = stack({"key.yaml": PROTECTED})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").unlink()
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert "refusing to destroy a protected resource" in plan.output
    apply = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert apply.exit_code == 1
    kid = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    meta = boto3.client("kms", region_name="us-east-1").describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert "Traceback" not in plan.output + apply.output


def test_unprotected_key_needs_allow_destroy_and_is_only_scheduled(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = key_id(directory)
    (directory / "key.yaml").unlink()
    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1 and "--allow-destroy" in refused.output
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"

    plan = run("plan", directory)
    assert "- KmsProvider/main" in plan.output and "scheduled for deletion in 7 days" in plan.output
    done = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert done.exit_code == 0, done.output
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"  # scheduled with its window, never deleted outright
    assert kms.list_aliases(KeyId=kid)["Aliases"] == []
    assert "KmsProvider/main" not in state_of(directory)["resources"]


def test_replacing_a_protected_key_is_refused_with_an_explanation(aws, stack):
    directory = stack({"key.yaml": PROTECTED})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(PROTECTED.replace("  rotation: {enabled: true, periodDays: 180}\n",
                                                          "  spec: RSA_2048\n"))
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert "replaces the key" in plan.output and "protected" in plan.output
    assert f"Error: {directory / 'key.yaml'}:3:18: KmsProvider/main: changing keySpec" in plan.output


def test_replacing_an_unprotected_key_creates_then_schedules_the_old(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old = key_id(directory)
    (directory / "key.yaml").write_text(SYMMETRIC.replace("  rotation: {enabled: true, periodDays: 180}\n",
                                                          "  spec: RSA_3072\n"))
    plan = run("plan", directory)
    assert "+/- KmsProvider/main" in plan.output and "forces replacement" in plan.output  # created first
    assert run("apply", directory, "--auto-approve").exit_code == 1  # needs --allow-destroy
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    new = key_id(directory)
    kms = boto3.client("kms", region_name="us-east-1")
    assert new != old
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert kms.describe_key(KeyId=new)["KeyMetadata"]["KeySpec"] == "RSA_3072"
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=new)["Aliases"]] == ["alias/team/main"]


def test_saved_plan_applies_once_and_is_then_refused(aws, stack, tmp_path):
    directory = stack({"key.yaml": SYMMETRIC})
    planfile = tmp_path / "first.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    first = run("apply", planfile, "--auto-approve")
    assert first.exit_code == 0, first.output
    # Terraform lets a plan made against an empty state be applied twice (hashicorp/terraform#24078).
    again = run("apply", planfile, "--auto-approve")
    assert again.exit_code == 1
    assert "already applied" in again.output
    keys = boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]
    assert len(keys) == 1


def test_saved_plan_is_stale_after_state_or_manifest_changes(aws, stack, tmp_path):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(SYMMETRIC.replace("main key", "second"))
    planfile = tmp_path / "p.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    (directory / "key.yaml").write_text(SYMMETRIC.replace("main key", "third"))
    stale = run("apply", planfile, "--auto-approve")
    assert stale.exit_code == 1 and "manifests" in stale.output and "stale" in stale.output

    (directory / "key.yaml").write_text(SYMMETRIC.replace("main key", "second"))
    assert run("plan", directory, "--out", planfile).exit_code == 0
    (directory / "key.yaml").write_text(SYMMETRIC.replace("main key", "other"))
    assert run("apply", directory, "--auto-approve").exit_code == 0  # moves the state serial on
    (directory / "key.yaml").write_text(SYMMETRIC.replace("main key", "second"))
    stale = run("apply", planfile, "--auto-approve")
    assert stale.exit_code == 1 and "stale" in stale.output and "serial" in stale.output
    meta = boto3.client("kms", region_name="us-east-1").describe_key(KeyId=key_id(directory))
    assert meta["KeyMetadata"]["Description"] == "other"


def test_first_plan_is_stale_once_another_apply_created_state(aws, stack, tmp_path):
    directory = stack({"key.yaml": SYMMETRIC})
    planfile = tmp_path / "p.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    assert run("apply", directory, "--auto-approve").exit_code == 0
    stale = run("apply", planfile, "--auto-approve")
    assert stale.exit_code == 1 and "stale" in stale.output
    assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1


def test_non_tty_apply_without_auto_approve_is_refused_before_any_call(aws, stack, calls):
    directory = stack({"key.yaml": SYMMETRIC})
    result = run("apply", directory)
    assert result.exit_code == 1
    assert "--auto-approve" in result.output
    assert calls.calls == []


def test_concurrent_apply_is_refused_on_the_lock(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time
        from reconciler.state import local
        backend = local.LocalBackend({str(directory / ".reconciler" / "state.json")!r})
        with backend.lock("apply"):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run("apply", directory, "--auto-approve", "--lock-timeout", "0.5")
        assert result.exit_code == 1
        assert f"locked by PID {holder.pid} on " in result.output
        assert "since" in result.output and "running apply" in result.output
        assert "Traceback" not in result.output
        assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == []
    finally:
        holder.communicate("", timeout=10)
    assert run("apply", directory, "--auto-approve").exit_code == 0

"""Issue 6 item 22: `protect` has one default, True, used by the planner and
the KmsProvider kind alike."""

from __future__ import annotations

import json

import boto3

from reconciler.plan import model
from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run, state_of


def forget_protect(directory) -> None:
    """A state entry recorded without `protect` (an older writer, a hand edit)."""
    path = directory / ".reconciler" / "state.json"
    state = json.loads(path.read_text())
    del state["resources"]["KmsProvider/main"]["attributes"]["protect"]
    path.write_text(json.dumps(state))


def test_a_key_recorded_without_protect_is_protected_by_plan_not_only_at_apply(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    forget_protect(directory)
    (directory / "key.yaml").unlink()
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert "KmsProvider/main: refusing to destroy a protected resource (protect: true)" in plan.output
    applied = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert applied.exit_code == 1 and "refusing to destroy a protected resource" in applied.output
    kid = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    meta = boto3.client("kms", region_name="us-east-1").describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"


def test_a_key_recorded_without_protect_is_not_replaced(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    forget_protect(directory)
    (directory / "key.yaml").write_text(SYMMETRIC + "  multiRegion: true\n")
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert "changing multiRegion replaces the key, and the key is protected (protect: true)" in plan.output


def test_one_default_true():
    assert model.PROTECT_DEFAULT is True
    assert model.protect_of({}) is True
    assert model.protect_of({"protect": False}) is False
    assert model.protected({"protect": True}, offers=True)
    assert not model.protected({"protect": False}, offers=True)
    assert model.protected({}, offers=True)  # recorded without it (older state, --no-refresh): protected
    assert not model.protected({"vault": "main"}, offers=False)  # a kind without protect has nothing to protect


def test_a_key_recorded_without_protect_is_protected_by_a_plan_without_refresh(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    forget_protect(directory)
    (directory / "key.yaml").unlink()
    plan = run("plan", directory, "--no-refresh")
    assert plan.exit_code == 1
    assert "KmsProvider/main: refusing to destroy a protected resource (protect: true)" in plan.output

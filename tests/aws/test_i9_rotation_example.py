"""Issue 9, examples/iam-user-rotation: seed 003 (Infisical's AWS IAM user
rotation) as YAML. As in the guide, the target user app-user and the managing
user (infisical-rotation-manager) with its own access key are made by hand
first (here with boto3 on the sandbox); the manager's key reaches the stack
through the two environment variables its auth names. One apply issues
app-user's first key, verifies it and writes the pair into the two outputs;
`secret get` of both returns a pair that is app-user's (sts:GetCallerIdentity)
and the user's only key. `reconciler policy --for` is the manager's policy:
the guide's actions, narrowed from "Resource": "*" to app-user's ARN."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.conftest import run, state_of
from tests.unit.test_i8_policy_command import lint

ACCOUNT = "123456789012"
USER = "app-user"
MANAGER = "infisical-rotation-manager"
ROTATION = "app-user-keys"
VAULT = "app"
OUTPUTS = ("aws-access-key", "aws-secret-access-key")
MANAGER_ACTIONS = ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:GetUser", "iam:ListAccessKeys",
                   "iam:UpdateAccessKey"]
# the guide's step 2.4 policy, its Sid left out
SEED_003 = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["iam:DeleteAccessKey", "iam:GetAccessKeyLastUsed", "iam:CreateAccessKey"],
    "Resource": "*"}]}


def manager_policy(resource: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": MANAGER_ACTIONS, "Resource": [resource]}]}


def by_hand(monkeypatch: pytest.MonkeyPatch, policy: dict | None = None) -> None:
    """Steps 1 and 2 of the guide: the target user, the managing user (with the
    policy, when given) and the manager's access key, exported for the stack."""
    iam = boto3.client("iam")
    iam.create_user(UserName=USER)
    iam.create_user(UserName=MANAGER)
    if policy is not None:
        iam.put_user_policy(UserName=MANAGER, PolicyName=MANAGER, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=MANAGER)["AccessKey"]
    monkeypatch.setenv("ROTATION_MANAGER_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("ROTATION_MANAGER_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def secret(directory, name: str) -> str:
    result = run("secret", "get", f"{VAULT}/{name}", "--dir", directory)
    assert result.exit_code == 0, result.output
    return result.stdout.rstrip("\n")


def policy_for(directory) -> dict:
    result = run("policy", directory, "--for", ROTATION)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_example_validates_strictly(example):
    result = run("validate", example("iam-user-rotation"), "--strict")
    assert result.exit_code == 0, result.output
    assert "3 resource(s)" in result.output  # the key, the vault, the rotation: no user, no Secret


def test_applied_the_outputs_hold_app_users_only_key_and_plan_and_drift_are_clean(
        aws, example, calls, monkeypatch):
    directory = example("iam-user-rotation")
    by_hand(monkeypatch)
    calls.clear()
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert calls.count("CreateAccessKey") == 1  # app-user's first key, once
    assert calls.count("DeleteAccessKey") == calls.count("UpdateAccessKey") == 0  # nothing to retire yet

    # step 3.1's two secrets: a pair that authenticates as app-user
    key_id, secret_key = (secret(directory, name) for name in OUTPUTS)
    identity = boto3.client("sts", aws_access_key_id=key_id, aws_secret_access_key=secret_key,
                            region_name="us-east-1").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{USER}"
    # and it is app-user's one key (the manager's own key untouched)
    iam = boto3.client("iam")
    keys = iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key_id, "Active")]
    assert len(iam.list_access_keys(UserName=MANAGER)["AccessKeyMetadata"]) == 1

    # state keeps the key id and envelope digests, never the secret access key
    text = (directory / ".reconciler" / "state.json").read_text()
    assert secret_key not in text
    ids = state_of(directory)["resources"][f"AccessKeyRotation/{ROTATION}"]["ids"]
    assert ids["current"]["id"] == key_id and ids["userArn"] == identity["Arn"]
    assert {o["secret"] for o in ids["outputs"].values()} == set(OUTPUTS)

    calls.clear()
    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    assert "next rotation due at" in again.output  # the Schedule section: 30 days after issue
    assert calls.writes == [] and calls.count("CreateAccessKey") == 0
    drift = run("drift", directory)
    assert drift.exit_code == 0, drift.output


def test_without_the_managers_keys_in_the_environment_plan_is_one_positioned_error(aws, example, calls):
    directory = example("iam-user-rotation")
    boto3.client("iam").create_user(UserName=USER)
    calls.clear()
    result = run("plan", directory)
    assert result.exit_code == 1
    lines = (directory / "stack.yaml").read_text().splitlines()
    (line,) = [n for n, text in enumerate(lines, 1) if "{env: ROTATION_MANAGER_ACCESS_KEY_ID}" in text]
    column = lines[line - 1].index("ROTATION_MANAGER_ACCESS_KEY_ID") + 1  # at the variable name
    assert result.output.strip() == (
        f"Error: {directory / 'stack.yaml'}:{line}:{column}: AccessKeyRotation/{ROTATION}: auth.accessKey.accessKeyId: "
        "environment variable ROTATION_MANAGER_ACCESS_KEY_ID is not set")
    assert calls.writes == []


def test_the_managers_policy_names_app_user_only_before_and_after_apply(aws, example, monkeypatch, calls):
    directory = example("iam-user-rotation")
    before = policy_for(directory)
    assert before == manager_policy(f"arn:aws:iam::*:user/{USER}")
    assert lint(before) == []

    # step 2.4 with the printed policy instead of the guide's wildcard one
    by_hand(monkeypatch, before)
    monkeypatch.setenv("RECONCILER_NOW", "2026-01-01T00:00:00Z")
    calls.clear()
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output

    after = policy_for(directory)  # the user's ARN recorded by the first apply
    assert after == manager_policy(f"arn:aws:iam::{ACCOUNT}:user/{USER}")
    assert lint(after) == []
    for document in (before, after):
        assert all(s["Resource"] != "*" and "*" not in s["Resource"] for s in document["Statement"])

    # a whole cycle (the first key, the rotation due 30 days on, the previous key
    # deactivated one grace period later and deleted one more later) calls IAM
    # for nothing else than those five actions
    for now in ("2026-01-31T00:00:00Z", "2026-01-31T01:00:00Z", "2026-01-31T02:00:00Z"):
        monkeypatch.setenv("RECONCILER_NOW", now)
        result = run("apply", directory, "--auto-approve")
        assert result.exit_code == 0, result.output
    made = {f"iam:{o}" for s, o, _ in calls.calls if s == "iam"}
    assert made == set(MANAGER_ACTIONS)
    assert len(boto3.client("iam").list_access_keys(UserName=USER)["AccessKeyMetadata"]) == 1
    # the guide's policy: Create/DeleteAccessKey (and GetAccessKeyLastUsed, never
    # needed) on "Resource": "*", every user of the account
    (seed,) = SEED_003["Statement"]
    assert seed["Resource"] == "*" and set(seed["Action"]) - set(MANAGER_ACTIONS) == {"iam:GetAccessKeyLastUsed"}

    # apply's own identity makes none of the manager's IAM calls
    own = run("policy", directory)
    assert own.exit_code == 0, own.output
    actions = {a for s in json.loads(own.stdout)["Statement"] for a in s["Action"]}
    assert not {a for a in actions if a.startswith("iam:")} & set(MANAGER_ACTIONS)
    assert "iam:CreateAccessKey" not in actions

"""Issue 8: a key policy is compared by meaning. Reordered or respelled but
equal is no change (in plan and in drift); a real change is one statement-
level change, applied."""

from __future__ import annotations

import json

import boto3

from tests.conftest import run, state_of

KEY = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: main}
spec:
  protect: false
  deletionWindowDays: 7
  policy:
"""
WRITTEN = """\
    Version: "2012-10-17"
    Statement:
      - Sid: Admin
        Effect: Allow
        Principal: {AWS: "arn:aws:iam::123456789012:root"}
        Action: "kms:*"
        Resource: "*"
      - Effect: Allow
        Principal: {AWS: ["arn:aws:iam::123456789012:role/b", "arn:aws:iam::123456789012:role/a"]}
        Action: [kms:Encrypt, kms:Decrypt]
        Resource: "*"
        Condition: {StringEquals: {"kms:CallerAccount": "123456789012", "kms:ViaService": s3.us-east-1.amazonaws.com}}
"""
RESPELLED = """\
    Statement:
      - Resource: ["*"]
        Condition: {StringEquals: {"kms:ViaService": [s3.us-east-1.amazonaws.com], "kms:CallerAccount": "123456789012"}}
        Action: [kms:Decrypt, kms:Encrypt]
        Principal: {AWS: ["arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/b"]}
        Effect: Allow
      - Action: ["kms:*"]
        Principal: {AWS: "123456789012"}
        Sid: Admin
        Effect: Allow
        Resource: "*"
    Version: "2012-10-17"
"""


def live_policy(directory) -> dict:
    key = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    kms = boto3.client("kms", region_name="us-east-1")
    return json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])


def test_a_respelled_equal_key_policy_is_no_change_and_no_drift(aws, stack, calls):
    directory = stack({"key.yaml": KEY + WRITTEN})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(KEY + RESPELLED)
    calls.clear()
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes" in plan.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "kms:PutKeyPolicy" not in calls.writes

    # the same document, reordered and respelled out of band, is no drift either
    key = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    shuffled = live_policy(directory)
    shuffled["Statement"].reverse()
    boto3.client("kms", region_name="us-east-1").put_key_policy(KeyId=key, PolicyName="default",
                                                                Policy=json.dumps(shuffled, indent=2))
    drift = run("drift", directory)
    assert drift.exit_code == 0, drift.output


def test_a_real_key_policy_change_is_shown_by_statement_and_applied(aws, stack):
    directory = stack({"key.yaml": KEY + WRITTEN})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    narrower = WRITTEN.replace("Action: [kms:Encrypt, kms:Decrypt]", "Action: [kms:Decrypt]")
    (directory / "key.yaml").write_text(KEY + narrower)
    plan = json.loads(run("plan", directory, "--format", "json").output)
    (change,) = plan["changes"]
    assert [(c["path"], c["op"]) for c in change["changes"]] == [("policy.Statement[1].Action", "change")]
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (use,) = [s for s in live_policy(directory)["Statement"] if s.get("Sid") != "Admin"]
    assert use["Action"] == ["kms:Decrypt"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

"""Issue 8: once a stack is applied, `reconciler policy` names the exact key
ARNs (primary and replicas) and the account state records, and drops what
only creating needed (kms:CreateKey, tag-scoped statements)."""

from __future__ import annotations

import json

from tests.conftest import run, state_of
from tests.unit.test_i8_policy_command import lint


def test_after_apply_the_policy_names_exact_key_arns_and_the_account(aws, example):
    directory = example("quickstart")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    ids = {a: e["ids"] for a, e in state_of(directory)["resources"].items() if a.startswith("KmsProvider/")}
    app, rsa = ids["KmsProvider/app-data"]["arn"], ids["KmsProvider/vault-rsa"]["arn"]
    replica = rsa.replace(":us-east-1:", ":us-west-2:")

    result = run("policy", directory)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    statements = document["Statement"]
    actions = {a for s in statements for a in s["Action"]}
    assert "kms:CreateKey" not in actions and "kms:ListKeys" not in actions  # nothing left to create
    assert not [s for s in statements if "Condition" in s and "aws:ResourceTag/reconciler:address"
                in s["Condition"].get("StringEquals", {})]

    def on(*resources: str) -> set[str]:
        return {a for s in statements if s["Resource"] == sorted(resources) for a in s["Action"]}

    assert {"kms:EnableKeyRotation", "kms:ScheduleKeyDeletion"} <= on(app)
    assert {"kms:DescribeKey", "kms:ScheduleKeyDeletion"} <= on(rsa, replica)
    (replicate,) = [s for s in statements if s["Action"] == ["kms:ReplicateKey"]]
    assert replicate == {"Effect": "Allow", "Action": ["kms:ReplicateKey"], "Resource": [rsa],  # the primary only
                         "Condition": {"StringEquals": {"kms:ReplicaRegion": "us-west-2"}}}
    assert on("arn:aws:kms:us-east-1:123456789012:alias/quickstart/app-data") == {
        "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"}
    (use,) = [s for s in statements if "kms:GenerateDataKey" in s["Action"]]
    assert use == {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [app],
                   "Condition": {"StringEquals": {"kms:EncryptionContext:reconciler:stack": "quickstart",
                                                  "kms:EncryptionContext:reconciler:vault": "app"}}}
    assert all(":*:" not in r for s in statements for r in s["Resource"])  # the account is known now
    assert lint(document) == []

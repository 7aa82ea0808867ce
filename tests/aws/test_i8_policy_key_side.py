"""Issue 8, the key side end to end: the granted role's statement lands in the
policy of the primary and the replica, a changed grant changes it, the plan
after apply is clean, and a statement removed out of band is drift. Runs once
the IamRole kind is reconciled (kinds.HANDLERS); until then plan refuses
IamRole manifests, and tests/unit/test_i8_policy_key_side.py covers the
composition."""

from __future__ import annotations

import json

import boto3
import pytest

from reconciler import kinds
from tests.conftest import run, state_of
from tests.unit.test_i8_policy_key_side import KEY, ROLE

pytestmark = pytest.mark.skipif("IamRole" not in kinds.HANDLERS, reason="the IamRole kind is not reconciled yet")


def policy(key_id: str, region: str) -> dict:
    kms = boto3.client("kms", region_name=region)
    return json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])


def test_the_granted_role_is_a_key_user_on_primary_and_replica_and_plans_clean(aws, stack):
    directory = stack({"x.yaml": KEY + "  protect: false\n---\n" + ROLE})
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    key_id = state_of(directory)["resources"]["KmsProvider/cerby-rsa"]["ids"]["keyId"]
    for region in ("us-east-1", "us-west-2"):
        statements = {s["Sid"]: s for s in policy(key_id, region)["Statement"]}
        assert statements["ReconcilerKeyUserCerbyVendor"]["Condition"] == {
            "ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/vendors/cerby-vendor"}}
        assert statements["ReconcilerKeyUserCerbyVendor"]["Action"] == [
            "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey"]
        assert statements["Enable IAM User Permissions"]["Action"] == "kms:*"  # the key stays manageable
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

    (directory / "x.yaml").write_text(KEY + "  protect: false\n---\n" + ROLE.replace("get-public-key, ", ""))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert [s["Action"] for s in policy(key_id, "us-west-2")["Statement"]
            if s["Sid"] == "ReconcilerKeyUserCerbyVendor"] == [["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"]]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

    stripped = policy(key_id, "us-west-2")
    stripped["Statement"] = [s for s in stripped["Statement"] if s["Sid"] != "ReconcilerKeyUserCerbyVendor"]
    boto3.client("kms", region_name="us-west-2").put_key_policy(KeyId=key_id, PolicyName="default",
                                                                Policy=json.dumps(stripped))
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "replicas.us-west-2.keyUsers.IamRole/cerby-vendor" in drift.output

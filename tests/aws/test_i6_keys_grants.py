"""Issue 6 item 6: only grants this stack created (by name) are managed; other
grants (AWS services make their own) are info drift, never revoked unless
exclusiveGrants: true."""

from __future__ import annotations

import json

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run, state_of

ROLE = "arn:aws:iam::123456789012:role/"
GRANTS = f"""\
  grants:
    - name: app-decrypt
      granteePrincipal: {ROLE}app
      operations: [Decrypt, DescribeKey]
    - name: batch-encrypt
      granteePrincipal: {ROLE}batch
      operations: [Encrypt]
"""
ONE_GRANT = GRANTS.split("    - name: batch-encrypt")[0]


def kms():
    return boto3.client("kms", region_name="us-east-1")


def grants(key_id: str) -> dict:
    return {g.get("Name") or g["GrantId"]: sorted(g["Operations"]) for g in kms().list_grants(KeyId=key_id)["Grants"]}


def service_grant(key_id: str) -> str:
    """A grant as EBS makes one for itself: unnamed, for an AWS service role."""
    return kms().create_grant(KeyId=key_id, GranteePrincipal=f"{ROLE}aws-service-role/ebs.amazonaws.com",
                              Operations=["Decrypt", "GenerateDataKeyWithoutPlaintext"])["GrantId"]


def test_grants_not_created_by_the_stack_are_info_drift_and_never_revoked(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC + GRANTS})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    ebs = service_grant(kid)

    drift = json.loads(run("drift", directory, "--format", "json").output)
    (item,) = drift["drift"]
    assert (item["address"], item["severity"]) == ("KmsProvider/main", "info")
    assert item["changes"] == [{"path": f"grants.grant-id:{ebs}", "op": "add", "before": None, "after": {
        "granteePrincipal": f"{ROLE}aws-service-role/ebs.amazonaws.com",
        "operations": ["Decrypt", "GenerateDataKeyWithoutPlaintext"]}}]
    assert item["note"].startswith("grants this stack did not create")
    assert drift["critical"] == 0
    report = run("drift", directory)
    assert report.exit_code == 0, report.output  # info alone never pages the nightly job
    assert f"grants.grant-id:{ebs}" in report.output  # but it is shown

    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output  # nothing to change: the service's grant is not ours
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert ebs in grants(kid)

    # a declared grant that changes, and one that is no longer declared: ours, so converged
    (directory / "key.yaml").write_text(SYMMETRIC + ONE_GRANT.replace("Decrypt, DescribeKey", "Decrypt"))
    plan = json.loads(run("plan", directory, "--format", "json").output)
    (change,) = [c for c in plan["changes"] if c["action"] != "no-op"]
    assert sorted(c["path"] for c in change["changes"]) == ["grants.app-decrypt.operations",
                                                           "grants.batch-encrypt"]
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert grants(kid) == {"app-decrypt": ["Decrypt"], ebs: ["Decrypt", "GenerateDataKeyWithoutPlaintext"]}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_exclusive_grants_revokes_every_undeclared_grant(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC + ONE_GRANT})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    ebs = service_grant(kid)
    (directory / "key.yaml").write_text(SYMMETRIC + ONE_GRANT + "  exclusiveGrants: true\n")
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2
    assert f"grants.grant-id:{ebs}" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert grants(kid) == {"app-decrypt": ["Decrypt", "DescribeKey"]}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

"""Adopting existing keys, auth modes, and AWS failures as one-line errors."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from reconciler.aws import session
from tests.aws.test_kms_lifecycle import SYMMETRIC, key_id
from tests.conftest import run, state_of


def adopted(key: str, extra: str = "") -> str:
    return f"""\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {{name: legacy}}
spec:
  keyId: {key}
{extra}"""


def test_adopted_key_is_read_and_drift_is_reported_never_fixed(aws, stack, calls):
    kms = boto3.client("kms", region_name="us-east-1")
    kid = kms.create_key(Description="made by hand")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/legacy", TargetKeyId=kid)
    directory = stack({"key.yaml": adopted("alias/legacy")})
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2
    assert "<= KmsProvider/legacy" in plan.output and "made by hand" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    entry = state_of(directory)["resources"]["KmsProvider/legacy"]
    assert entry["mode"] == "read" and entry["ids"]["keyId"] == kid
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

    kms.update_key_description(KeyId=kid, Description="changed")
    assert run("drift", directory).exit_code == 2
    calls.clear()
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0
    assert calls.writes == []  # read-only: recorded, never reverted
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "changed"
    assert run("drift", directory).exit_code == 0

    (directory / "key.yaml").unlink()
    (directory / "other.yaml").write_text(SYMMETRIC)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"  # forgotten, not deleted


def test_adopted_key_with_manage_true_is_reconciled(aws, stack):
    kms = boto3.client("kms", region_name="us-east-1")
    kid = kms.create_key(Description="old")["KeyMetadata"]["KeyId"]
    directory = stack({"key.yaml": adopted(kid, "  manage: true\n  description: managed now\n"
                                                "  tags: {owner: sec}\n  rotation: {enabled: true}\n")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "managed now"
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is True
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    kms.disable_key(KeyId=kid)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"


def test_adopting_a_missing_key_is_a_clear_error(aws, stack):
    directory = stack({"key.yaml": adopted("alias/nope")})
    result = run("plan", directory)
    assert result.exit_code == 1
    assert "KmsProvider/legacy" in result.output and "not found" in result.output
    assert "Traceback" not in result.output


def test_key_policy_is_applied_and_its_drift_detected(aws, stack):
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "kms:*", "Resource": "*"}]}
    text = SYMMETRIC + "  policy: " + json.dumps(policy) + "\n"
    directory = stack({"key.yaml": text})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    kid = key_id(directory)
    assert json.loads(kms.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]) == policy
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    changed = json.loads(json.dumps(policy))
    changed["Statement"][0]["Sid"] = "Changed"
    kms.put_key_policy(KeyId=kid, PolicyName="default", Policy=json.dumps(changed))
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "policy" in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert json.loads(kms.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]) == policy


def test_access_key_auth_reads_env_refs(aws, stack, monkeypatch):
    text = SYMMETRIC + "  auth:\n    accessKey:\n      accessKeyId: {env: MY_KEY_ID}\n" \
                       "      secretAccessKey: {env: MY_SECRET}\n"
    directory = stack({"key.yaml": text})
    missing = run("plan", directory)
    assert missing.exit_code == 1
    assert "environment variable MY_KEY_ID is not set" in missing.output
    monkeypatch.setenv("MY_KEY_ID", "AKIAFAKEFORTESTS0000")
    monkeypatch.setenv("MY_SECRET", "not-a-real-secret-value-canary")
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "not-a-real-secret-value-canary" not in (directory / ".reconciler" / "state.json").read_text()


def test_assume_role_and_web_identity_auth(aws, stack, tmp_path, calls):
    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    token = tmp_path / "token"
    token.write_text("header.payload.signature")
    first = SYMMETRIC + f"  auth:\n    assumeRole: {{roleArn: '{arn}', externalId: ext-123}}\n"
    second = SYMMETRIC.replace("name: main", "name: second").replace("team/main", "team/second") + \
        f"  auth:\n    webIdentity: {{roleArn: '{arn}', tokenFile: '{token}'}}\n"
    directory = stack({"a.yaml": first, "b.yaml": second})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    operations = {op for _, op, _ in calls.calls}
    assert {"AssumeRole", "AssumeRoleWithWebIdentity", "CreateKey"} <= operations

    token.unlink()
    result = run("plan", directory)
    assert result.exit_code == 1 and "tokenFile" in result.output


def _reset_auth(endpoint: str, value: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=value.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request).read()


def test_access_denied_is_one_line_naming_resource_and_code(aws, stack, monkeypatch):
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:Describe*", "kms:List*", "kms:Get*", "tag:GetResources"],
                       "Resource": "*"}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    directory = stack({"key.yaml": SYMMETRIC})
    _reset_auth(aws, "0")
    try:
        result = run("apply", directory, "--auto-approve")
    finally:
        _reset_auth(aws, "inf")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "KmsProvider/main" in errors[0] and "AWS denied kms:CreateKey" in errors[0]
    assert "AccessDenied" in errors[0]
    assert "Traceback" not in result.output
    # nothing half-changed: the intent journaled before CreateKey was rolled back (issue 7 item 3)
    recorded = state_of(directory)
    assert recorded["resources"] == {} and recorded["journal"] == [] and recorded["deposed"] == {}


@pytest.fixture()
def throttle_create_key(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    seen = []

    def handler(request, **_kwargs):
        seen.append(request.url)
        raw = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(raw))

    session.register_hook("before-send.kms.CreateKey", handler)
    yield seen
    session.unregister_hook("before-send.kms.CreateKey", handler)


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


def test_throttling_after_retries_is_a_clear_error(aws, stack, throttle_create_key):
    directory = stack({"key.yaml": SYMMETRIC})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    assert len(throttle_create_key) == 2  # retried by botocore, then given up
    assert "throttled by AWS (ThrottlingException) and still failed after 2 attempts" in result.output
    assert "Traceback" not in result.output


def test_unreachable_endpoint_is_a_clear_error(aws, stack, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    directory = stack({"key.yaml": SYMMETRIC})
    result = run("plan", directory)  # nothing in state, but the alias is checked live (issue 6 item 1a)
    assert result.exit_code == 1 and "cannot reach the AWS endpoint" in result.output
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "cannot reach the AWS endpoint" in errors[0]
    assert "Traceback" not in result.output
    assert not (directory / ".reconciler" / "state.json").exists()  # nothing recorded, nothing half-done


def test_import_adopts_an_existing_key_as_managed(aws, stack):
    kms = boto3.client("kms", region_name="us-east-1")
    kid = kms.create_key(Description="clicked in the console")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/team/main", TargetKeyId=kid)
    directory = stack({"key.yaml": SYMMETRIC})
    missing = run("import", "KmsProvider/nope", kid, "--dir", directory)
    assert missing.exit_code == 1 and "declare it in the manifests" in missing.output
    imported = run("import", "KmsProvider/main", "alias/team/main", "--dir", directory)
    assert imported.exit_code == 0, imported.output
    entry = state_of(directory)["resources"]["KmsProvider/main"]
    assert entry["mode"] == "managed" and entry["ids"]["keyId"] == kid
    assert entry["attributes"]["protect"] is False and entry["attributes"]["deletionWindowDays"] == 7
    again = run("import", "KmsProvider/main", kid, "--dir", directory)
    assert again.exit_code == 1 and "already in state" in again.output
    plan = run("plan", directory)
    assert "~ KmsProvider/main" in plan.output and '"clicked in the console" -> "main key"' in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert len(kms.list_keys()["Keys"]) == 1  # converged, not created again
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "main key"
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

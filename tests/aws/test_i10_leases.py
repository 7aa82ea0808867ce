"""Issue 10: dynamic IAM users from templates, as leases that never leak a
user. The real CLI against the sandbox; the clock set by RECONCILER_NOW."""

from __future__ import annotations

import json
import pathlib
import textwrap

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from reconciler.aws import session
from tests.aws.test_i6_keys_quota import _Raw, inject  # noqa: F401  (fixture)
from tests.aws.test_i7_runtime_journal import Killed, KillAfter
from tests.conftest import run, state_of

T0 = "2030-01-01T00:00:00Z"
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                  "Resource": "arn:aws:s3:::reports"}]}


def template(extra: str = "", name: str = "ci", groups: str = "[readers]") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: DynamicIamTemplate
        metadata: {{name: {name}}}
        spec:
          auth: {{accessKey: {{accessKeyId: {{env: MGR_ID}}, secretAccessKey: {{env: MGR_SECRET}}}}}}
          defaultTtl: 1h
          maxTtl: 4h
          path: /leases/
          permissionsBoundary: arn:aws:iam::123456789012:policy/boundary
          groups: {groups}
          policyArns: [arn:aws:iam::123456789012:policy/read-only]
          inlinePolicy:
            Version: "2012-10-17"
            Statement: [{{Effect: Allow, Action: "s3:GetObject", Resource: "arn:aws:s3:::reports/*"}}]
          userNamePrefix: tmp-
          tags: {{team: platform}}
        """) + extra


def iam():
    return boto3.client("iam", region_name="us-east-1")


@pytest.fixture()
def account(aws, monkeypatch):
    """What the guide's prerequisites make by hand: the manager, a group, the policies."""
    client = iam()
    client.create_user(UserName="manager")
    key = client.create_access_key(UserName="manager")["AccessKey"]
    monkeypatch.setenv("MGR_ID", key["AccessKeyId"])
    monkeypatch.setenv("MGR_SECRET", key["SecretAccessKey"])
    for group in ("readers", "writers"):
        client.create_group(GroupName=group)
    for name in ("read-only", "boundary", "other"):
        client.create_policy(PolicyName=name, PolicyDocument=json.dumps(POLICY))
    monkeypatch.setenv("RECONCILER_NOW", T0)


@pytest.fixture()
def applied(account, stack):
    def make(extra: str = "") -> pathlib.Path:
        directory = stack({"template.yaml": template(extra)})
        result = run("apply", directory, "--auto-approve")
        assert result.exit_code == 0, result.output
        return directory
    return make


def create(directory: pathlib.Path, *args: str) -> dict:
    result = run("lease", "create", "ci", "--dir", directory, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])


def lease_users() -> list[str]:
    return sorted(u["UserName"] for u in iam().list_users(PathPrefix="/leases/")["Users"])


def leases(directory: pathlib.Path) -> dict:
    return state_of(directory)["leases"]


def test_a_lease_is_a_user_made_as_the_template_says_with_one_working_key(applied):
    directory = applied()
    issued = create(directory, "--ttl", "2h")
    name = issued["userName"]
    assert name == f"tmp-ci-{issued['leaseId']}" and len(name) <= 64
    assert issued["expiresAt"] == "2030-01-01T02:00:00+00:00"
    client = iam()
    user = client.get_user(UserName=name)["User"]
    assert user["Path"] == "/leases/"
    assert user["PermissionsBoundary"]["PermissionsBoundaryArn"] == "arn:aws:iam::123456789012:policy/boundary"
    assert [g["GroupName"] for g in client.list_groups_for_user(UserName=name)["Groups"]] == ["readers"]
    assert [p["PolicyArn"] for p in client.list_attached_user_policies(UserName=name)["AttachedPolicies"]] == \
        ["arn:aws:iam::123456789012:policy/read-only"]
    assert client.list_user_policies(UserName=name)["PolicyNames"] == ["reconciler-lease"]
    tags = {t["Key"]: t["Value"] for t in client.list_user_tags(UserName=name)["Tags"]}
    assert tags == {"team": "platform", "reconciler:stack": "test", "reconciler:template": "DynamicIamTemplate/ci",
                    "reconciler:lease": issued["leaseId"]}
    [key] = client.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert key["AccessKeyId"] == issued["accessKeyId"]
    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id=issued["accessKeyId"],
                       aws_secret_access_key=issued["secretAccessKey"])
    assert sts.get_caller_identity()["Arn"] == user["Arn"]
    recorded = leases(directory)[issued["leaseId"]]
    assert recorded["userName"] == name and recorded["maxExpiresAt"] == "2030-01-01T04:00:00+00:00"
    assert issued["secretAccessKey"] not in (directory / ".reconciler" / "state.json").read_text()
    assert state_of(directory)["journal"] == []
    listed = json.loads(run("lease", "list", "--dir", directory, "--format", "json").output)
    assert listed == [{"id": issued["leaseId"], "template": "ci", "user": name,
                       "created": "2030-01-01T00:00:00+00:00", "expires": "2030-01-01T02:00:00+00:00",
                       "state": "active", "revokeAttempts": 0, "lastError": ""}]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


def test_ttl_is_capped_on_create_and_renew(applied, monkeypatch):
    directory = applied()
    refused = run("lease", "create", "ci", "--dir", directory, "--ttl", "5h")
    assert refused.exit_code == 1
    assert "--ttl 5h: longer than DynamicIamTemplate/ci's maxTtl (4h)" in refused.output
    assert lease_users() == []
    issued = create(directory)  # the defaultTtl
    assert issued["expiresAt"] == "2030-01-01T01:00:00+00:00"
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-01T00:30:00Z")
    renewed = run("lease", "renew", issued["leaseId"], "--dir", directory, "--ttl", "2h")
    assert renewed.exit_code == 0 and "now expires 2030-01-01T02:30:00+00:00." in renewed.output
    capped = run("lease", "renew", issued["leaseId"], "--dir", directory, "--ttl", "4h")
    assert capped.exit_code == 0
    assert ("now expires 2030-01-01T04:00:00+00:00 (capped at 2030-01-01T04:00:00+00:00: a lease lives at most "
            "maxTtl (4h) from its creation (2030-01-01T00:00:00+00:00))") in capped.output
    assert leases(directory)[issued["leaseId"]]["expiresAt"] == "2030-01-01T04:00:00+00:00"


def _attach_everything_by_hand(name: str) -> None:
    client = iam()
    client.create_login_profile(UserName=name, Password="Pa55word!-long-enough")
    device = client.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-mfa")["VirtualMFADevice"]
    client.enable_mfa_device(UserName=name, SerialNumber=device["SerialNumber"], AuthenticationCode1="123456",
                             AuthenticationCode2="654321")
    client.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=_ssh_key())
    client.upload_signing_certificate(UserName=name, CertificateBody=_certificate())
    client.create_service_specific_credential(UserName=name, ServiceName="codecommit.amazonaws.com")
    client.add_user_to_group(UserName=name, GroupName="writers")
    client.put_user_policy(UserName=name, PolicyName="by-hand", PolicyDocument=json.dumps(POLICY))
    client.create_access_key(UserName=name)


def test_revoke_deletes_the_user_with_everything_anyone_attached(applied):
    directory = applied()
    issued = create(directory)
    name = issued["userName"]
    _attach_everything_by_hand(name)
    revoked = run("lease", "revoke", issued["leaseId"], "--dir", directory)
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked lease {issued['leaseId']} (also removed: login profile, MFA device" in revoked.output
    assert lease_users() == [] and leases(directory) == {}
    client = iam()
    assert client.list_virtual_mfa_devices()["VirtualMFADevices"] == []
    assert [g["GroupName"] for g in client.list_groups()["Groups"]] == ["readers", "writers"]  # groups kept


def test_expired_leases_are_planned_and_revoked_and_a_failed_revoke_is_retried(applied, inject, monkeypatch):
    directory = applied()
    first, second = create(directory, "--ttl", "1h"), create(directory, "--ttl", "3h")
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-01T01:00:00Z")
    planned = run("plan", directory, "--detailed-exitcode")
    assert planned.exit_code == 2
    assert "! DynamicIamTemplate/ci (revoke expired leases)" in planned.output
    assert f"lease {first['leaseId']} (user {first['userName']}): expired at 2030-01-01T01:00:00+00:00" in \
        planned.output
    assert second["leaseId"] not in planned.output

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    def refuse(request, **_kwargs):
        body = b"<ErrorResponse><Error><Code>ServiceFailure</Code><Message>try later</Message></Error></ErrorResponse>"
        return AWSResponse(request.url, 500, {"Content-Type": "text/xml"}, _Raw(body))

    inject("before-send.iam.DeleteUser", refuse)
    for attempt in (1, 2):
        failed = run("apply", directory, "--auto-approve")
        assert failed.exit_code == 1
        assert "1 of 1 revokes failed and stay pending (retried by every apply" in " ".join(failed.output.split())
        [row] = [r for r in json.loads(run("lease", "list", "--dir", directory, "--format", "json").output)
                 if r["id"] == first["leaseId"]]
        assert (row["state"], row["revokeAttempts"]) == ("revoke-failed", attempt)
        assert row["lastError"] == "iam:DeleteUser failed (ServiceFailure): try later"
        assert f"retry {attempt + 1} (last error: iam:DeleteUser failed (ServiceFailure): try later)" in \
            run("plan", directory).output
        drift = run("drift", directory)  # never silent: a nightly drift check pages for it
        assert drift.exit_code == 2
        assert (f"DynamicIamTemplate/ci (lease {first['leaseId']}) [HIGH]: revoking user {first['userName']} "
                f"failed {attempt} time(s) (last error: iam:DeleteUser failed (ServiceFailure): try later)") \
            in drift.output
    inject.clear()
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert set(leases(directory)) == {second["leaseId"]}
    assert lease_users() == [second["userName"]]


def test_an_interrupted_create_never_leaves_a_user_without_a_lease(applied, calls):
    directory = applied()
    calls.clear()
    create(directory)
    total = [o for _s, o, _r in calls.calls]
    run("lease", "revoke", "--template", "ci", "--dir", directory)
    assert lease_users() == []
    iam_calls = [i for i, op in enumerate(total, 1) if op in ("CreateUser", "AddUserToGroup", "AttachUserPolicy",
                                                                "PutUserPolicy", "CreateAccessKey",
                                                                "GetCallerIdentity")]
    assert len(iam_calls) == 6
    for k in range(1, iam_calls[-1] + 1):
        hook = KillAfter(k)
        session.register_hook("after-call", hook)
        try:
            with pytest.raises(Killed):
                run("lease", "create", "ci", "--dir", directory)
        finally:
            session.unregister_hook("after-call", hook)
        recorded = state_of(directory)
        assert recorded["leases"] == {}, (k, hook.killed_at)
        # the next run cleans up: the plan says so, apply deletes the half-made user
        if recorded["journal"]:
            assert "clean up interrupted lease creates" in run("plan", directory).output
        assert run("apply", directory, "--auto-approve").exit_code == 0, (k, hook.killed_at)
        assert lease_users() == [], (k, hook.killed_at)
        assert state_of(directory)["journal"] == []


def test_a_user_deleted_out_of_band_is_drift_and_the_lease_is_forgotten(applied):
    directory = applied()
    issued = create(directory)
    iam().remove_user_from_group(UserName=issued["userName"], GroupName="readers")
    assert run("lease", "revoke", issued["leaseId"], "--dir", directory).exit_code == 0
    issued = create(directory)
    boto3.client("iam").delete_access_key(UserName=issued["userName"], AccessKeyId=issued["accessKeyId"])
    iam().detach_user_policy(UserName=issued["userName"], PolicyArn="arn:aws:iam::123456789012:policy/read-only")
    iam().remove_user_from_group(UserName=issued["userName"], GroupName="readers")
    iam().delete_user_policy(UserName=issued["userName"], PolicyName="reconciler-lease")
    iam().delete_user(UserName=issued["userName"])
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert f"DynamicIamTemplate/ci (lease {issued['leaseId']})" in drift.output
    assert "the lease's user was deleted outside reconciler; apply forgets the lease" in drift.output
    assert "user already deleted outside reconciler: forgotten" in run("plan", directory).output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert leases(directory) == {}


def test_a_policy_or_group_added_by_hand_is_high_drift_and_apply_puts_it_back(applied):
    directory = applied()
    issued = create(directory)
    iam().attach_user_policy(UserName=issued["userName"], PolicyArn="arn:aws:iam::123456789012:policy/other")
    iam().add_user_to_group(UserName=issued["userName"], GroupName="writers")
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "[HIGH]" in drift.output
    text = " ".join(drift.output.split())
    assert (f"lease {issued['leaseId']} (user {issued['userName']}): added to group writers outside reconciler, "
            "policy arn:aws:iam::123456789012:policy/other attached outside reconciler") in text
    assert run("apply", directory, "--auto-approve").exit_code == 0
    name = issued["userName"]
    assert [g["GroupName"] for g in iam().list_groups_for_user(UserName=name)["Groups"]] == ["readers"]
    assert [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName=name)["AttachedPolicies"]] == \
        ["arn:aws:iam::123456789012:policy/read-only"]
    assert run("drift", directory).exit_code == 0


def test_a_template_change_brings_every_live_lease_in_step(applied):
    directory = applied()
    users = [create(directory)["userName"] for _ in range(2)]
    (directory / "template.yaml").write_text(template(groups="[writers]").replace(
        "policy/read-only]", "policy/other]").replace("userNamePrefix: tmp-\n", "userNamePrefix: tmp-\n"))
    planned = run("plan", directory)
    assert "brings the users of its 2 live leases in step with the template" in planned.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    for name in users:
        assert [g["GroupName"] for g in iam().list_groups_for_user(UserName=name)["Groups"]] == ["writers"]
        assert [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName=name)["AttachedPolicies"]] == \
            ["arn:aws:iam::123456789012:policy/other"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_removing_a_template_revokes_all_its_leases_only_with_allow_destroy(applied):
    directory = applied()
    for _ in range(3):
        create(directory)
    (directory / "template.yaml").unlink()
    planned = run("plan", directory)
    assert "revokes its 3 leases first" in planned.output
    assert run("apply", directory, "--auto-approve").exit_code == 1
    assert len(lease_users()) == 3
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert lease_users() == [] and leases(directory) == {}
    assert "DynamicIamTemplate/ci" not in state_of(directory)["resources"]


def test_orphans_are_reported_and_deleted_only_with_allow_destroy(applied):
    directory = applied()
    issued = create(directory)
    recorded = state_of(directory)
    recorded["leases"] = {}  # state lost the lease: the user is an orphan
    (directory / ".reconciler" / "state.json").write_text(json.dumps(recorded))
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert (f"DynamicIamTemplate/ci (orphan {issued['userName']}) [HIGH]: IAM user {issued['userName']} carries "
            "this template's tags but no lease in state records it") in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 1  # deleting needs --allow-destroy
    assert lease_users() == [issued["userName"]]
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert lease_users() == []


def _issue_many(directory: pathlib.Path, count: int) -> None:
    """``count`` leases made as ``lease create`` makes them, in one process (the
    CLI's start-up, once per lease, is not what this test measures)."""
    from reconciler import engine
    from reconciler import leases as lease_work
    from reconciler.kinds import dynamic_iam
    workspace = engine.open_stack(directory)
    with workspace.backend.lock("test"):
        aws = lease_work._context(workspace)
        want = lease_work._template(workspace, aws, "ci")
        for _ in range(count):
            dynamic_iam.DynamicIamTemplateHandler().issue(aws, want, 3600)


def test_bulk_revoke_of_200_leases_side_by_side(applied, calls):
    directory = applied()
    _issue_many(directory, 200)
    assert len(leases(directory)) == 200 and len(lease_users()) == 200
    calls.clear()
    revoked = run("lease", "revoke", "--template", "ci", "--dir", directory, "--parallelism", "8")
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output.count("Revoked lease") == 200
    assert lease_users() == [] and leases(directory) == {}
    # each user: its key, inline policy, managed policy and group listed and removed, then DeleteUser
    assert calls.count("DeleteUser") == 200 and len(calls.calls) == 200 * 9


def _ssh_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _certificate() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler-test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2025, 1, 1)).not_valid_after(dt.datetime(2035, 1, 1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_removing_a_template_also_deletes_the_user_of_an_interrupted_create(applied):
    directory = applied()
    hook = KillAfter(1, "CreateUser")
    session.register_hook("after-call", hook)
    try:
        with pytest.raises(Killed):
            run("lease", "create", "ci", "--dir", directory)
    finally:
        session.unregister_hook("after-call", hook)
    assert len(lease_users()) == 1 and state_of(directory)["journal"]
    (directory / "template.yaml").unlink()
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert lease_users() == [] and state_of(directory)["journal"] == []


def test_a_lease_is_made_only_from_the_applied_template(applied):
    directory = applied()
    (directory / "template.yaml").write_text(template(groups="[writers]"))
    refused = run("lease", "create", "ci", "--dir", directory)
    assert refused.exit_code == 1
    assert "DynamicIamTemplate/ci has changes not applied yet (groups); apply them first" in refused.output
    assert lease_users() == []


def test_a_new_path_moves_every_live_lease_user(applied):
    directory = applied()
    issued = create(directory)
    (directory / "template.yaml").write_text(template().replace("path: /leases/", "path: /leases/v2/"))
    policy = json.loads(run("policy", directory, "--for", "ci").stdout)
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert "arn:aws:iam::*:user/leases/*" in resources  # the live lease's path: its revoke stays allowed
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert iam().get_user(UserName=issued["userName"])["User"]["Path"] == "/leases/v2/"
    assert run("drift", directory).exit_code == 0
    assert run("lease", "revoke", issued["leaseId"], "--dir", directory).exit_code == 0
    assert lease_users() == []

"""Issue 10, examples/dynamic-iam: seed 004 (Infisical's AWS IAM dynamic
secret) as YAML. As the guide's prerequisite says, the managing user
(infisical-dynamic-manager) and its access key are made by hand first (here
with boto3 on the sandbox), with the boundary, the group and the managed
policy the leases' users get; the manager's key reaches the stack through the
two environment variables its auth names. `apply` records the template;
`lease create` (the guide's Generate) makes a user under /dynamic/ with all
the template says and one working key, printed once and never stored.
`reconciler policy --for` is the manager's policy: the guide's fifteen
actions on "Resource": "*" narrowed to users under the path, a boundary and
managed policies it cannot change, and the template's group by name."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.conftest import run, state_of
from tests.unit.test_i8_policy_command import lint

ACCOUNT = "123456789012"
TEMPLATE = "app-dynamic"
ADDRESS = f"DynamicIamTemplate/{TEMPLATE}"
MANAGER = "infisical-dynamic-manager"
PATH = "/dynamic/"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/dynamic-boundary"
GROUP = "dynamic-app-readers"
MANAGED = f"arn:aws:iam::{ACCOUNT}:policy/dynamic-app-read"
ENV = ("DYNAMIC_MANAGER_ACCESS_KEY_ID", "DYNAMIC_MANAGER_SECRET_ACCESS_KEY")
NOW = "2026-01-01T00:00:00Z"
INLINE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "ReadAppConfig", "Effect": "Allow", "Action": ["s3:GetObject"],
     "Resource": "arn:aws:s3:::acme-app-config/app/config.json"},
    {"Sid": "SendJobs", "Effect": "Allow", "Action": ["sqs:SendMessage"],
     "Resource": f"arn:aws:sqs:us-east-1:{ACCOUNT}:app-jobs"}]}
# the guide's prerequisite policy: fifteen actions on every user and group of the account
SEED_004 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
    "iam:AttachUserPolicy", "iam:CreateAccessKey", "iam:CreateUser", "iam:DeleteAccessKey", "iam:DeleteUser",
    "iam:DeleteUserPolicy", "iam:DetachUserPolicy", "iam:GetUser", "iam:ListAccessKeys",
    "iam:ListAttachedUserPolicies", "iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:PutUserPolicy",
    "iam:AddUserToGroup", "iam:RemoveUserFromGroup"], "Resource": ["*"]}]}

USERS = "arn:aws:iam::*:user/dynamic/*"
USER_ACTIONS = [
    "iam:CreateAccessKey", "iam:DeactivateMFADevice", "iam:DeleteAccessKey", "iam:DeleteLoginProfile",
    "iam:DeleteSSHPublicKey", "iam:DeleteServiceSpecificCredential", "iam:DeleteSigningCertificate",
    "iam:DeleteUser", "iam:DeleteUserPolicy", "iam:DetachUserPolicy",
    "iam:GetLoginProfile", "iam:GetUser", "iam:GetUserPolicy", "iam:ListAccessKeys",
    "iam:ListAttachedUserPolicies", "iam:ListGroupsForUser", "iam:ListMFADevices", "iam:ListSSHPublicKeys",
    "iam:ListServiceSpecificCredentials", "iam:ListSigningCertificates", "iam:ListUserPolicies",
    "iam:ListUserTags", "iam:PutUserPolicy", "iam:TagUser", "iam:UntagUser"]
# `reconciler policy examples/dynamic-iam --for app-dynamic`, read and checked, then pinned:
# - every user action on users under /dynamic/ only (the guide: "Resource": "*");
# - CreateUser (and PutUserPermissionsBoundary) only with the template's boundary, so
#   the manager cannot make a user without it;
# - AttachUserPolicy only of the template's managed policy (iam:PolicyARN);
# - AddUserToGroup / RemoveUserFromGroup on the template's group by name;
# - DeleteVirtualMFADevice on mfa/* (a virtual device someone added to a lease's user
#   has an ARN of its own, not under the user's path), and ListUsers (orphans, at apply)
#   and GetAccountAuthorizationDetails (plan reads the leases' users from the account's
#   listing) on "*" (they take no resource ARN): the statements wider than the path, each
#   with a note;
# - no DeleteUserPermissionsBoundary: with it, the manager could put any inline policy on
#   a lease's user and then strip the boundary that caps it.
MANAGER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["iam:GetAccountAuthorizationDetails", "iam:ListUsers"], "Resource": ["*"]},
    {"Effect": "Allow", "Action": ["iam:AddUserToGroup", "iam:RemoveUserFromGroup"],
     "Resource": [f"arn:aws:iam::*:group/{GROUP}"]},
    {"Effect": "Allow", "Action": ["iam:DeleteVirtualMFADevice"], "Resource": ["arn:aws:iam::*:mfa/*"]},
    {"Effect": "Allow", "Action": USER_ACTIONS, "Resource": [USERS]},
    {"Effect": "Allow", "Action": ["iam:CreateUser", "iam:PutUserPermissionsBoundary"], "Resource": [USERS],
     "Condition": {"ArnEquals": {"iam:PermissionsBoundary": BOUNDARY}}},
    {"Effect": "Allow", "Action": ["iam:AttachUserPolicy"], "Resource": [USERS],
     "Condition": {"ArnEquals": {"iam:PolicyARN": MANAGED}}},
]}
# parliament finds nothing in it.
LINT: list = []


def by_hand(monkeypatch: pytest.MonkeyPatch, policy: dict | None = None) -> None:
    """The guide's prerequisite, by hand: the boundary (a customer-managed policy: the
    sandbox has no AWS-managed ones), the managed policy and the group the leases'
    users get, the managing user (with ``policy``, when given) and its access key,
    exported for the stack."""
    iam = boto3.client("iam")
    boundary = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "sqs:SendMessage"],
         "Resource": ["arn:aws:s3:::acme-app-config/app/config.json", f"arn:aws:sqs:us-east-1:{ACCOUNT}:app-jobs"]}]}
    iam.create_policy(PolicyName="dynamic-boundary", PolicyDocument=json.dumps(boundary))
    read = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::acme-app-config/app/config.json"]}]}
    iam.create_policy(PolicyName="dynamic-app-read", PolicyDocument=json.dumps(read))
    iam.create_group(GroupName=GROUP)
    iam.create_user(UserName=MANAGER)
    if policy is not None:
        iam.put_user_policy(UserName=MANAGER, PolicyName=MANAGER, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=MANAGER)["AccessKey"]
    monkeypatch.setenv(ENV[0], key["AccessKeyId"])
    monkeypatch.setenv(ENV[1], key["SecretAccessKey"])


def applied(directory, monkeypatch: pytest.MonkeyPatch, policy: dict | None = None):
    by_hand(monkeypatch, policy)
    monkeypatch.setenv("RECONCILER_NOW", NOW)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    return directory


def create(directory, *extra: str) -> dict:
    result = run("lease", "create", TEMPLATE, "--dir", directory, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def policy_for(directory) -> dict:
    result = run("policy", directory, "--for", TEMPLATE)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_example_validates_strictly(example):
    result = run("validate", example("dynamic-iam"), "--strict")
    assert result.exit_code == 0, result.output
    assert "1 resource(s)" in result.output and "warning" not in result.output  # the template alone


def test_a_lease_is_a_user_under_the_path_with_all_the_template_says_and_one_working_key(
        aws, example, monkeypatch):
    directory = applied(example("dynamic-iam"), monkeypatch)
    lease = create(directory)
    name, lease_id = lease["userName"], lease["leaseId"]
    assert name == f"dyn-{TEMPLATE}-{lease_id}" and len(name) <= 64  # readable: prefix, template, lease id
    assert lease["template"] == TEMPLATE
    assert lease["expiresAt"] == "2026-01-01T01:00:00+00:00"  # defaultTtl 1h

    iam = boto3.client("iam")
    user = iam.get_user(UserName=name)["User"]
    assert user["Path"] == PATH
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/dynamic/{name}"
    # GetUser returns the boundary only with the sandbox fidelity fix (stock moto drops it)
    assert user.get("PermissionsBoundary") == {"PermissionsBoundaryType": "Policy",
                                               "PermissionsBoundaryArn": BOUNDARY}
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]] == [GROUP]
    assert [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]] == [MANAGED]
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["reconciler-lease"]
    document = iam.get_user_policy(UserName=name, PolicyName="reconciler-lease")["PolicyDocument"]
    assert (json.loads(document) if isinstance(document, str) else document) == INLINE
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
    assert tags == {"reconciler:stack": "dynamic-iam", "reconciler:template": ADDRESS,
                    "reconciler:lease": lease_id, "team": "platform", "purpose": "dynamic-secret"}
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(lease["accessKeyId"], "Active")]

    # the printed credentials are the new user's
    identity = boto3.client("sts", aws_access_key_id=lease["accessKeyId"],
                            aws_secret_access_key=lease["secretAccessKey"],
                            region_name="us-east-1").get_caller_identity()
    assert identity["Arn"] == user["Arn"]

    listed = run("lease", "list", "--dir", directory, "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [{
        "id": lease_id, "template": TEMPLATE, "user": name, "created": "2026-01-01T00:00:00+00:00",
        "expires": "2026-01-01T01:00:00+00:00", "state": "active", "revokeAttempts": 0, "lastError": ""}]

    # state keeps the lease (user, key id, dates), never the secret access key
    text = (directory / ".reconciler" / "state.json").read_text()
    assert lease["secretAccessKey"] not in text
    recorded = state_of(directory)["leases"][lease_id]
    assert recorded["userName"] == name and recorded["keyId"] == lease["accessKeyId"]

    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    drift = run("drift", directory)
    assert drift.exit_code == 0, drift.output


def test_an_expired_lease_is_revoked_by_the_next_apply(aws, example, monkeypatch):
    directory = applied(example("dynamic-iam"), monkeypatch)
    lease = create(directory, "--ttl", "30m")
    assert lease["expiresAt"] == "2026-01-01T00:30:00+00:00"
    monkeypatch.setenv("RECONCILER_NOW", "2026-01-01T00:30:00Z")
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert f"! {ADDRESS}" in plan.output and f"lease {lease['leaseId']}" in plan.output
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert not [u for u in boto3.client("iam").list_users(PathPrefix=PATH)["Users"]]
    assert json.loads(run("lease", "list", "--dir", directory, "--format", "json").stdout) == []
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_a_ttl_above_max_ttl_is_refused_naming_the_cap(aws, example, monkeypatch, calls):
    directory = applied(example("dynamic-iam"), monkeypatch)
    calls.clear()
    result = run("lease", "create", TEMPLATE, "--dir", directory, "--ttl", "25h")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: --ttl 25h: longer than {ADDRESS}'s maxTtl (24h); ask for at most that")
    assert calls.writes == []
    assert not boto3.client("iam").list_users(PathPrefix=PATH)["Users"]
    assert create(directory, "--ttl", "24h")["expiresAt"] == "2026-01-02T00:00:00+00:00"  # the cap itself is fine


def test_the_managers_policy_is_scoped_to_the_path_and_pinned(aws, example, monkeypatch, calls):
    directory = example("dynamic-iam")
    before = policy_for(directory)
    assert before == MANAGER_POLICY
    assert lint(before) == LINT

    # the prerequisite with the printed policy instead of the guide's wildcard one
    by_hand(monkeypatch, before)
    monkeypatch.setenv("RECONCILER_NOW", NOW)

    # apply, a whole lease (created, verified, revoked with a login profile added by
    # hand), plan and drift call IAM for nothing the policy does not grant
    calls.clear()
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert policy_for(directory) == MANAGER_POLICY  # nothing in it waits for state
    lease = create(directory)
    boto3.client("iam").create_login_profile(UserName=lease["userName"], Password="Hand-made-1!")
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    revoked = run("lease", "revoke", lease["leaseId"], "--dir", directory)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output.strip() == f"Revoked lease {lease['leaseId']} (also removed: login profile)."
    assert run("drift", directory).exit_code == 0
    granted = {a for s in MANAGER_POLICY["Statement"] for a in s["Action"]}
    made = {f"iam:{o}" for s, o, _ in calls.calls if s == "iam"}
    assert made <= granted, made - granted
    assert {"iam:CreateUser", "iam:CreateAccessKey", "iam:DeleteLoginProfile", "iam:DeleteUser",
            "iam:GetAccountAuthorizationDetails"} <= made

    # the guide's policy: fifteen actions on "Resource": "*"; every one is in ours,
    # each on users under /dynamic/ (or the template's group) instead
    (seed,) = SEED_004["Statement"]
    assert seed["Resource"] == ["*"] and len(seed["Action"]) == 15
    assert set(seed["Action"]) <= granted
    wildcard = [s["Action"] for s in MANAGER_POLICY["Statement"] if s["Resource"] == ["*"]]
    assert wildcard == [["iam:GetAccountAuthorizationDetails", "iam:ListUsers"]]  # "*" only for listing (no ARN)
    for statement in MANAGER_POLICY["Statement"]:
        if set(statement["Action"]) & set(seed["Action"]) - {"iam:AddUserToGroup", "iam:RemoveUserFromGroup"}:
            assert statement["Resource"] == [USERS]

    # apply's own identity makes none of the manager's calls
    own = run("policy", directory)
    assert own.exit_code == 0, own.output
    assert json.loads(own.stdout)["Statement"] == []

"""Issue 8: the IamRole kind end to end (the real CLI against the sandbox)."""

from __future__ import annotations

import json

import boto3

from tests.conftest import run, state_of

KEY = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: vault-rsa}
spec:
  spec: RSA_4096
  multiRegion: true
  replicaRegions: [us-west-2]
  protect: false
"""

CROSS_ACCOUNT = """\
apiVersion: reconciler/v1
kind: IamRole
metadata: {{name: cerby}}
spec:
  trust:
    awsAccount:
      principal: arn:aws:iam::749452252575:role/production-kms-byo-key-access-role
      externalId: {external}
  grants:
    - {{provider: vault-rsa, actions: [encrypt, decrypt, get-public-key, describe]}}
{extra}"""

OIDC = """\
apiVersion: reconciler/v1
kind: OidcProvider
metadata: {name: pulumi}
spec:
  url: https://api.pulumi.com/oidc
  audiences: ["aws:acme"]
---
apiVersion: reconciler/v1
kind: IamRole
metadata: {name: pulumi-cmk}
spec:
  roleName: PulumiCmk
  trust:
    oidc: {provider: pulumi, audience: "aws:acme", subject: "pulumi:cmk:*"}
"""


def role(external: str = "workspace-1234", extra: str = "") -> str:
    return CROSS_ACCOUNT.format(external=external, extra=extra)


def iam():
    return boto3.client("iam")


def applied(directory, *extra: str) -> None:
    result = run("apply", directory, "--auto-approve", *extra)
    assert result.exit_code == 0, result.output


def clean(directory) -> None:
    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output


def key_arns(directory) -> list[str]:
    arn = state_of(directory)["resources"]["KmsProvider/vault-rsa"]["ids"]["arn"]
    return [arn, arn.replace(":us-east-2:", ":us-west-2:")]


def trust_of(name: str) -> dict:
    return iam().get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]


def test_cross_account_role_with_grants_on_key_and_replica(aws, stack, calls):
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    plan = run("plan", directory)
    assert "(known after apply)" in plan.output
    applied(directory)
    assert trust_of("cerby") == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sts:AssumeRole"],
        "Principal": {"AWS": ["arn:aws:iam::749452252575:role/production-kms-byo-key-access-role"]},
        "Condition": {"StringEquals": {"sts:ExternalId": ["workspace-1234"]}}}]}
    policy = iam().get_role_policy(RoleName="cerby", PolicyName="reconciler-grants")["PolicyDocument"]
    assert policy == {"Version": "2012-10-17", "Statement": [{
        "Sid": "UseVaultRsa", "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey"],
        "Resource": sorted(key_arns(directory))}]}
    tags = {t["Key"]: t["Value"] for t in iam().get_role(RoleName="cerby")["Role"]["Tags"]}
    assert tags["reconciler:address"] == "IamRole/cerby" and tags["reconciler:operation"]
    assert state_of(directory)["journal"] == []
    calls.clear()
    clean(directory)
    assert calls.count("GetRole") >= 1 and calls.writes == []  # refreshed, and nothing written


def test_equal_documents_rewritten_by_hand_are_no_change(aws, stack):
    directory = stack({"role.yaml": """\
        apiVersion: reconciler/v1
        kind: IamRole
        metadata: {name: infisical}
        spec:
          trust:
            awsAccount: {accountId: "381492033652", externalId: project-1}
        """})
    applied(directory)
    same = {"Statement": {"Sid": "", "Condition": {"StringEquals": {"sts:ExternalId": "project-1"}},
                          "Action": "sts:AssumeRole", "Principal": {"AWS": "381492033652"}, "Effect": "Allow"},
            "Version": "2012-10-17"}
    iam().update_assume_role_policy(RoleName="infisical", PolicyDocument=json.dumps(same))
    clean(directory)
    assert run("drift", directory).exit_code == 0


def test_trust_widened_by_hand_is_critical_drift_and_apply_restores_it(aws, stack):
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    before = trust_of("cerby")
    widened = json.loads(json.dumps(before))
    del widened["Statement"][0]["Condition"]  # no external id any more: the confused deputy
    iam().update_assume_role_policy(RoleName="cerby", PolicyDocument=json.dumps(widened))
    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2
    items = json.loads(drift.output)
    item = next(i for i in (items if isinstance(items, list) else items["drift"]) if i["address"] == "IamRole/cerby")
    assert item["severity"] == "critical"
    assert any(c["path"].startswith("trust.Statement[0].Condition") for c in item["changes"])
    applied(directory)
    assert trust_of("cerby") == before
    assert run("drift", directory).exit_code == 0


def test_narrowed_inline_policy_is_warning_and_hand_attached_policy_is_critical(aws, stack):
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    client = iam()
    policy = client.get_role_policy(RoleName="cerby", PolicyName="reconciler-grants")["PolicyDocument"]
    policy["Statement"][0]["Action"] = ["kms:Decrypt"]
    client.put_role_policy(RoleName="cerby", PolicyName="reconciler-grants", PolicyDocument=json.dumps(policy))
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "IamRole/cerby [WARNING]" in drift.output and "0 critical" in drift.output, drift.output
    admin = client.create_policy(PolicyName="admin", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    client.attach_role_policy(RoleName="cerby", PolicyArn=admin)
    client.put_role_policy(RoleName="cerby", PolicyName="extra", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "IamRole/cerby [CRITICAL]" in drift.output
    assert "managedPolicyArns" in drift.output and "inlinePolicies.extra" in drift.output
    applied(directory)
    assert client.list_attached_role_policies(RoleName="cerby")["AttachedPolicies"] == []
    assert client.list_role_policies(RoleName="cerby")["PolicyNames"] == ["reconciler-grants"]
    clean(directory)


def test_updates_in_place(aws, stack):
    client = iam()
    managed = client.create_policy(PolicyName="read-only", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:List*", "Resource": "*"}]}))
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    arn = client.get_role(RoleName="cerby")["Role"]["Arn"]
    (directory / "role.yaml").write_text(role("workspace-9", f"""\
  description: Cerby vault access
  maxSessionDuration: 7200
  tags: {{vendor: cerby}}
  managedPolicyArns: [{managed['Policy']['Arn']}]
"""))
    plan = run("plan", directory)
    assert "~ IamRole/cerby" in plan.output and "workspace-9" in plan.output
    applied(directory)
    live = client.get_role(RoleName="cerby")["Role"]
    assert live["Arn"] == arn
    assert live["Description"] == "Cerby vault access" and live["MaxSessionDuration"] == 7200
    assert {t["Key"]: t["Value"] for t in live["Tags"]}["vendor"] == "cerby"
    assert trust_of("cerby")["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] == ["workspace-9"]
    attached = client.list_attached_role_policies(RoleName="cerby")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [managed["Policy"]["Arn"]]
    clean(directory)


def test_oidc_role_trusts_the_provider_with_like_on_a_wildcard_subject(aws, stack):
    directory = stack({"oidc.yaml": OIDC})
    applied(directory)
    provider = state_of(directory)["resources"]["OidcProvider/pulumi"]["ids"]["arn"]
    assert trust_of("PulumiCmk") == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sts:AssumeRoleWithWebIdentity"], "Principal": {"Federated": [provider]},
        "Condition": {"StringEquals": {"api.pulumi.com/oidc:aud": ["aws:acme"]},
                      "StringLike": {"api.pulumi.com/oidc:sub": ["pulumi:cmk:*"]}}}]}
    clean(directory)


def test_role_deleted_out_of_band_is_critical_and_created_again(aws, stack):
    directory = stack({"oidc.yaml": OIDC})
    applied(directory)
    iam().delete_role(RoleName="PulumiCmk")
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "IamRole/pulumi-cmk [CRITICAL]" in drift.output
    plan = run("plan", directory)
    assert "+ IamRole/pulumi-cmk" in plan.output
    applied(directory)
    assert trust_of("PulumiCmk")["Statement"][0]["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    clean(directory)


def test_delete_needs_allow_destroy_and_removes_attached_policies(aws, stack):
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    (directory / "role.yaml").unlink()
    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1 and "--allow-destroy" in refused.output
    assert iam().get_role(RoleName="cerby")
    applied(directory, "--allow-destroy")
    assert [r["RoleName"] for r in iam().list_roles()["Roles"]] == []


def test_import_by_role_name_then_plan_is_clean(aws, stack):
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "381492033652"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "project-1"}}}]}
    iam().create_role(RoleName="infisical", AssumeRolePolicyDocument=json.dumps(trust), Description="by hand")
    directory = stack({"role.yaml": """\
        apiVersion: reconciler/v1
        kind: IamRole
        metadata: {name: infisical}
        spec:
          description: by hand
          trust:
            awsAccount: {accountId: "381492033652", externalId: project-1}
        """})
    refused = run("plan", directory)
    assert refused.exit_code == 1 and "reconciler import IamRole/infisical infisical" in refused.output
    wrong = run("import", "IamRole/infisical", "someone-else", "--dir", directory)
    assert wrong.exit_code == 1 and "set roleName: someone-else" in wrong.output
    imported = run("import", "IamRole/infisical", "infisical", "--dir", directory)
    assert imported.exit_code == 0, imported.output
    assert state_of(directory)["resources"]["IamRole/infisical"]["ids"]["roleName"] == "infisical"
    clean(directory)


def test_a_new_path_replaces_the_role_destroying_first(aws, stack):
    directory = stack({"oidc.yaml": OIDC})
    applied(directory)
    old = iam().get_role(RoleName="PulumiCmk")["Role"]["RoleId"]
    (directory / "oidc.yaml").write_text(OIDC + "  path: /vendors/\n")
    plan = run("plan", directory)
    assert "-/+ IamRole/pulumi-cmk" in plan.output, plan.output
    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1 and "--allow-destroy" in refused.output
    applied(directory, "--allow-destroy")
    live = iam().get_role(RoleName="PulumiCmk")["Role"]
    assert live["Path"] == "/vendors/" and live["RoleId"] != old
    clean(directory)


def test_permissions_name_the_role_arn():
    from reconciler.kinds import iam_role
    from reconciler.plan import model
    from reconciler.state import model as state_model

    want = model.Desired("IamRole", "cerby", "managed", {"roleName": "Cerby", "path": "/vendors/"}, {})
    [found] = iam_role.RULES.permissions(want, {want.address: want}, state_model.State.empty())
    assert found.resources == ("arn:aws:iam::*:role/vendors/Cerby",)
    assert {"iam:CreateRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRole"} <= set(found.actions)
    assert not any("*" in action for action in found.actions)


def test_a_role_in_an_instance_profile_is_not_deleted_and_nothing_changes(aws, stack):
    directory = stack({"key.yaml": KEY, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    client = iam()
    client.create_instance_profile(InstanceProfileName="ec2-by-hand")
    client.add_role_to_instance_profile(InstanceProfileName="ec2-by-hand", RoleName="cerby")
    (directory / "role.yaml").unlink()
    result = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert result.exit_code == 1
    assert "instance profile(s) ec2-by-hand" in result.output and "nothing was deleted" in result.output
    assert client.list_role_policies(RoleName="cerby")["PolicyNames"] == ["reconciler-grants"]
    assert "IamRole/cerby" in state_of(directory)["resources"]


def test_a_saved_plan_carries_the_references_and_applies(aws, stack, tmp_path):
    directory = stack({"oidc.yaml": OIDC})
    saved = tmp_path / "change.plan"
    planned = run("plan", directory, "--out", saved)
    assert planned.exit_code == 0, planned.output
    trust = json.loads(saved.read_text())["desired"]["IamRole/pulumi-cmk"]["attributes"]["trust"]
    assert trust["Statement"][0]["Principal"] == {"Federated": [{"$ref": "OidcProvider/pulumi#arn"}]}
    applied(saved)
    provider = state_of(directory)["resources"]["OidcProvider/pulumi"]["ids"]["arn"]
    assert trust_of("PulumiCmk")["Statement"][0]["Principal"] == {"Federated": [provider]}
    clean(directory)


def test_a_replica_added_to_a_granted_key_reaches_the_role_in_one_apply(aws, stack):
    """Adding a replica changes the key's ARNs: the role's policy is known only
    after apply, and the same apply grants the new replica (no second apply)."""
    single = KEY.replace("  replicaRegions: [us-west-2]\n", "")
    directory = stack({"key.yaml": single, "role.yaml": role()}, region="us-east-2")
    applied(directory)
    (directory / "key.yaml").write_text(KEY)
    plan = run("plan", directory)
    assert "~ IamRole/cerby" in plan.output and "(known after apply)" in plan.output, plan.output
    applied(directory)
    arns = key_arns(directory)
    assert len(arns) == 2 and any(":us-west-2:" in a for a in arns)
    policy = iam().get_role_policy(RoleName="cerby", PolicyName="reconciler-grants")["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == sorted(arns)
    clean(directory)


def test_a_role_granted_an_adopted_key_plans_and_applies_in_one_go(aws, stack):
    """The adopted key exists already: its ARN is known at plan time, in the
    same plan that adopts it (no apply of the key alone first)."""
    kid = boto3.client("kms", region_name="us-east-2").create_key()["KeyMetadata"]["KeyId"]
    adopted = f"""\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {{name: vault-rsa}}
spec:
  keyId: {kid}
"""
    directory = stack({"key.yaml": adopted, "role.yaml": role()}, region="us-east-2")
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert f"arn:aws:kms:us-east-2:123456789012:key/{kid}" in plan.output
    applied(directory)
    policy = iam().get_role_policy(RoleName="cerby", PolicyName="reconciler-grants")["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:kms:us-east-2:123456789012:key/{kid}"]
    clean(directory)

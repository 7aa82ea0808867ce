"""Issue 8, the three vendor examples: each is its seed guide as YAML
(../shared/seeds/000 Infisical, 001 Pulumi Cloud, 002 Cerby). Each is applied
on the sandbox and then plans clean; the documents AWS holds afterwards (the
role's trust policy, its inline policy, the key policy of the primary and of
every replica, read back with boto3) equal the JSON below, written out by hand
and checked against the guide, with the sandbox account 123456789012 and the
key ARNs from state substituted. `reconciler policy --for ROLE` after apply is
the role's inline policy. The guide's own documents are compared by meaning:
where ours differs, the test says how (narrower, never wider)."""

from __future__ import annotations

import json

import boto3
import pytest

from reconciler.plan import policydoc
from tests.conftest import run, state_of
from tests.unit.test_i8_policy_command import lint

ACCOUNT = "123456789012"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"


def applied_and_clean(example, name: str):
    directory = example(name)
    assert run("validate", directory, "--strict").exit_code == 0
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    assert run("drift", directory).exit_code == 0
    return directory


def key_ids(directory, name: str) -> dict:
    return state_of(directory)["resources"][f"KmsProvider/{name}"]["ids"]


def trust_of(role: str) -> dict:
    return boto3.client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]


def inline_of(role: str) -> dict:
    iam = boto3.client("iam")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["reconciler-grants"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    return iam.get_role_policy(RoleName=role, PolicyName="reconciler-grants")["PolicyDocument"]


def key_policy_of(key_id: str, region: str) -> dict:
    kms = boto3.client("kms", region_name=region)
    return json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])


def key_policy(sid: str, role: str, actions: list[str]) -> dict:
    """The key policy a granted key ends with: the account-root statement (kept,
    so the key stays manageable) and one statement for exactly the role."""
    return {"Version": "2012-10-17", "Id": "key-default-1", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": actions, "Resource": "*",
         "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}}}]}


def role_policy_after_apply(directory, role: str) -> dict:
    result = run("policy", directory, "--for", role)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def without_sids(document: dict) -> dict:
    return {**document, "Statement": [{k: v for k, v in s.items() if k != "Sid"} for s in document["Statement"]]}


# -- 002 Cerby -------------------------------------------------------------------------
CERBY_PRINCIPAL = "arn:aws:iam::749452252575:role/production-kms-byo-key-access-role"
CERBY_WORKSPACE = "cerby-workspace-0000"
CERBY_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey"]


def test_cerby_vault_is_seed_002(aws, example):
    directory = applied_and_clean(example, "cerby-vault")
    ids = key_ids(directory, "cerby-rsa")
    key = ids["keyId"]
    primary = f"arn:aws:kms:us-east-2:{ACCOUNT}:key/{key}"
    replica = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/{key}"
    assert key.startswith("mrk-") and ids["arns"] == [primary, replica]
    # 1. asymmetric, encrypt and decrypt, RSA_4096, multi-Region: main us-east-2, replica us-west-2
    for region, role in (("us-east-2", "PRIMARY"), ("us-west-2", "REPLICA")):
        meta = boto3.client("kms", region_name=region).describe_key(KeyId=key)["KeyMetadata"]
        assert (meta["Arn"], meta["KeySpec"], meta["KeyUsage"], meta["Origin"]) == (
            primary if role == "PRIMARY" else replica, "RSA_4096", "ENCRYPT_DECRYPT", "AWS_KMS")
        assert meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == role
        aliases = boto3.client("kms", region_name=region).list_aliases(KeyId=key)["Aliases"]
        assert [a["AliasName"] for a in aliases] == ["alias/cerby/vault-rsa"]
    # 2.3 the trust relationship: Cerby's production role, the workspace id as external id
    assert trust_of("cerby-kms-access") == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [CERBY_PRINCIPAL]}, "Action": ["sts:AssumeRole"],
        "Condition": {"StringEquals": {"sts:ExternalId": [CERBY_WORKSPACE]}}}]}
    # 2.2 the inline policy: the four actions on the main and the replica ARN
    inline = inline_of("cerby-kms-access")
    assert inline == {"Version": "2012-10-17", "Statement": [{
        "Sid": "UseCerbyRsa", "Effect": "Allow", "Action": CERBY_ACTIONS, "Resource": [primary, replica]}]}
    # both keys' policies let exactly that role do the same (the guide leaves key
    # users "if needed"; a key policy naming the role is what makes it work)
    expected_key_policy = key_policy("ReconcilerKeyUserCerbyKmsAccess", "cerby-kms-access", CERBY_ACTIONS)
    assert key_policy_of(key, "us-east-2") == expected_key_policy
    assert key_policy_of(key, "us-west-2") == expected_key_policy
    assert role_policy_after_apply(directory, "cerby-kms-access") == without_sids(inline)

    # the guide's own documents (its comments removed), and ours: the same by meaning
    seed_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": CERBY_PRINCIPAL}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": CERBY_WORKSPACE}}}]}
    seed_inline = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GetPublicKey", "kms:DescribeKey"],
        "Resource": [primary, replica]}]}
    assert policydoc.equal(trust_of("cerby-kms-access"), seed_trust)
    assert policydoc.equal(without_sids(inline), seed_inline)
    # not the pre-filled trust on the whole Cerby account the guide says to replace
    assert not policydoc.equal(trust_of("cerby-kms-access"), {**seed_trust, "Statement": [
        {**seed_trust["Statement"][0], "Principal": {"AWS": "arn:aws:iam::749452252575:root"}}]})

    # 3. the default vault: secrets read back with the primary and with the replica
    east = run("secret", "get", "cerby/api-signing-seed", "--dir", directory)
    west = run("secret", "get", "cerby/api-signing-seed", "--dir", directory, "--region", "us-west-2")
    assert east.exit_code == 0 and len(east.stdout) == 64 and east.stdout == west.stdout


# -- 001 Pulumi Cloud --------------------------------------------------------------------
PULUMI_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/api.pulumi.com/oidc"
PULUMI_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]


def test_pulumi_cmk_is_seed_001(aws, example):
    directory = applied_and_clean(example, "pulumi-cmk")
    iam = boto3.client("iam")
    # the identity provider: https://api.pulumi.com/oidc, audience aws:<org>
    assert [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]] == [PULUMI_PROVIDER]
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=PULUMI_PROVIDER)
    assert (provider["Url"], provider["ClientIDList"]) == ("api.pulumi.com/oidc", ["aws:acme"])
    # the web-identity role: aud and sub both StringEquals, as the guide's trust policy
    trust = trust_of("pulumi-cmk")
    assert trust == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": [PULUMI_PROVIDER]},
        "Action": ["sts:AssumeRoleWithWebIdentity"],
        "Condition": {"StringEquals": {"api.pulumi.com/oidc:aud": ["aws:acme"],
                                       "api.pulumi.com/oidc:sub": ["pulumi:cmk:pulumi.organization.login:acme"]}}}]}
    seed_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": PULUMI_PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"api.pulumi.com/oidc:aud": "aws:acme",
                                       "api.pulumi.com/oidc:sub": "pulumi:cmk:pulumi.organization.login:acme"}}}]}
    assert policydoc.equal(trust, seed_trust)
    # the symmetric key, rotation on, whose user is that role: Encrypt, Decrypt, GenerateDataKey
    key = key_ids(directory, "pulumi-secrets")["keyId"]
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}"
    kms = boto3.client("kms", region_name="us-east-1")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert (meta["Arn"], meta["KeySpec"], meta["KeyUsage"], meta["MultiRegion"]) == (
        arn, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", False)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
    policy = key_policy_of(key, "us-east-1")
    assert policy == key_policy("ReconcilerKeyUserPulumiCmk", "pulumi-cmk", PULUMI_ACTIONS)
    # the guide's key-user statement names the role as Principal; ours names the
    # account root with aws:PrincipalArn = the role, so IAM must allow it too
    # (the inline policy below does): the same actions, never more
    seed_key_user = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/pulumi-cmk"},
                                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"}]}
    ours = {"Statement": [s for s in policy["Statement"] if s["Sid"] == "ReconcilerKeyUserPulumiCmk"]}
    assert policydoc.within(ours, seed_key_user) and not policydoc.within(seed_key_user, ours)
    # the guide adds no IAM policy (the key policy names the role); ours is on the key ARN only
    inline = inline_of("pulumi-cmk")
    assert inline == {"Version": "2012-10-17", "Statement": [{
        "Sid": "UsePulumiSecrets", "Effect": "Allow", "Action": PULUMI_ACTIONS, "Resource": [arn]}]}
    assert role_policy_after_apply(directory, "pulumi-cmk") == without_sids(inline)


# -- 000 Infisical -----------------------------------------------------------------------
INFISICAL_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"]


def test_infisical_external_kms_is_seed_000(aws, example, monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "from-the-deploy-env")
    directory = applied_and_clean(example, "infisical-external-kms")
    # Another AWS account: 381492033652, with the project id as external id
    trust = trust_of("infisical-kms")
    assert trust == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::381492033652:root"]}, "Action": ["sts:AssumeRole"],
        "Condition": {"StringEquals": {"sts:ExternalId": ["infisical-project-4f1c"]}}}]}
    # what the console makes of the guide's step 1 with "Require external ID" ticked
    seed_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "381492033652"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "infisical-project-4f1c"}}}]}
    assert policydoc.equal(trust, seed_trust)
    key = key_ids(directory, "infisical-root")["keyId"]
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}"
    inline = inline_of("infisical-kms")
    assert inline == {"Version": "2012-10-17", "Statement": [{
        "Sid": "UseInfisicalRoot", "Effect": "Allow", "Action": INFISICAL_ACTIONS, "Resource": [arn]}]}
    # the guide's policy is the same actions on "Resource": "*" (every key of the
    # account): ours is strictly narrower
    seed_inline = {"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowKMSAccess", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
        "Resource": "*"}]}
    assert policydoc.within(inline, seed_inline) and not policydoc.within(seed_inline, inline)
    assert key_policy_of(key, "us-east-1") == key_policy("ReconcilerKeyUserInfisicalKms", "infisical-kms",
                                                         INFISICAL_ACTIONS)
    assert role_policy_after_apply(directory, "infisical-kms") == without_sids(inline)
    got = run("secret", "get", "app/database-password", "--dir", directory)
    assert (got.exit_code, got.stdout) == (0, "from-the-deploy-env")


@pytest.mark.parametrize(("name", "role", "line"), [("cerby-vault", "cerby-kms-access", 51),
                                                    ("infisical-external-kms", "infisical-kms", 41)])
def test_a_cross_account_example_without_its_external_id_is_refused(example, name, role, line):
    """The guides make the external id optional (000) or easy to lose (002):
    the examples cannot drop it and still validate."""
    directory = example(name)
    text = (directory / "stack.yaml").read_text()
    external = {"cerby-vault": "      externalId: cerby-workspace-0000   # your Cerby workspace id\n",
                "infisical-external-kms": "      externalId: infisical-project-4f1c # your Infisical project id\n"}[name]
    assert external in text
    (directory / "stack.yaml").write_text(text.replace(external, ""))
    result = run("validate", directory)
    assert result.exit_code == 1
    assert result.output == (f"Error: {directory / 'stack.yaml'}:{line}:7: IamRole/{role}: spec.trust.awsAccount: "
                             "missing required field 'externalId'\n1 error found.\n")


# -- `reconciler policy` for the identity running apply, once the keys exist ----------------
NO_ARN_ACTIONS = {"kms:ListAliases", "kms:ListKeys", "iam:ListOpenIDConnectProviders", "tag:GetResources"}


@pytest.mark.parametrize(("name", "key", "role"), [("cerby-vault", "cerby-rsa", "cerby-kms-access"),
                                                   ("pulumi-cmk", "pulumi-secrets", "pulumi-cmk"),
                                                   ("infisical-external-kms", "infisical-root", "infisical-kms")])
def test_after_apply_the_policy_names_the_account_the_key_arns_and_the_role(aws, example, monkeypatch, name, key,
                                                                           role):
    monkeypatch.setenv("DATABASE_PASSWORD", "from-the-deploy-env")
    directory = applied_and_clean(example, name)
    result = run("policy", directory)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    arns = key_ids(directory, key)["arns"]
    key_resources = set()
    for statement in document["Statement"]:
        if statement["Resource"] == ["*"]:
            assert set(statement["Action"]) <= NO_ARN_ACTIONS, statement
            continue
        for resource in statement["Resource"]:
            assert f":{ACCOUNT}:" in resource and not resource.endswith("/*"), statement
            if ":key/" in resource:
                key_resources.add(resource)
    assert key_resources == set(arns)
    (role_statement,) = [s for s in document["Statement"] if s["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/{role}"]]
    assert {"iam:CreateRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy"} <= set(role_statement["Action"])
    assert lint(document) == []

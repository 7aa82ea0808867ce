"""Issue 12: `reconciler import` of every kind. Each object is made by hand
with boto3 in the sandbox, imported, and then `plan --detailed-exitcode`
shows only real differences: exit 0 when the manifest says what was made,
the expected diff when it says otherwise. Refusals are one line."""

from __future__ import annotations

import json

import boto3

from tests.aws.test_i9_rotation import manager, rotation_doc, user_keys  # noqa: F401  (fixture)
from tests.aws.test_vaults import CANARY, STORES, docs, encrypt, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

SM_STORE = STORES["secretsmanager"]  # rcl/team/<name>


def planned(directory, code: int) -> str:
    result = run("plan", directory, "--detailed-exitcode")
    assert result.exit_code == code, result.output
    return result.output


def imported(directory, address: str, aws_id: str) -> str:
    result = run("import", address, aws_id, "--dir", directory)
    assert result.exit_code == 0, result.output
    return result.output


def refused(directory, address: str, aws_id: str) -> str:
    """The one-line error of a refused import (nothing written)."""
    before = (directory / ".reconciler" / "state.json").read_text() if (directory / ".reconciler" /
                                                                        "state.json").exists() else None
    result = run("import", address, aws_id, "--dir", directory)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    after = (directory / ".reconciler" / "state.json").read_text() if (directory / ".reconciler" /
                                                                       "state.json").exists() else None
    assert after == before
    return result.output


def hand_key(alias: str = "alias/test/key") -> str:
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key(Description="")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


def test_key_vault_and_secret_made_by_hand_import_to_a_clean_plan(aws, stack):
    key_id = hand_key()
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(SM_STORE))})
    assert "Imported arn:aws:kms:" in imported(directory, "KmsProvider/key", "alias/test/key")
    assert state_of(directory)["resources"]["KmsProvider/key"]["ids"]["keyId"] == key_id
    assert "reconciler import Secret/NAME main/NAME" in imported(directory, "Vault/main", "-")
    planned(directory, 0)

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    envelope = encrypt(directory, "main", "pw", CANARY)
    (directory / "pw.yaml").write_text(secret_doc("pw", f"encrypted: {envelope}"))
    assert "no entry pw in Secrets Manager rcl/team/* in us-east-1" in refused(directory, "Secret/pw", "main/pw")
    sm.create_secret(Name="rcl/team/pw", SecretString="plain text")
    assert "is not a reconciler envelope" in refused(directory, "Secret/pw", "main/pw")
    sm.put_secret_value(SecretId="rcl/team/pw", SecretString=encrypt(directory, "main", "other", CANARY))
    assert ("is bound to stack test, vault main, secret other, not to this stack's test/main/pw"
            in refused(directory, "Secret/pw", "main/pw"))
    assert "can only be main/pw" in refused(directory, "Secret/pw", "main/other")

    # the manifest's very envelope, as reconciler writes it (its version token numbers the history)
    sm.put_secret_value(SecretId="rcl/team/pw", SecretBinary=envelope.encode(),
                        ClientRequestToken="rcl-v00000001-20300101T000000Z-0000000000000001-0123abcd")
    assert "its value is the manifest's" in imported(directory, "Secret/pw", "main/pw")
    planned(directory, 0)
    assert run("secret", "get", "main/pw", "--dir", directory).output == CANARY

    # the same envelope put by hand, not as a version of reconciler's: written again as one
    (directory / "db.yaml").write_text(secret_doc("db", f"encrypted: {(env := encrypt(directory, 'main', 'db', 'x'))}"))
    sm.create_secret(Name="rcl/team/db", SecretString=env)
    assert "written outside reconciler" in imported(directory, "Secret/db", "main/db")
    assert "~ Secret/db" in planned(directory, 2)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    planned(directory, 0)
    assert run("secret", "get", "main/db", "--dir", directory).output == "x"

    # the manifest now holds another value: the one real difference
    (directory / "pw.yaml").write_text(secret_doc("pw", f"encrypted: {encrypt(directory, 'main', 'pw', 'new')}"))
    shown = planned(directory, 2)
    assert "~ Secret/pw" in shown and "(sensitive, will change)" in shown and CANARY not in shown
    assert "KmsProvider/key" not in shown and "Vault/main" not in shown and "Secret/db" not in shown


def test_role_and_oidc_provider_by_arn_show_only_real_differences(aws, stack):
    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_open_id_connect_provider(Url="https://token.example.com/oidc",
                                              ClientIDList=["sts.amazonaws.com"])["OpenIDConnectProviderArn"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"token.example.com/oidc:aud": "sts.amazonaws.com",
                                       "token.example.com/oidc:sub": "repo:acme/app"}}}]}
    iam.create_role(RoleName="ci", AssumeRolePolicyDocument=json.dumps(trust), Description="by hand")
    oidc = """\
        apiVersion: reconciler/v1
        kind: OidcProvider
        metadata: {name: ci}
        spec:
          url: https://token.example.com/oidc
          audiences: [sts.amazonaws.com]
        """
    role = """\
        apiVersion: reconciler/v1
        kind: IamRole
        metadata: {name: ci}
        spec:
          description: by hand
          trust:
            oidc: {provider: ci, audience: sts.amazonaws.com, subject: "repo:acme/app"}
        """
    directory = stack({"oidc.yaml": oidc, "role.yaml": role})
    iam.create_open_id_connect_provider(Url="https://other.example.com", ClientIDList=["x"])
    assert "declares the provider for https://token.example.com/oidc, not https://other.example.com" in refused(
        directory, "OidcProvider/ci", "https://other.example.com")
    assert f"Imported {arn} as OidcProvider/ci" in imported(directory, "OidcProvider/ci", arn)
    assert f"is already in state ({arn})" in refused(directory, "OidcProvider/ci", arn)
    imported(directory, "IamRole/ci", "ci")
    planned(directory, 0)

    (directory / "oidc.yaml").write_text(oidc.replace("[sts.amazonaws.com]", "[sts.amazonaws.com, extra]")
                                         .replace("        ", ""))
    (directory / "role.yaml").write_text(role.replace("description: by hand", "description: managed")
                                         .replace("        ", ""))
    shown = planned(directory, 2)
    assert "~ OidcProvider/ci" in shown and "~ IamRole/ci" in shown, shown
    assert "Plan: 0 to create, 2 to update" in shown, shown


def test_rotation_import_adopts_the_users_active_key_and_retires_it(manager, stack, monkeypatch):
    iam = boto3.client("iam", region_name="us-east-1")
    first = iam.create_access_key(UserName="app-user")["AccessKey"]["AccessKeyId"]
    second = iam.create_access_key(UserName="app-user")["AccessKey"]["AccessKeyId"]
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc())})
    assert run("apply", directory, "--auto-approve", "--target", "Vault/main").exit_code == 0
    assert "declares the user app-user, not someone" in refused(directory, "AccessKeyRotation/app", "someone")
    assert f"two active access keys ({first} (Active), {second} (Active))" in refused(
        directory, "AccessKeyRotation/app", "app-user")
    iam.delete_access_key(UserName="app-user", AccessKeyId=second)

    said = imported(directory, "AccessKeyRotation/app", "app-user")
    assert f"key {first} of user app-user adopted as the current key" in said
    shown = planned(directory, 2)
    assert "! AccessKeyRotation/app" in shown and "adopted by `reconciler import`" in shown, shown
    assert "+ AccessKeyRotation/app" not in shown

    assert run("apply", directory, "--auto-approve").exit_code == 0
    recorded = state_of(directory)["resources"]["AccessKeyRotation/app"]["ids"]
    assert recorded["previous"]["id"] == first and recorded["current"]["id"] != first
    assert user_keys() == {first: "Active", recorded["current"]["id"]: "Active"}  # kept for the grace period
    assert run("secret", "get", "main/key-id", "--dir", directory).output == recorded["current"]["id"]
    planned(directory, 0)
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-01T01:00:01Z")  # the 1h grace period is over
    assert f"deactivate the previous key {first}" in planned(directory, 2)


def test_every_other_refusal_is_one_line(aws, stack, manager):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc().replace("app-user", "nobody"))
                       + "---\n" + DYNAMIC})
    assert "KmsProvider/nope: declare it in the manifests before importing it; declared: KmsProvider/key" in \
        refused(directory, "KmsProvider/nope", "x")
    assert "Bogus cannot be imported (no such kind)" in refused(directory, "Bogus/x", "x")
    assert "DynamicIamTemplate cannot be imported (a template owns no AWS object" in refused(
        directory, "DynamicIamTemplate/dyn", "x")
    assert "was not found" in refused(directory, "KmsProvider/key", "alias/test/none")
    assert "Vault/main: its key, KmsProvider/key, is not in state" in refused(directory, "Vault/main", "-")
    assert "pass - (or main) as AWS_ID" in refused(directory, "Vault/main", "arn:aws:s3:::x")
    assert "IAM user nobody does not exist" in refused(directory, "AccessKeyRotation/app", "nobody")
    boto3.client("iam", region_name="us-east-1").create_user(UserName="nobody")
    assert "holds no active access key (none), so there is nothing to take over" in refused(
        directory, "AccessKeyRotation/app", "nobody")


DYNAMIC = """\
apiVersion: reconciler/v1
kind: DynamicIamTemplate
metadata: {name: dyn}
spec:
  defaultTtl: 1h
  maxTtl: 2h
  auth: {accessKey: {accessKeyId: {env: MGR_ID}, secretAccessKey: {env: MGR_SECRET}}}
  path: /dynamic/
  inlinePolicy:
    Version: "2012-10-17"
    Statement: [{Effect: Allow, Action: [s3:GetObject], Resource: "arn:aws:s3:::b/k"}]
"""

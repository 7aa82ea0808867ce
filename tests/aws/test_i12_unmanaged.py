"""Issue 12: `drift --unmanaged` lists what looks like this stack's but is not
in state: objects carrying its reconciler:stack tag (warning), keys and roles
under its alias and path prefixes (info); exit 2 when it finds any. The real
CLI against the sandbox, the objects made by hand with boto3."""

from __future__ import annotations

import json

import boto3
import jsonschema

from reconciler.manifest import schema as schemas
from tests.aws.test_vaults import STORES, docs, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

ROLE = """\
apiVersion: reconciler/v1
kind: IamRole
metadata: {name: svc}
spec:
  path: /svc/
  trust:
    awsAccount: {accountId: "381492033652", externalId: project-1}
"""


def tags(**extra: str) -> dict[str, str]:
    return {"reconciler:stack": "test", **extra}


def test_unmanaged_lists_tagged_and_prefixed_objects_not_in_state(aws, stack):
    directory = stack({"main.yaml": docs(
        key_doc(), vault_doc(STORES["secretsmanager"]),
        vault_doc(STORES["ssm"], name="params").replace("default: true", "default: false"),
        secret_doc("pw", "generate: {}"), secret_doc("param", "generate: {}", vault="params"), ROLE)})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    clean = run("drift", directory, "--unmanaged")
    assert clean.exit_code == 0, clean.output
    assert "Unmanaged: none." in clean.output

    kms = boto3.client("kms", region_name="us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    tag_list = [{"TagKey": k, "TagValue": v} for k, v in tags(**{"reconciler:address": "KmsProvider/old"}).items()]
    tagged_key = kms.create_key(Tags=tag_list)["KeyMetadata"]["Arn"]
    going = kms.create_key(Tags=tag_list)["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=going, PendingWindowInDays=7)  # on its way out: not reported
    kms.create_key(Tags=[{"TagKey": "reconciler:stack", "TagValue": "another"}])  # another stack's
    stray = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/test/stray", TargetKeyId=stray["KeyId"])
    kms.create_alias(AliasName="alias/elsewhere/x", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    iam_tags = [{"Key": k, "Value": v} for k, v in tags().items()]
    tagged_role = iam.create_role(RoleName="left", AssumeRolePolicyDocument=trust, Tags=iam_tags)["Role"]["Arn"]
    under_path = iam.create_role(RoleName="near", Path="/svc/", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.create_role(RoleName="other", Path="/other/", AssumeRolePolicyDocument=trust)
    provider = iam.create_open_id_connect_provider(Url="https://left.example.com", ClientIDList=["x"],
                                                   Tags=iam_tags)["OpenIDConnectProviderArn"]
    user = iam.create_user(UserName="dyn-lost", Tags=[*iam_tags, {"Key": "reconciler:template",
                                                                  "Value": "DynamicIamTemplate/gone"}])["User"]["Arn"]
    sm_tags = [{"Key": k, "Value": v} for k, v in tags(**{"reconciler:address": "Secret/gone"}).items()]
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="rcl/team/gone", SecretBinary=b"x", Tags=sm_tags)["ARN"]
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/rcl/team/gone", Value="x", Type="SecureString", Tags=sm_tags)

    plain = run("drift", directory)
    assert plain.exit_code == 0, plain.output  # without --unmanaged: only drift of what state records
    result = run("drift", directory, "--unmanaged", "--format", "json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    jsonschema.Draft202012Validator(json.loads(schemas.schema_text("drift.schema.json"))).validate(report)
    assert report["drifted"] is True
    found = {(i["type"], i["id"]): i for i in report["unmanaged"]["items"]}
    ssm_arn = "arn:aws:ssm:us-east-1:123456789012:parameter/rcl/team/gone"
    assert set(found) == {("kms:key", tagged_key), ("kms:key", stray["Arn"]), ("iam:role", tagged_role),
                          ("iam:role", under_path), ("iam:oidc-provider", provider), ("iam:user", user),
                          ("secretsmanager:secret", secret), ("ssm:parameter", ssm_arn)}
    assert {k for k, i in found.items() if i["severity"] == "info"} == {("kms:key", stray["Arn"]),
                                                                       ("iam:role", under_path)}
    assert report["unmanaged"]["totals"] == {"critical": 0, "high": 0, "warning": 6, "info": 2}
    assert found[("kms:key", tagged_key)]["address"] == "KmsProvider/old"
    assert found[("kms:key", tagged_key)]["region"] == "us-east-1"
    assert "alias alias/test/stray is under alias/test/" in found[("kms:key", stray["Arn"])]["reason"]
    assert "under the path /svc/" in found[("iam:role", under_path)]["reason"]
    assert found[("ssm:parameter", ssm_arn)]["kind"] == "Secret"
    recorded = {e["ids"].get("arn") for e in state_of(directory)["resources"].values()}
    assert not recorded & {i["id"] for i in found.values()}

    text = run("drift", directory, "--unmanaged")
    assert text.exit_code == 2
    assert f"# KmsProvider kms:key {tagged_key} (us-east-1) [WARNING]" in text.output
    assert "Unmanaged: 8 object(s) not in state (6 warning, 2 info)." in text.output
    assert text.output.startswith("No drift. Live AWS matches the recorded state.")
    markdown = run("drift", directory, "--unmanaged", "--format", "markdown")
    assert markdown.exit_code == 2
    assert "#### Unmanaged: objects that look like this stack's, not in state" in markdown.output
    assert markdown.output.rstrip().endswith("**Unmanaged: 8 object(s) not in state (6 warning, 2 info).**")
    assert markdown.output.count("| **warning** |") == 6 and markdown.output.count("| **info** |") == 2


def test_objects_only_under_the_stacks_prefixes_are_shown_but_never_page(aws, stack):
    directory = stack({"main.yaml": key_doc()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    kms.create_alias(AliasName="alias/test/stray", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    result = run("drift", directory, "--unmanaged", "--format", "json")
    assert result.exit_code == 0, result.output  # info only: another team's key may sit under the prefix
    report = json.loads(result.output)
    assert report["drifted"] is False and report["unmanaged"]["totals"]["info"] == 1


def test_unmanaged_is_refused_on_a_tree_of_stacks(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "stack.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Stack\nmetadata: {{name: {name}}}\nspec: {{region: us-east-1}}\n")
    result = run("drift", tmp_path, "--unmanaged")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path}: drift --unmanaged runs on one stack at a time (a stack root)\n"

"""Issue 8: `reconciler policy` prints the least-privilege IAM policy the
identity running apply needs, from the kinds' permissions() hooks. No AWS:
a stack not yet applied has no state, so keys are named by the ownership tag
they are created with. `RECONCILER_GOLDEN_UPDATE=1` rewrites the expected
files (review the diff)."""

from __future__ import annotations

import json
import os
import pathlib
import re

import pytest
from parliament import analyze_policy_string, iam_definition

from reconciler import policy as reconciler_policy
from reconciler.plan import policydoc
from tests.conftest import run

EXPECTED = pathlib.Path(__file__).resolve().parent / "i8_policy_expected"
UPDATE = os.environ.get("RECONCILER_GOLDEN_UPDATE") == "1"
EXAMPLES = ("quickstart", "cerby-vault", "infisical-external-kms", "pulumi-cmk")
# AWS offers no resource ARN for these
NO_ARN_ACTIONS = {"kms:CreateKey", "kms:ListAliases", "kms:ListKeys", "iam:ListOpenIDConnectProviders",
                  "secretsmanager:ListSecrets", "ssm:DescribeParameters", "iam:ListRoles",
                  "iam:GetAccountAuthorizationDetails",
                  "tag:GetResources"}
ALIAS_ACTIONS = {"kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"}


def policy_of(directory, *extra: str) -> dict:
    result = run("policy", directory, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _resource_condition_keys(action: str) -> set[str]:
    """Condition keys of the resource types ``action`` acts on, from parliament's
    own IAM database (kms:ResourceAliases, kms:KeySpec... on a key)."""
    service, name = action.split(":", 1)
    (definition,) = [d for d in iam_definition if d["prefix"] == service]
    types = {t["resource_type"].rstrip("*") for p in definition["privileges"] if p["privilege"] == name
             for t in p["resource_types"]}
    return {k for r in definition["resources"] if r["resource"] in types for k in r["condition_keys"]}


def _heuristic(finding) -> bool:
    """parliament's two heuristics that IAM does not share:
    - it wants every statement granting an alias action to name both an alias
      and a key ARN (the action needs both), where IAM checks each resource on
      its own; a key not created yet can only be named by its tag, which an
      alias cannot carry, so the alias ARNs stand in their own statement;
    - it checks a condition key against the action's own keys only, not
      against those of the resource type the action acts on;
    - it wants kms:TagResource on a key ARN, where the Tags of CreateKey and
      ReplicateKey are authorized on the request, before the key has one
      (test_never_star_where_aws_allows_an_arn checks those statements are
      conditioned on the request's tags)."""
    if finding.issue == "RESOURCE_STAR":
        return finding.detail == ["kms:TagResource"]
    if finding.issue == "RESOURCE_MISMATCH":
        return {d["action"] for d in finding.detail} <= ALIAS_ACTIONS
    if finding.issue == "UNKNOWN_CONDITION_FOR_ACTION":
        key, action = re.fullmatch(r"Unknown condition (\S+) for action (\S+)", finding.detail).groups()
        return key in _resource_condition_keys(action)
    return False


def lint(document: dict) -> list[tuple[str, str]]:
    """parliament's findings on ``document``, less its heuristics IAM does not share."""
    found = analyze_policy_string(json.dumps(document)).findings
    return [(f.issue, str(f.detail)) for f in found if not _heuristic(f)]


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_policy_is_the_expected_json_and_parliament_finds_nothing(example, name):
    document = policy_of(example(name))
    path = EXPECTED / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(document, indent=2) + "\n")
    assert document == json.loads(path.read_text())
    assert lint(document) == []


# each vendor example's role, and what `policy --for` says it is granted before the
# first apply: the key ARNs are not known yet, so the key's regions, narrowed to the
# key by the reconciler:address and reconciler:stack tags it is created with, never
# any key there (after apply, tests/aws/test_i8_examples.py checks the exact ARNs)
ROLES = (("cerby-vault", "cerby-kms-access"), ("infisical-external-kms", "infisical-kms"),
         ("pulumi-cmk", "pulumi-cmk"))


@pytest.mark.parametrize(("name", "role"), ROLES)
def test_each_example_role_policy_is_the_expected_json(example, name, role):
    document = policy_of(example(name), "--for", role)
    path = EXPECTED / f"{name}--for-{role}.json"
    if UPDATE:
        path.write_text(json.dumps(document, indent=2) + "\n")
    assert document == json.loads(path.read_text())
    assert lint(document) == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_never_star_where_aws_allows_an_arn(example, name):
    for statement in policy_of(example(name))["Statement"]:
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            if statement["Action"] == ["kms:TagResource"]:  # the Tags of CreateKey / ReplicateKey, on the request
                assert set(statement["Condition"]) == {"StringEquals", "ForAllValues:StringEquals"}
                assert set(statement["Condition"]["ForAllValues:StringEquals"]) == {"aws:TagKeys"}
                assert {"aws:RequestTag/reconciler:address", "aws:RequestTag/reconciler:stack"} <= set(
                    statement["Condition"]["StringEquals"])
                continue
            assert set(statement["Action"]) <= NO_ARN_ACTIONS, statement
        assert not {a for a in statement["Action"] if a.endswith(":*")}


def test_create_key_is_scoped_by_conditions_and_the_notes_say_why(example):
    result = run("policy", example("cerby-vault"))
    (create,) = [s for s in json.loads(result.stdout)["Statement"] if s["Action"] == ["kms:CreateKey"]]
    assert create["Condition"] == {
        "Bool": {"kms:MultiRegion": "true"},
        "StringEquals": {"aws:RequestTag/reconciler:address": "KmsProvider/cerby-rsa",
                         "aws:RequestTag/reconciler:stack": "cerby-vault",
                         "kms:KeySpec": "RSA_4096", "kms:KeyUsage": "ENCRYPT_DECRYPT"}}
    assert "note: kms:CreateKey takes no resource ARN (the key does not exist yet)" in result.stderr


def test_a_protected_key_is_never_granted_scheduling_its_deletion(example):
    actions = {a for s in policy_of(example("cerby-vault"))["Statement"] for a in s["Action"]}
    assert "kms:ScheduleKeyDeletion" not in actions  # protect defaults to true
    assert "kms:ScheduleKeyDeletion" in {a for s in policy_of(example("quickstart"))["Statement"]
                                         for a in s["Action"]}  # protect: false there


def test_output_is_deterministic(example):
    directory = example("quickstart")
    assert run("policy", directory).stdout == run("policy", directory).stdout


STORES = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: k}
spec: {}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: in-s3}
spec: {provider: k, default: true, store: {s3: {bucket: team-bucket, prefix: vault/}}}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: in-sm}
spec: {provider: k, store: {secretsmanager: {prefix: team/}}}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: in-ssm}
spec: {provider: k, store: {ssm: {path: /team/app}}}
"""


def test_stores_are_scoped_to_their_bucket_prefix_secret_prefix_and_parameter_path(stack):
    statements = policy_of(stack({"x.yaml": STORES}))["Statement"]
    by_resource = {tuple(s["Resource"]): s for s in statements}
    assert by_resource[("arn:aws:s3:::team-bucket/vault/*",)]["Action"] == [
        "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
    listing = [s for s in statements if s["Resource"] == ["arn:aws:s3:::team-bucket"]]
    assert {tuple(s["Action"]) for s in listing} == {("s3:GetBucketVersioning",), ("s3:ListBucketVersions",)}
    (versions,) = [s for s in listing if s["Action"] == ["s3:ListBucketVersions"]]
    assert versions["Condition"] == {"StringLike": {"s3:prefix": "vault/*"}}
    assert {"secretsmanager:RestoreSecret", "secretsmanager:TagResource"} <= set(
        by_resource[("arn:aws:secretsmanager:us-east-1:*:secret:team/*",)]["Action"])  # tagged as it is created
    assert by_resource[("arn:aws:ssm:us-east-1:*:parameter/team/app/*",)]["Action"] == [
        "ssm:AddTagsToResource", "ssm:DeleteParameter", "ssm:GetParameterHistory", "ssm:LabelParameterVersion", "ssm:PutParameter",
        "ssm:UnlabelParameterVersion"]


def test_each_vault_may_only_use_the_key_for_its_own_envelopes(stack):
    statements = policy_of(stack({"x.yaml": STORES}))["Statement"]
    bound = sorted(s["Condition"]["StringEquals"]["kms:EncryptionContext:reconciler:vault"]
                   for s in statements if "kms:GenerateDataKey" in s["Action"])
    assert bound == ["in-s3", "in-sm", "in-ssm"]


def test_an_s3_state_backend_adds_its_state_backup_and_lock_objects():
    """(Reading an S3 state needs AWS: the builder is checked on its own here.)"""
    (backend,) = reconciler_policy.backend_permissions({"s3": {"bucket": "states", "key": "team/state.json"}})
    assert backend.resources == ("arn:aws:s3:::states/team/state.json", "arn:aws:s3:::states/team/state.json.backup",
                                 "arn:aws:s3:::states/team/state.json.lock")
    assert reconciler_policy.backend_permissions({"local": {"path": "x"}}) == ()


def test_for_a_resource_that_declares_no_identity_is_one_clear_error(example):
    directory = example("quickstart")
    result = run("policy", directory, "--for", "app-data")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: --for KmsProvider/app-data: a KmsProvider declares no identity that "
                                     "is granted anything (--for takes an IamRole or an AccessKeyRotation)")
    missing = run("policy", directory, "--for", "nobody")
    assert (missing.exit_code, missing.output.strip()) == (1, "Error: --for nobody: no such resource in the manifests")


def test_for_an_ambiguous_name_asks_for_kind_and_name(stack):
    text = ("apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: app}\nspec: {}\n---\n"
            "apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: app}\n"
            "spec: {provider: app, store: {local: {path: v}}}\n")
    result = run("policy", stack({"x.yaml": text}), "--for", "app")
    assert result.exit_code == 1
    assert "several resources have that name (KmsProvider/app, Vault/app); give KIND/NAME" in result.output


# -- the vendor guides' hand-written role policies, and ours --------------------------
SEED_000 = {"Version": "2012-10-17", "Statement": [{"Sid": "AllowKMSAccess", "Effect": "Allow",
                                                    "Action": ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
                                                    "Resource": "*"}]}
PRIMARY = "arn:aws:kms:us-east-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
REPLICA = "arn:aws:kms:us-west-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
SEED_002 = {"Version": "2012-10-17", "Statement": [{
    "Sid": "AllowCerbyToUseKMSKey", "Effect": "Allow",
    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GetPublicKey", "kms:DescribeKey"], "Resource": [PRIMARY, REPLICA]}]}


def grant(actions: list[str], resources: list[str]) -> dict:
    return {"Version": "2012-10-17", "Statement": [policydoc.grant_statement(actions, resources)]}


def test_the_infisical_grant_is_strictly_narrower_than_seed_000():
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    ours = grant(["encrypt", "decrypt", "describe"], [key])
    assert ours["Statement"][0] == {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"],
                                    "Resource": [key]}
    assert policydoc.within(ours, SEED_000)
    assert not policydoc.within(SEED_000, ours)  # the guide's Resource "*" is every key of the account
    assert lint(ours) == []


def test_the_cerby_grant_equals_seed_002():
    ours = grant(["encrypt", "decrypt", "get-public-key", "describe"], [REPLICA, PRIMARY])
    assert policydoc.within(ours, SEED_002) and policydoc.within(SEED_002, ours)
    assert lint(ours) == []


@pytest.mark.parametrize(("narrow", "wide", "expected"), [
    pytest.param(["kms:Decrypt"], ["kms:*"], True, id="action wildcard covers"),
    pytest.param(["kms:decrypt"], ["kms:Decrypt"], True, id="actions case-insensitive"),
    pytest.param(["kms:Encrypt"], ["kms:Decrypt"], False, id="another action"),
])
def test_within_matches_actions_as_iam_does(narrow, wide, expected):
    key = "arn:aws:kms:us-east-1:1:key/k"
    mine = {"Statement": [{"Effect": "Allow", "Action": narrow, "Resource": key}]}
    theirs = {"Statement": [{"Effect": "Allow", "Action": wide, "Resource": "arn:aws:kms:us-east-1:1:key/*"}]}
    assert policydoc.within(mine, theirs) is expected


def test_within_treats_a_wildcard_resource_as_wider_and_conditions_as_narrower():
    any_key = {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:1:key/*"}]}
    one_key = {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:1:key/k"}]}
    assert policydoc.within(one_key, any_key) and not policydoc.within(any_key, one_key)
    conditioned = {"Statement": [{**any_key["Statement"][0],
                                  "Condition": {"StringEquals": {"kms:EncryptionContext:v": "a"}}}]}
    assert policydoc.within(conditioned, any_key) and not policydoc.within(any_key, conditioned)
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "kms:Decrypt", "Resource": "*"}]}
    assert not policydoc.within(not_action, SEED_000)


ADOPTED = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: legacy}
spec: {keyId: alias/legacy}
---
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: by-id}
spec: {keyId: 1234abcd-12ab-34cd-56ef-1234567890ab, manage: true, description: adopted}
"""


def test_adopted_keys_are_named_by_id_or_by_the_alias_they_carry_and_never_created(stack):
    document = policy_of(stack({"x.yaml": ADOPTED}))
    statements = document["Statement"]
    (by_alias,) = [s for s in statements if "Condition" in s]
    assert by_alias["Resource"] == ["arn:aws:kms:us-east-1:*:key/*"]
    assert by_alias["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/legacy"}}
    assert not {"kms:PutKeyPolicy", "kms:TagResource"} & set(by_alias["Action"])  # read-only
    (by_id,) = [s for s in statements if s["Resource"] == ["arn:aws:kms:us-east-1:*:key/1234abcd-12ab-34cd-56ef-1234567890ab"]]
    assert "kms:UpdateKeyDescription" in by_id["Action"] and "kms:ScheduleKeyDeletion" not in by_id["Action"]
    assert "kms:CreateKey" not in {a for s in statements for a in s["Action"]}
    assert lint(document) == []


def test_the_lint_still_reports_what_iam_would_reject():
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Frobnicate"], "Resource": ["arn:aws:kms:us-east-1:111122223333:key/k"]},
        {"Effect": "Allow", "Action": ["kms:ListKeys"], "Resource": ["arn:aws:kms:us-east-1:111122223333:key/k"]},
        {"Effect": "Allow", "Action": ["kms:DescribeKey"], "Resource": ["arn:aws:kms:us-east-1:111122223333:key/k"],
         "Condition": {"StringEquals": {"kms:EncryptionContext:reconciler:vault": "v"}}}]}
    assert [issue for issue, _ in lint(bad)] == ["UNKNOWN_ACTION", "RESOURCE_MISMATCH", "UNKNOWN_CONDITION_FOR_ACTION"]

"""Issue 8 review, the KMS side of ``reconciler policy``: every call
reconciler/aws/kms.py makes is allowed by the policy a KmsProvider (and the
Vault using it) asks for, on the resources AWS authorizes it against:
ListKeys and ListAliases on "*", the Tags of CreateKey / ReplicateKey as
kms:TagResource on "*" conditioned on the request's tags, alias calls on
both the alias and the key, and the successor of a replaced key by its tag."""

from __future__ import annotations

import dataclasses
import fnmatch
import pathlib
import re

from reconciler import engine, kinds
from reconciler import policy as reconciler_policy
from reconciler.manifest import model as manifest
from reconciler.plan import rules as plan_rules
from reconciler.state import model as state_model

ADAPTER = pathlib.Path(kinds.__file__).resolve().parent.parent / "aws" / "kms.py"
ACCOUNT = "111122223333"
ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-0000-0000-0000-000000000001"
ALIAS_ACTIONS = {"kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"}

FULL = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: app}
spec:
  alias: team/app
  description: app data
  tags: {team: platform}
  rotation: {enabled: true, periodDays: 365}
  multiRegion: true
  replicaRegions: [us-west-2]
  grants:
    - {name: reader, granteePrincipal: "arn:aws:iam::111122223333:role/reader", operations: [Decrypt]}
  protect: false
---
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: rsa}
spec:
  spec: RSA_4096
  protect: false
  policy:
    Version: "2012-10-17"
    Statement:
      - {Sid: root, Effect: Allow, Principal: {AWS: "arn:aws:iam::111122223333:root"}, Action: "kms:*", Resource: "*"}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: v}
spec: {provider: app, store: {local: {path: .reconciler/v}}}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: r}
spec: {provider: rsa, store: {local: {path: .reconciler/r}}}
"""
PLAIN = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: app}
spec: {alias: team/app, description: app data, tags: {team: platform}}
"""
ADOPTED = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: legacy}
spec: {keyId: 1234abcd-12ab-34cd-56ef-1234567890ab, manage: true, alias: team/legacy}
"""


def desired_of(stack, text: str):
    config, _ = manifest.load_or_raise(str(stack({"x.yaml": text})))
    return engine.desired_of(config, resolve_values=False)


def document(desired, prior: state_model.State) -> dict:
    return reconciler_policy.document(plan_rules.permissions_of(desired, prior, kinds.RULES), ACCOUNT, "test")


def in_state(desired, address: str, **changed) -> state_model.State:
    want = desired[address]
    entry = state_model.ResourceState(want.kind, want.name, state_model.Mode.MANAGED,
                                      {"keyId": ARN.rsplit("/", 1)[1], "arn": ARN, "arns": [ARN]},
                                      {**want.attributes, **changed}, want.connection, want.dependencies)
    return state_model.State(lineage="l", serial=1, resources={address: entry})


def statements_allowing(document: dict, action: str, resource: str) -> list[dict]:
    """The statements allowing ``action`` on ``resource`` (IAM's wildcard matching)."""
    return [s for s in document["Statement"] if action in s["Action"]
            and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])]


def adapter_calls() -> set[str]:
    """Every KMS operation reconciler/aws/kms.py calls, read from its source."""
    return {f"kms:{op}" for op in re.findall(r'_(?:call|pages)\("(\w+)"', ADAPTER.read_text())}


def test_the_adapter_calls_are_the_ones_this_test_knows():
    assert adapter_calls() == {
        "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:CreateKey", "kms:Decrypt",
        "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKeyRotation", "kms:EnableKey",
        "kms:EnableKeyRotation", "kms:GenerateDataKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
        "kms:GetPublicKey", "kms:ListAliases", "kms:ListGrants", "kms:ListKeys", "kms:ListResourceTags",
        "kms:PutKeyPolicy", "kms:ReplicateKey", "kms:RevokeGrant", "kms:ScheduleKeyDeletion",
        "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription"}


def test_every_call_of_the_adapter_is_allowed_for_a_new_stack(stack):
    doc = document(desired_of(stack, FULL), state_model.State.empty())
    allowed = {a for s in doc["Statement"] for a in s["Action"]}
    assert adapter_calls() - allowed == set()


def test_list_keys_and_list_aliases_are_on_star_without_conditions(stack):
    doc = document(desired_of(stack, PLAIN), state_model.State.empty())
    for action in ("kms:ListKeys", "kms:ListAliases"):
        (found,) = [s for s in doc["Statement"] if action in s["Action"]]
        assert found["Resource"] == ["*"]
        assert "Condition" not in found


def test_tags_at_creation_are_tag_resource_on_star_conditioned_on_the_request_tags(stack):
    doc = document(desired_of(stack, PLAIN), state_model.State.empty())
    (tagging,) = [s for s in doc["Statement"] if s["Action"] == ["kms:TagResource"]]
    assert tagging == {"Effect": "Allow", "Action": ["kms:TagResource"], "Resource": ["*"], "Condition": {
        "StringEquals": {"aws:RequestTag/reconciler:address": "KmsProvider/app",
                         "aws:RequestTag/reconciler:stack": "test"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["reconciler:address", "reconciler:operation",
                                                      "reconciler:stack", "team"]}}}


def test_a_replica_to_create_may_tag_its_request_with_the_replica_tags(stack):
    desired = desired_of(stack, FULL)
    prior = in_state(desired, "KmsProvider/app", replicas={})
    doc = document(desired, prior)
    (tagging,) = [s for s in doc["Statement"] if s["Action"] == ["kms:TagResource"]
                  and s["Condition"]["StringEquals"]["aws:RequestTag/reconciler:address"] == "KmsProvider/app"]
    assert tagging["Resource"] == ["*"]
    assert tagging["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["reconciler:address", "reconciler:stack", "team"]}  # ReplicateKey sets no operation tag
    assert statements_allowing(doc, "kms:ReplicateKey", ARN) != []


def test_alias_calls_are_allowed_on_the_alias_and_on_the_key(stack):
    desired = desired_of(stack, PLAIN)
    doc = document(desired, in_state(desired, "KmsProvider/app"))
    for action in sorted(ALIAS_ACTIONS):
        assert len(statements_allowing(doc, action, f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/team/app")) == 1
        assert len(statements_allowing(doc, action, ARN)) == 1


def test_an_alias_recorded_before_may_still_be_deleted(stack):
    desired = desired_of(stack, PLAIN)
    doc = document(desired, in_state(desired, "KmsProvider/app", alias="alias/team/old"))
    assert len(statements_allowing(doc, "kms:DeleteAlias", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/team/old")) == 1


def test_a_symmetric_key_in_state_may_read_its_rotation_without_declaring_it(stack):
    desired = desired_of(stack, PLAIN)
    doc = document(desired, in_state(desired, "KmsProvider/app"))
    for action in ("kms:DescribeKey", "kms:ListResourceTags", "kms:GetKeyRotationStatus"):
        (found,) = statements_allowing(doc, action, ARN)
        assert found["Resource"] == [ARN]


def test_a_key_in_state_creates_nothing(stack):
    desired = desired_of(stack, PLAIN)
    actions = {a for s in document(desired, in_state(desired, "KmsProvider/app"))["Statement"] for a in s["Action"]}
    assert {"kms:CreateKey", "kms:ListKeys"} & actions == set()


def test_a_replaced_key_may_create_find_and_converge_its_successor(stack):
    desired = desired_of(stack, PLAIN)
    doc = document(desired, in_state(desired, "KmsProvider/app", keySpec="RSA_2048"))
    assert len([s for s in doc["Statement"] if s["Action"] == ["kms:CreateKey"]]) == 1
    assert len(statements_allowing(doc, "kms:ListKeys", "*")) == 1
    successor = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/5678"
    for action in ("kms:DescribeKey", "kms:ListResourceTags", "kms:TagResource", "kms:UpdateAlias"):
        (found,) = [s for s in statements_allowing(doc, action, successor) if s["Resource"] != ["*"]]
        assert found["Condition"] == {"StringEquals": {"aws:ResourceTag/reconciler:address": "KmsProvider/app",
                                                       "aws:ResourceTag/reconciler:stack": "test"}}


def test_a_create_left_open_in_the_journal_may_list_the_keys(stack):
    desired = desired_of(stack, PLAIN)
    prior = in_state(desired, "KmsProvider/app")
    prior = dataclasses.replace(prior, journal=(state_model.JournalEntry(
        "op-1", "KmsProvider/app", state_model.Operation.CREATE, "create-key", {}, "2026-01-01T00:00:00Z"),))
    assert len(statements_allowing(document(desired, prior), "kms:ListKeys", "*")) == 1


def test_an_adopted_key_reads_its_policy_and_grants_and_may_set_its_alias(stack):
    doc = document(desired_of(stack, ADOPTED), state_model.State.empty())
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for action in ("kms:GetKeyPolicy", "kms:ListGrants", "kms:GetKeyRotationStatus", "kms:UpdateAlias"):
        assert len(statements_allowing(doc, action, key)) == 1
    assert len(statements_allowing(doc, "kms:CreateAlias", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/team/legacy")) == 1
    assert {"kms:CreateKey", "kms:ListKeys"} & {a for s in doc["Statement"] for a in s["Action"]} == set()

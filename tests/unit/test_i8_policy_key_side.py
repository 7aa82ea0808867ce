"""Issue 8, the key side: a KmsProvider whose key an IamRole is granted lets
exactly that role (aws:PrincipalArn) do exactly those actions in its key
policy, on the primary and every replica; the account-root statement is
always kept; a manifest's full policy is used as given. Pure: the kind's
desired() reads the IamRole manifests through the Config."""

from __future__ import annotations

import json

from reconciler import kinds
from reconciler.kinds import key_users
from reconciler.manifest import model as manifest
from reconciler.manifest import policylint
from reconciler.plan import model, policydoc
from reconciler.state import model as state_model

KEY = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: cerby-rsa}
spec:
  spec: RSA_4096
  multiRegion: true
  replicaRegions: [us-west-2]
"""
OTHER = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: other}
spec: {}
"""
ROLE = """\
apiVersion: reconciler/v1
kind: IamRole
metadata: {name: cerby-vendor}
spec:
  path: /vendors/
  trust: {awsAccount: {principal: "arn:aws:iam::749452252575:role/production-kms-byo-key-access-role", externalId: ws-123}}
  grants:
    - provider: cerby-rsa
      actions: [encrypt, decrypt, get-public-key, describe]
"""
USERS = {"IamRole/cerby-vendor": {"role": "/vendors/cerby-vendor",
                                  "actions": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey"]}}
ACCOUNT = "111122223333"


def desired_key(stack, *documents: str, name: str = "cerby-rsa") -> model.Desired:
    config, _ = manifest.load_or_raise(str(stack({"x.yaml": "---\n".join(documents)})))
    return kinds.HANDLERS["KmsProvider"].desired(config.resources[f"KmsProvider/{name}"], config)


def test_a_granted_role_is_a_key_user_of_the_primary_and_every_replica(stack):
    want = desired_key(stack, KEY, ROLE)
    assert want.attributes["keyUsers"] == USERS
    assert want.attributes["replicas"]["us-west-2"]["keyUsers"] == USERS


def test_no_role_in_the_stack_leaves_the_key_as_it_was(stack):
    assert "keyUsers" not in desired_key(stack, KEY).attributes


def test_a_key_no_role_is_granted_has_no_users_so_a_moved_grant_leaves_its_old_key(stack):
    assert desired_key(stack, KEY, OTHER, ROLE.replace("provider: cerby-rsa", "provider: other")
                       .replace("get-public-key, ", ""))\
        .attributes["keyUsers"] == {}


def test_a_full_policy_in_the_manifest_is_used_as_given(stack):
    policy = ("  policy:\n    Version: \"2012-10-17\"\n    Statement:\n      - {Sid: Root, Effect: Allow, "
              "Principal: {AWS: \"arn:aws:iam::111122223333:root\"}, Action: \"kms:*\", Resource: \"*\"}\n")
    want = desired_key(stack, KEY + policy, ROLE)
    assert "keyUsers" not in want.attributes
    assert want.attributes["policy"]["Statement"][0]["Sid"] == "Root"


def test_two_grants_of_one_role_on_one_key_merge(stack):
    role = ROLE + "    - provider: cerby-rsa\n      actions: [re-encrypt]\n"
    assert desired_key(stack, KEY, role).attributes["keyUsers"]["IamRole/cerby-vendor"]["actions"] == [
        "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]


def test_composing_keeps_every_other_statement_and_names_exactly_the_role():
    hand = {"Sid": "Auditors", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/audit"},
            "Action": "kms:DescribeKey", "Resource": "*"}
    live = {"Version": "2012-10-17", "Id": "key-default-1",
            "Statement": [key_users.root_statement(ACCOUNT), hand]}
    composed = key_users.compose(live, USERS, ACCOUNT)
    assert composed["Id"] == "key-default-1"
    assert composed["Statement"][:2] == live["Statement"]
    assert composed["Statement"][2] == {
        "Sid": "ReconcilerKeyUserCerbyVendor", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": USERS["IamRole/cerby-vendor"]["actions"], "Resource": "*",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/vendors/cerby-vendor"}}}
    assert key_users.users_of(composed) == USERS  # what refresh reads back is what plan compares
    assert key_users.users_of(json.dumps(composed)) == USERS
    again = key_users.compose(composed, USERS, ACCOUNT)
    assert policydoc.equal(again, composed)  # idempotent: no second statement for the role
    removed = key_users.compose(composed, {}, ACCOUNT)
    assert removed["Statement"] == live["Statement"] and key_users.users_of(removed) == {}


def test_composing_restores_a_missing_account_root_statement():
    only_ours = key_users.compose(None, USERS, ACCOUNT)
    assert [s["Sid"] for s in only_ours["Statement"]] == ["Enable IAM User Permissions", "ReconcilerKeyUserCerbyVendor"]
    assert policylint.is_account_root(only_ours["Statement"][0])
    assert [f for f in policylint.key_policy_findings({"policy": only_ours})] == []  # clean by our own lint


def test_statement_ids_are_letters_and_digits():
    assert key_users.sid("IamRole/pulumi-cmk-2") == "ReconcilerKeyUserPulumiCmk2"


def test_a_key_with_users_may_read_and_write_its_policy(stack):
    want = desired_key(stack, KEY, ROLE)
    actions = {a for p in kinds.RULES["KmsProvider"].permissions(want, {want.address: want}, state_model.State())
               for a in p.actions}
    assert {"kms:GetKeyPolicy", "kms:PutKeyPolicy"} <= actions
    plain = desired_key(stack, KEY)
    assert "kms:PutKeyPolicy" not in {a for p in kinds.RULES["KmsProvider"].permissions(
        plain, {plain.address: plain}, state_model.State()) for a in p.actions}

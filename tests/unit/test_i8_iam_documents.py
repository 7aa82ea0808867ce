"""Issue 8: IamRole documents (pure). Trust and grants render to the
documents the vendor guides show, equal documents in another form compare
equal, every real change is caught, and drift that widens access is critical."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import textwrap

import pytest

from reconciler.kinds import iam_role
from reconciler.manifest import model as manifest
from reconciler.plan import diff, refs
from reconciler.plan import rules as plan_rules

TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::381492033652:root"]}, "Action": ["sts:AssumeRole"],
    "Condition": {"StringEquals": {"sts:ExternalId": ["project-1"]}}}]}


@pytest.mark.parametrize("same", [
    json.dumps(TRUST),  # JSON text
    {"Statement": {"Sid": "", "Effect": "Allow", "Principal": {"AWS": "381492033652"}, "Action": "sts:AssumeRole",
                   "Condition": {"StringEquals": {"sts:ExternalId": "project-1"}}}, "Version": "2012-10-17"},
    {"Version": "2012-10-17", "Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                             "Principal": {"AWS": ["381492033652", "arn:aws:iam::381492033652:root"]},
                                             "Condition": {"StringEquals": {"sts:ExternalId": ["project-1"]}}}]},
], ids=["json-text", "scalars-sid-less-account-id", "duplicate-principal"])
def test_equal_documents_are_equal(same):
    assert iam_role._canonical(same) == iam_role._canonical(TRUST)


@pytest.mark.parametrize("change, path", [
    ({"Principal": {"AWS": "arn:aws:iam::381492033652:role/other"}}, "Principal.AWS"),
    ({"Condition": {"StringEquals": {"sts:ExternalId": "project-2"}}}, "Condition.StringEquals.sts:ExternalId"),
    ({"Action": ["sts:AssumeRole", "sts:TagSession"]}, "Action"),
    ({"Effect": "Deny"}, "Effect"),
])
def test_each_real_change_is_caught_at_its_path(change, path):
    other = json.loads(json.dumps(TRUST))
    other["Statement"][0].update(change)
    changes = diff.diff({"trust": iam_role._canonical(TRUST)}, {"trust": iam_role._canonical(other)})
    assert [c.path for c in changes] == [f"trust.Statement[0].{path}"]


def test_statement_order_does_not_matter():
    one = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "a"}
    two = {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "b"}
    assert iam_role._canonical({"Statement": [one, two]}) == iam_role._canonical({"Statement": [two, one]})


def _config(tmp_path: pathlib.Path, text: str) -> manifest.Config:
    (tmp_path / "stack.yaml").write_text(textwrap.dedent(text))
    config, _ = manifest.load_or_raise(str(tmp_path))
    return config


def test_oidc_trust_uses_like_only_for_wildcards_and_refers_to_the_provider_arn(tmp_path):
    config = _config(tmp_path, """\
        apiVersion: reconciler/v1
        kind: Stack
        metadata: {name: s}
        spec: {region: us-east-1}
        ---
        apiVersion: reconciler/v1
        kind: OidcProvider
        metadata: {name: pulumi}
        spec: {url: "https://api.pulumi.com/oidc/", audiences: ["aws:acme"]}
        """)
    trust = iam_role.trust_policy({"oidc": {"provider": "pulumi", "audience": "aws:acme",
                                            "subject": "pulumi:cmk:?rg:*"}}, config)
    assert trust["Statement"] == [{
        "Effect": "Allow", "Action": ["sts:AssumeRoleWithWebIdentity"],
        "Principal": {"Federated": [{refs.REF: "OidcProvider/pulumi#arn"}]},
        "Condition": {"StringEquals": {"api.pulumi.com/oidc:aud": ["aws:acme"]},
                      "StringLike": {"api.pulumi.com/oidc:sub": ["pulumi:cmk:?rg:*"]}}}]


def test_account_trust_names_the_root_and_requires_the_external_id(tmp_path):
    config = _config(tmp_path, "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: s}\nspec: {}\n")
    trust = iam_role.trust_policy({"awsAccount": {"accountId": "381492033652", "externalId": "project-1"}}, config)
    assert trust == TRUST


def test_grants_render_one_statement_per_key_on_all_its_arns():
    policy = iam_role.grants_policy([
        {"provider": "vault-rsa", "actions": ["encrypt", "decrypt"]},
        {"provider": "app-data", "actions": ["generate-data-key", "re-encrypt"]},
        {"provider": "vault-rsa", "actions": ["describe", "get-public-key", "decrypt"]},
    ])
    assert policy == {"Version": "2012-10-17", "Statement": [
        {"Sid": "UseAppData", "Effect": "Allow",
         "Action": ["kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"],
         "Resource": {refs.REF: "KmsProvider/app-data#arns"}},
        {"Sid": "UseVaultRsa", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GetPublicKey"],
         "Resource": {refs.REF: "KmsProvider/vault-rsa#arns"}}]}
    resolved = refs.substitute(policy, lambda ref: ["arn:b", "arn:a"] if "vault" in str(ref) else ["arn:c"])
    assert resolved["Statement"][1]["Resource"] == ["arn:b", "arn:a"]  # the key's ids keep them sorted


@pytest.mark.parametrize("path, before, after, severity", [
    ("trust.Statement[0].Principal.AWS", ["arn:a"], ["arn:a", "arn:b"], "critical"),  # a new principal
    ("trust.Statement[0].Principal.AWS", ["arn:a", "arn:b"], ["arn:a"], "warning"),  # one fewer
    ("trust.Statement[0].Condition", {"StringEquals": {"sts:ExternalId": ["x"]}}, None, "critical"),
    ("trust.Statement[0].Condition.StringEquals.sts:ExternalId", ["x"], ["y"], "critical"),
    ("trust.Statement[0].Condition.StringLike.k", None, ["v"], "warning"),  # a condition added: narrower
    ("trust.Statement[1]", None, {"Effect": "Allow", "Principal": "*"}, "critical"),
    ("trust.Statement[0].Effect", "Deny", "Allow", "critical"),
    ("inlinePolicies.reconciler-grants.Statement[0].Action", ["kms:Decrypt", "kms:Encrypt"], ["kms:Decrypt"],
     "warning"),
    ("inlinePolicies.reconciler-grants.Statement[0].Resource", ["arn:a"], ["*"], "critical"),
    ("inlinePolicies.extra", None, {"Statement": []}, "critical"),
    ("managedPolicyArns", [], ["arn:aws:iam::aws:policy/AdministratorAccess"], "critical"),
    ("managedPolicyArns", ["arn:x"], [], "warning"),
    ("description", "a", "b", "warning"),
])
def test_drift_that_widens_access_is_critical(path, before, after, severity):
    assert iam_role.RULES.severity(path, before, after) is plan_rules.Severity(severity)


def test_granted_names_each_keys_arns_recorded_or_by_region():
    from reconciler.plan import model
    from reconciler.state import model as state_model

    key = model.Desired("KmsProvider", "vault-rsa", state_model.Mode.MANAGED, {"replicas": {"us-west-2": {}}},
                        {"region": "us-east-2"})
    other = model.Desired("KmsProvider", "app", state_model.Mode.MANAGED, {}, {"region": "us-east-1"})
    role = model.Desired("IamRole", "cerby", state_model.Mode.MANAGED, {"inlinePolicies": {
        iam_role.GRANTS_POLICY: iam_role.grants_policy([{"provider": "vault-rsa", "actions": ["decrypt"]},
                                                        {"provider": "app", "actions": ["encrypt"]}])}}, {})
    stack = {d.address: d for d in (key, other, role)}
    recorded = state_model.State.empty().with_resource(state_model.ResourceState(
        "KmsProvider", "app", state_model.Mode.MANAGED, {"arn": "arn:aws:kms:us-east-1:1:key/k",
                                                         "arns": ["arn:aws:kms:us-east-1:1:key/k"]}, {}, {}))
    found = iam_role.RULES.granted(role, stack, recorded)
    assert [(p.actions, p.resources) for p in found] == [
        (("kms:Encrypt",), ("arn:aws:kms:us-east-1:1:key/k",)),
        (("kms:Decrypt",), ("arn:aws:kms:us-east-2:*:key/*", "arn:aws:kms:us-west-2:*:key/*"))]
    no_grants = dataclasses.replace(role, attributes={"inlinePolicies": {}})
    assert iam_role.RULES.granted(no_grants, stack, recorded) == ()

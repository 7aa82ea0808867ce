"""Issue 8: `validate` lint of policies, grants and trust. Warnings exit 0 (and
fail with --strict), errors always exit 1 and plan refuses them; every one at
file:line:col. No AWS: validate makes no call, and plan stops at the manifests."""

from __future__ import annotations

import pytest

from tests.conftest import run

ROOT = """\
      - Sid: Root
        Effect: Allow
        Principal: {AWS: "arn:aws:iam::111122223333:root"}
        Action: "kms:*"
        Resource: "*"
"""


def key(statements: str, *, with_root: bool = True) -> str:
    return f"""\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {{name: k}}
spec:
  policy:
    Version: "2012-10-17"
    Statement:
{ROOT if with_root else ""}{statements}"""


USER = """\
      - Sid: Use
        Effect: Allow
        Principal: {AWS: "arn:aws:iam::111122223333:role/app"}
        Action: [kms:Decrypt]
        Resource: "*"
"""


def template(statement: str) -> str:
    return f"""\
apiVersion: reconciler/v1
kind: DynamicIamTemplate
metadata: {{name: t}}
spec:
  defaultTtl: 1h
  maxTtl: 2h
  inlinePolicy:
    Version: "2012-10-17"
    Statement:
{statement}"""


def role(*, key_spec: str, actions: str, subject: str = "pulumi:cmk:pulumi.organization.login:acme") -> str:
    return f"""\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {{name: k}}
spec:
  spec: {key_spec}
---
apiVersion: reconciler/v1
kind: OidcProvider
metadata: {{name: pulumi}}
spec:
  url: https://api.pulumi.com/oidc
  audiences: ["aws:acme"]
---
apiVersion: reconciler/v1
kind: IamRole
metadata: {{name: r}}
spec:
  trust:
    oidc: {{provider: pulumi, audience: "aws:acme", subject: "{subject}"}}
  grants:
    - provider: k
      actions: {actions}
"""


def validate(stack, text: str, *extra: str):
    directory = stack({"x.yaml": text})
    return directory, run("validate", directory, *extra)


def where(directory, line: int, column: int) -> str:
    return f"{directory / 'x.yaml'}:{line}:{column}"


@pytest.mark.parametrize(("statement", "line", "column", "says"), [
    pytest.param('      - Effect: Allow\n        Action: ["s3:GetObject"]\n        Resource: "*"\n', 12, 19,
                 'allows Resource "*"', id="resource wildcard"),
    pytest.param('      - Effect: Allow\n        Action: "iam:*"\n        Resource: "arn:aws:iam::1:user/x"\n',
                 11, 17, "allows iam:*", id="iam:*"),
    pytest.param('      - Effect: Allow\n        Action: ["kms:*"]\n        Resource: "arn:aws:kms:us-east-1:1:key/k"\n',
                 11, 17, "allows kms:*", id="kms:*"),
])
def test_wildcards_in_an_inline_policy_are_warnings_and_errors_when_strict(stack, statement, line, column, says):
    directory, result = validate(stack, template(statement))
    assert result.exit_code == 0, result.output
    assert f"{where(directory, line, column)}: DynamicIamTemplate/t: warning: inline policy statement {says}" \
        in result.output
    strict = run("validate", directory, "--strict")
    assert strict.exit_code == 1
    assert f"Error: {where(directory, line, column)}: DynamicIamTemplate/t: inline policy statement {says}" \
        in strict.output


def test_an_exact_inline_policy_passes_strict(stack):
    exact = ('      - Effect: Allow\n        Action: ["s3:GetObject"]\n'
             '        Resource: "arn:aws:s3:::bucket/app/*"\n')
    _, result = validate(stack, template(exact), "--strict")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_kms_star_in_a_key_policy_is_flagged_except_in_the_account_root_statement(stack):
    wide = USER.replace("Action: [kms:Decrypt]", 'Action: ["kms:*"]')
    directory, result = validate(stack, key(wide))
    assert result.exit_code == 0, result.output
    assert f"{where(directory, 16, 17)}: KmsProvider/k: warning: key policy statement allows kms:*" in result.output
    assert result.output.count("warning") == 1  # the Root statement's kms:* is how the key stays manageable
    _, exact = validate(stack, key(USER), "--strict")
    assert exact.exit_code == 0, exact.output  # Resource "*" in a key policy means "this key"


def test_principal_star_without_a_condition_is_a_warning_and_with_one_passes(stack):
    anyone = USER.replace('{AWS: "arn:aws:iam::111122223333:role/app"}', '"*"')
    directory, result = validate(stack, key(anyone))
    assert result.exit_code == 0, result.output
    assert (f'{where(directory, 15, 20)}: KmsProvider/k: warning: key policy statement allows Principal "*" '
            "without a Condition") in result.output
    assert run("validate", directory, "--strict").exit_code == 1
    conditioned = anyone + '        Condition: {StringEquals: {"kms:CallerAccount": "111122223333"}}\n'
    _, passing = validate(stack, key(conditioned), "--strict")
    assert passing.exit_code == 0, passing.output


def test_a_key_policy_without_the_account_root_statement_is_an_error_and_plan_refuses_it(stack):
    directory, result = validate(stack, key(USER, with_root=False))
    assert result.exit_code == 1
    assert (f"Error: {where(directory, 6, 5)}: KmsProvider/k: the key policy has no account-root statement"
            in result.output)
    assert "unmanageable" in result.output
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert "no account-root statement" in plan.output
    assert "Traceback" not in plan.output


@pytest.mark.parametrize("root", [
    pytest.param('{AWS: "111122223333"}', id="bare account id"),
    pytest.param('{AWS: ["arn:aws:iam::111122223333:role/x", "arn:aws:iam::111122223333:root"]}', id="in a list"),
])
def test_the_account_root_statement_may_be_spelled_as_aws_accepts_it(stack, root):
    text = key(USER).replace('Principal: {AWS: "arn:aws:iam::111122223333:root"}', f"Principal: {root}")
    _, result = validate(stack, text, "--strict")
    assert result.exit_code == 0, result.output


def test_a_conditioned_root_statement_does_not_count(stack):
    text = key(USER).replace('        Resource: "*"\n', '        Resource: "*"\n        Condition: '
                                                        '{Bool: {"aws:MultiFactorAuthPresent": "true"}}\n', 1)
    _, result = validate(stack, text)
    assert result.exit_code == 1
    assert "no account-root statement" in result.output


@pytest.mark.parametrize(("key_spec", "actions", "column", "says"), [
    pytest.param("RSA_4096", "[decrypt, generate-data-key]", 26, "grants generate-data-key on KmsProvider/k, but an "
                 "RSA_4096 key cannot generate data keys", id="data keys from RSA"),
    pytest.param("SYMMETRIC_DEFAULT", "[get-public-key]", 17, "grants get-public-key on KmsProvider/k, but a "
                 "SYMMETRIC_DEFAULT key has no public key", id="public key of a symmetric key"),
])
def test_a_role_grant_the_key_spec_cannot_do_is_an_error(stack, key_spec, actions, column, says):
    directory, result = validate(stack, role(key_spec=key_spec, actions=actions))
    assert result.exit_code == 1
    assert f"Error: {where(directory, 22, column)}: IamRole/r: {says}" in result.output


@pytest.mark.parametrize(("key_spec", "actions"), [
    ("RSA_4096", "[encrypt, decrypt, get-public-key, describe]"),
    ("SYMMETRIC_DEFAULT", "[encrypt, decrypt, generate-data-key, re-encrypt]"),
])
def test_a_role_grant_the_key_spec_can_do_passes(stack, key_spec, actions):
    _, result = validate(stack, role(key_spec=key_spec, actions=actions), "--strict")
    assert result.exit_code == 0, result.output


def test_a_kms_grant_the_key_spec_cannot_do_is_an_error(stack):
    text = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: k}
spec:
  spec: RSA_2048
  grants:
    - {name: g, granteePrincipal: "arn:aws:iam::111122223333:role/app", operations: [Decrypt, GenerateDataKey]}
"""
    directory, result = validate(stack, text)
    assert result.exit_code == 1
    assert (f"Error: {where(directory, 7, 95)}: KmsProvider/k: grant g gives GenerateDataKey, but an RSA_2048 key "
            "cannot generate data keys") in result.output
    _, passing = validate(stack, text.replace(", GenerateDataKey", ", GetPublicKey"), "--strict")
    assert passing.exit_code == 0, passing.output


@pytest.mark.parametrize("subject", ["*", "**", "?*"])
def test_oidc_trust_with_only_an_audience_is_an_error(stack, subject):
    directory, result = validate(stack, role(key_spec="SYMMETRIC_DEFAULT", actions="[decrypt]", subject=subject))
    assert result.exit_code == 1
    assert f"Error: {where(directory, 19, 61)}: IamRole/r: OIDC trust with subject" in result.output
    assert "checks only the audience" in result.output


def test_oidc_trust_with_a_subject_pattern_that_pins_the_organisation_passes(stack):
    text = role(key_spec="SYMMETRIC_DEFAULT", actions="[decrypt]", subject="pulumi:cmk:pulumi.organization.login:*")
    _, result = validate(stack, text, "--strict")
    assert result.exit_code == 0, result.output

"""Issue 8: IamRole and OidcProvider manifests: what the schemas refuse, at
file:line:col through the real CLI (exit 1, no traceback), and what they take."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
PROVIDER = """\
apiVersion: reconciler/v1
kind: OidcProvider
metadata: {name: pulumi}
spec:
  url: https://api.pulumi.com/oidc
  audiences: ["aws:acme"]
"""
ROLE = """\
apiVersion: reconciler/v1
kind: IamRole
metadata: {name: r}
spec:
"""

CASES = [
    ("oidc-audience-only", ROLE + "  trust:\n    oidc: {provider: pulumi, audience: 'aws:acme'}\n", 6, 11,
     "missing required field 'subject'"),
    ("account-without-external-id", ROLE + "  trust:\n    awsAccount: {accountId: '381492033652'}\n", 6, 17,
     "missing required field 'externalId'"),
    ("bad-managed-policy-arn", ROLE + "  trust:\n    awsAccount: {accountId: '381492033652', externalId: ab}\n"
     "  managedPolicyArns: [AdministratorAccess]\n", 7, 23, "is not valid"),
    ("bad-role-name", ROLE + "  roleName: 'has space'\n  trust:\n    awsAccount: {accountId: '381492033652', externalId: ab}\n",
     5, 13, "is not valid"),
    ("unknown-grant-action", ROLE + "  trust:\n    awsAccount: {accountId: '381492033652', externalId: ab}\n"
     "  grants: [{provider: k, actions: [sign]}]\n", 7, 36, "is not allowed"),
    ("thumbprint-not-hex", PROVIDER.replace("pulumi}", "other}") + "  thumbprints: [nothex]\n", 7, 17, "is not valid"),
]


@pytest.mark.parametrize("name, text, line, column, message", CASES, ids=[c[0] for c in CASES])
def test_refused_at_the_field(tmp_path, name, text, line, column, message):
    (tmp_path / "stack.yaml").write_text(STACK)
    (tmp_path / "provider.yaml").write_text(PROVIDER)
    (tmp_path / "role.yaml").write_text(textwrap.dedent(text))
    result = run("validate", tmp_path)
    assert result.exit_code == 1, result.output
    assert f"role.yaml:{line}:{column}:" in result.output, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_vendor_shapes_validate(tmp_path):
    (tmp_path / "stack.yaml").write_text(STACK)
    (tmp_path / "provider.yaml").write_text(PROVIDER)
    (tmp_path / "role.yaml").write_text(ROLE + "  roleName: PulumiCMK\n  path: /vendors/\n  maxSessionDuration: 7200\n"
                                        "  managedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n"
                                        "  trust:\n    oidc: {provider: pulumi, audience: 'aws:acme', subject: 'pulumi:*'}\n")
    result = run("validate", tmp_path)
    assert result.exit_code == 0, result.output

"""Issue 8: IAM eventual consistency. With the sandbox's propagation switch
on, a trust policy naming a provider or role younger than N seconds is
refused as AWS refuses it; apply retries when the principal is one it just
created, and fails at once, in one line, when it is not."""

from __future__ import annotations

import json

import boto3

from reconciler.sandbox.fidelity import PROPAGATION_ENV
from tests.conftest import run, state_of

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
  trust:
    oidc: {provider: pulumi, audience: "aws:acme", subject: "pulumi:cmk:pulumi.organization.login:acme"}
"""


def test_role_trusting_a_provider_made_in_the_same_apply_is_retried_until_accepted(aws, stack, calls, monkeypatch):
    monkeypatch.setenv(PROPAGATION_ENV, "1.2")
    directory = stack({"oidc.yaml": OIDC})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert calls.count("CreateRole") >= 2  # refused while the provider was new, then accepted
    provider = state_of(directory)["resources"]["OidcProvider/pulumi"]["ids"]["arn"]
    trust = boto3.client("iam").get_role(RoleName="pulumi-cmk")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Federated": [provider]}
    assert state_of(directory)["journal"] == []


def test_an_unknown_principal_not_made_by_this_apply_fails_at_once_in_one_line(aws, stack, calls, monkeypatch):
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "111122223333"},
                                                     "Action": "sts:AssumeRole"}]}
    other = iam.create_role(RoleName="made-by-hand", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    monkeypatch.setenv(PROPAGATION_ENV, "60")
    directory = stack({"role.yaml": f"""\
        apiVersion: reconciler/v1
        kind: IamRole
        metadata: {{name: chained}}
        spec:
          trust:
            awsAccount: {{principal: "{other}", externalId: ext-1}}
        """})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    assert calls.count("CreateRole") == 1
    line = result.output.strip().splitlines()[-1]
    assert "IamRole/chained" in line and "Invalid principal in policy" in line and "Traceback" not in result.output
    state = state_of(directory)
    assert "IamRole/chained" not in state["resources"] and state["journal"] == []

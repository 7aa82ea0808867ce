"""Issue 8: IamRole and OidcProvider creates are journaled and tagged like KMS
keys: a run killed right after any AWS call is finished by the next apply,
with one role and one provider (never a duplicate, never an orphan)."""

from __future__ import annotations

import urllib.request

import boto3
import pytest

from reconciler.aws import session
from tests.aws.test_i7_runtime_journal import Killed, kill_after  # noqa: F401  (fixture)
from tests.conftest import run, state_of

STACK = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: app}
spec: {protect: false}
---
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
  grants:
    - {provider: app, actions: [encrypt, decrypt, generate-data-key]}
"""


def test_killed_between_create_role_and_state_write_is_resumed_from_its_tag(aws, stack, kill_after):
    directory = stack({"all.yaml": STACK})
    hook = kill_after(1, "CreateRole")
    with pytest.raises(Killed):
        run("apply", directory, "--auto-approve")
    session.unregister_hook("after-call", hook)
    [journal] = state_of(directory)["journal"]
    assert (journal["address"], journal["step"]) == ("IamRole/pulumi-cmk", "create-role")
    plan = run("plan", directory)
    assert (f"resuming interrupted create of IamRole/pulumi-cmk (operation {journal['operationId']}): "
            "found role pulumi-cmk") in " ".join(plan.output.split())
    assert "+ IamRole/pulumi-cmk" not in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert state_of(directory)["journal"] == []
    assert boto3.client("iam").list_role_policies(RoleName="pulumi-cmk")["PolicyNames"] == ["reconciler-grants"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_killed_after_any_call_the_next_apply_converges_without_duplicates(aws, stack, calls, tmp_path,
                                                                          kill_after):
    # one action at a time: the k-th call is then the same call in every run (side by side, the key's and
    # the provider's calls interleave differently each time, and a call may never be the one killed after)
    clean = stack({"all.yaml": STACK})
    assert run("apply", clean, "--auto-approve", "--parallelism", "1").exit_code == 0
    total = len(calls.calls)
    killed_after: list[str] = []
    for k in range(1, total + 1):
        urllib.request.urlopen(urllib.request.Request(f"{aws}/moto-api/reset", method="POST")).read()
        directory = tmp_path / f"run-{k}"
        directory.mkdir()
        for path in clean.glob("*.yaml"):
            (directory / path.name).write_text(path.read_text())
        hook = kill_after(k)
        with pytest.raises(Killed):
            run("apply", directory, "--auto-approve", "--parallelism", "1")
        session.unregister_hook("after-call", hook)
        killed_after.append(hook.killed_at)
        resumed = run("apply", directory, "--auto-approve")
        assert resumed.exit_code == 0, (k, hook.killed_at, resumed.output)
        iam = boto3.client("iam")
        assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["pulumi-cmk"], (k, hook.killed_at)
        assert len(iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]) == 1
        assert state_of(directory)["journal"] == [], (k, hook.killed_at)
        assert run("plan", directory, "--detailed-exitcode").exit_code == 0, (k, hook.killed_at)
    assert {"CreateOpenIDConnectProvider", "CreateRole", "PutRolePolicy"} <= set(killed_after)

"""Issue 8: the OidcProvider kind end to end (the real CLI against the sandbox)."""

from __future__ import annotations

import boto3

from tests.conftest import run, state_of

PROVIDER = """\
apiVersion: reconciler/v1
kind: OidcProvider
metadata: {{name: pulumi}}
spec:
  url: https://api.pulumi.com/oidc
  audiences: {audiences}
{extra}"""


def provider(audiences: str = "[aws:acme]", extra: str = "") -> str:
    return PROVIDER.format(audiences=audiences, extra=extra)


def arn_of(directory) -> str:
    return state_of(directory)["resources"]["OidcProvider/pulumi"]["ids"]["arn"]


def live(arn: str) -> dict:
    return boto3.client("iam").get_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def clean(directory) -> None:
    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output


def test_created_without_thumbprints_then_plans_clean(aws, stack):
    directory = stack({"oidc.yaml": provider(extra="  tags: {team: platform}\n")})
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    arn = arn_of(directory)
    assert arn.endswith(":oidc-provider/api.pulumi.com/oidc")
    found = live(arn)
    assert found["ClientIDList"] == ["aws:acme"]
    assert found["ThumbprintList"] == []
    tags = {t["Key"]: t["Value"] for t in found["Tags"]}
    assert tags["team"] == "platform"
    assert tags["reconciler:address"] == "OidcProvider/pulumi" and tags["reconciler:stack"] == "test"
    assert tags["reconciler:operation"]
    clean(directory)
    # AWS may keep thumbprints of its own for an issuer declared without: never a diff
    boto3.client("iam").update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn,
                                                                   ThumbprintList=["a" * 40])
    clean(directory)


def test_audiences_thumbprints_and_tags_update_in_place(aws, stack, calls):
    directory = stack({"oidc.yaml": provider()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    arn = arn_of(directory)
    (directory / "oidc.yaml").write_text(provider("[aws:other, aws:acme2]",
                                                  f"  thumbprints: [{'B' * 40}]\n  tags: {{env: prod}}\n"))
    plan = run("plan", directory)
    assert "~ OidcProvider/pulumi" in plan.output, plan.output
    calls.clear()
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "iam:CreateOpenIDConnectProvider" not in calls.writes
    found = live(arn)
    assert sorted(found["ClientIDList"]) == ["aws:acme2", "aws:other"]
    assert found["ThumbprintList"] == ["b" * 40]
    assert {t["Key"]: t["Value"] for t in found["Tags"]}["env"] == "prod"
    assert arn_of(directory) == arn
    clean(directory)


def test_audience_changed_by_hand_is_drift_and_apply_restores_it(aws, stack):
    directory = stack({"oidc.yaml": provider(extra=f"  thumbprints: [{'c' * 40}]\n")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    arn = arn_of(directory)
    iam = boto3.client("iam")
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com")
    iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn, ThumbprintList=["d" * 40])
    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2, drift.output
    assert '"severity": "warning"' in drift.output
    assert '"path": "audiences"' in drift.output and '"path": "thumbprints"' in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    found = live(arn)
    assert found["ClientIDList"] == ["aws:acme"] and found["ThumbprintList"] == ["c" * 40]
    assert run("drift", directory).exit_code == 0


def test_delete_needs_allow_destroy(aws, stack):
    directory = stack({"oidc.yaml": provider()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    arn = arn_of(directory)
    (directory / "oidc.yaml").unlink()
    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1
    assert "--allow-destroy" in refused.output
    assert live(arn)["ClientIDList"] == ["aws:acme"]
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert boto3.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"] == []


def test_import_by_url_then_plan_is_clean(aws, stack):
    iam = boto3.client("iam")
    arn = iam.create_open_id_connect_provider(Url="https://api.pulumi.com/oidc", ClientIDList=["aws:acme"],
                                              Tags=[{"Key": "team", "Value": "platform"}])["OpenIDConnectProviderArn"]
    directory = stack({"oidc.yaml": provider(extra="  tags: {team: platform}\n")})
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert "already exists" in refused.output and "reconciler import OidcProvider/pulumi" in refused.output
    imported = run("import", "OidcProvider/pulumi", "https://api.pulumi.com/oidc", "--dir", directory)
    assert imported.exit_code == 0, imported.output
    assert arn_of(directory) == arn
    clean(directory)
    again = run("import", "OidcProvider/pulumi", "https://api.pulumi.com/oidc", "--dir", directory)
    assert again.exit_code == 1 and "already in state" in again.output


def test_import_of_a_missing_provider_fails_in_one_line(aws, stack):
    directory = stack({"oidc.yaml": provider()})
    result = run("import", "OidcProvider/pulumi", "https://nowhere.example.com", "--dir", directory)
    assert result.exit_code == 1
    assert "no OIDC provider for https://nowhere.example.com" in result.output
    assert "Traceback" not in result.output
    assert not (directory / ".reconciler" / "state.json").exists()  # nothing written


def test_permissions_hook_names_the_provider_arn():
    from reconciler.kinds import oidc
    from reconciler.plan import model
    from reconciler.state import model as state_model

    want = model.Desired("OidcProvider", "pulumi", "managed", {"url": "https://api.pulumi.com/oidc"}, {})
    found = oidc.RULES.permissions(want, {want.address: want}, state_model.State.empty())
    assert found[0].resources == ("arn:aws:iam::*:oidc-provider/api.pulumi.com/oidc",)
    assert "iam:AddClientIDToOpenIDConnectProvider" in found[0].actions
    assert found[1].resources == ("*",) and found[1].actions == ("iam:ListOpenIDConnectProviders",)


def test_a_new_url_replaces_the_provider_creating_first(aws, stack, calls):
    directory = stack({"oidc.yaml": provider()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old = arn_of(directory)
    (directory / "oidc.yaml").write_text(provider().replace("api.pulumi.com/oidc", "token.actions.example.com"))
    plan = run("plan", directory)
    assert "+/- OidcProvider/pulumi" in plan.output, plan.output
    calls.clear()
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    writes = [w for w in calls.writes if "OpenIDConnectProvider" in w]
    assert writes.index("iam:CreateOpenIDConnectProvider") < writes.index("iam:DeleteOpenIDConnectProvider")
    arns = [p["Arn"] for p in boto3.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    assert arns == [arn_of(directory)] and arn_of(directory) != old
    assert arn_of(directory).endswith(":oidc-provider/token.actions.example.com")
    clean(directory)

"""KmsProvider end to end: the real CLI against the sandbox server."""

from __future__ import annotations

import json

import boto3

from tests.conftest import run, state_of

SYMMETRIC = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: main}
spec:
  alias: team/main
  description: main key
  rotation: {enabled: true, periodDays: 180}
  tags: {team: platform, env: prod}
  protect: false
  deletionWindowDays: 7
"""


def key_id(directory, name="main"):
    return state_of(directory)["resources"][f"KmsProvider/{name}"]["ids"]["keyId"]


def test_quickstart_apply_then_plan_is_clean_and_makes_no_writes(aws, example, calls):
    directory = example("quickstart")
    first = run("plan", directory, "--detailed-exitcode")
    assert first.exit_code == 2, first.output
    assert "Plan: 4 to create" in first.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 4 create" in applied.output

    kms = boto3.client("kms", region_name="us-east-1")
    west = boto3.client("kms", region_name="us-west-2")
    state = state_of(directory)
    sym = state["resources"]["KmsProvider/app-data"]["ids"]["keyId"]
    rsa = state["resources"]["KmsProvider/vault-rsa"]["ids"]["keyId"]
    meta = kms.describe_key(KeyId=sym)["KeyMetadata"]
    assert meta["Description"] == "Wraps the data keys of the app-data vault"
    assert kms.get_key_rotation_status(KeyId=sym)["KeyRotationEnabled"] is True
    assert {a["AliasName"] for a in kms.list_aliases(KeyId=sym)["Aliases"]} == {"alias/quickstart/app-data"}
    rsa_meta = kms.describe_key(KeyId=rsa)["KeyMetadata"]
    assert rsa_meta["KeySpec"] == "RSA_4096" and rsa_meta["MultiRegion"] is True
    assert rsa_meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    replica = west.describe_key(KeyId=rsa)["KeyMetadata"]
    assert replica["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert {a["AliasName"] for a in west.list_aliases(KeyId=rsa)["Aliases"]} == {"alias/quickstart/vault-rsa"}

    calls.clear()
    second = run("plan", directory, "--detailed-exitcode")
    assert second.exit_code == 0, second.output
    assert "No changes" in second.output
    assert calls.calls, "the plan refreshed nothing"
    assert calls.writes == []


def test_state_has_lineage_serial_backup_and_applied_plan(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    state = state_of(directory)
    assert state["version"] == 1 and state["lineage"] and state["serial"] >= 2
    assert state["appliedPlans"]
    backup = json.loads((directory / ".reconciler" / "state.json.backup").read_text())
    assert backup["serial"] == state["serial"] - 1
    assert backup["lineage"] == state["lineage"]


def test_out_of_band_changes_are_detected_then_fixed(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = key_id(directory)
    kms = boto3.client("kms", region_name="us-east-1")
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=kid)
    kms.update_key_description(KeyId=kid, Description="changed by hand")
    kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "team", "TagValue": "other"},
                                      {"TagKey": "extra", "TagValue": "x"}])
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=400)
    kms.update_alias(AliasName="alias/team/main", TargetKeyId=other)

    drift = run("drift", directory)
    assert drift.exit_code == 2, drift.output
    for expected in ('keyState = "Enabled" -> "Disabled"', 'description = "main key" -> "changed by hand"',
                     'tags.team = "platform" -> "other"', 'tags.extra = null -> "x"',
                     "rotation.periodDays = 180 -> 400", 'alias = "alias/team/main" -> null', "CRITICAL"):
        assert expected in " ".join(drift.output.split()), (expected, drift.output)

    # the alias now points at a key this stack does not manage: a human decides (issue 6 item 1)
    refused = run("plan", directory, "--detailed-exitcode")
    assert refused.exit_code == 1
    assert (f"KmsProvider/main: alias alias/team/main in us-east-1 was set by this stack on key {kid} but "
            f"now points at key {other}, which this stack does not manage") in refused.output
    assert f"aws kms update-alias --alias-name alias/team/main --target-key-id {kid}" in refused.output
    assert run("apply", directory, "--auto-approve").exit_code == 1
    assert kms.describe_key(KeyId="alias/team/main")["KeyMetadata"]["KeyId"] == other  # not taken back

    kms.update_alias(AliasName="alias/team/main", TargetKeyId=kid)  # the human's call
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2
    assert "~ KmsProvider/main" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0

    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Description"] == "main key"
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=kid)["Tags"]}
    ours = {k: tags.pop(k) for k in list(tags) if k.startswith("reconciler:")}  # issue 7 item 3: never drift
    assert tags == {"team": "platform", "env": "prod"}
    assert ours["reconciler:stack"] == "test" and ours["reconciler:address"] == "KmsProvider/main"
    assert kms.get_key_rotation_status(KeyId=kid)["RotationPeriodInDays"] == 180
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=kid)["Aliases"]] == ["alias/team/main"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


def test_key_pending_deletion_is_critical_and_cancelled_by_apply(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = key_id(directory)
    kms = boto3.client("kms", region_name="us-east-1")
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2
    report = json.loads(drift.output)
    assert report["critical"] == 1
    assert {"path": "keyState", "op": "change", "before": "Enabled", "after": "PendingDeletion"} in \
        report["drift"][0]["changes"]
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"


def test_missing_replica_is_recreated(aws, example):
    directory = example("quickstart")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    rsa = key_id(directory, "vault-rsa")
    west = boto3.client("kms", region_name="us-west-2")
    west.schedule_key_deletion(KeyId=rsa, PendingWindowInDays=7)
    plan = run("plan", directory)
    assert 'replicas.us-west-2.keyState = "PendingDeletion" -> "Enabled"' in " ".join(plan.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert west.describe_key(KeyId=rsa)["KeyMetadata"]["KeyState"] == "Enabled"


def test_adding_a_replica_region_replicates(aws, stack):
    base = SYMMETRIC.replace("protect: false", "protect: false\n  multiRegion: true")
    directory = stack({"key.yaml": base})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(base + "  replicaRegions: [eu-west-1]\n")
    plan = run("plan", directory)
    assert "replicas.eu-west-1" in plan.output and "Plan: 0 to create, 1 to update" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = key_id(directory)
    replica = boto3.client("kms", region_name="eu-west-1").describe_key(KeyId=kid)["KeyMetadata"]
    assert replica["Description"] == "main key"
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_changing_description_and_removing_alias(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(SYMMETRIC.replace("  alias: team/main\n", "")
                                        .replace("main key", "renamed"))
    plan = run("plan", directory)
    assert '      ~ alias       = "alias/team/main" -> null\n' in plan.output  # no alias: null, not missing
    assert '      ~ description = "main key" -> "renamed"\n' in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.list_aliases(KeyId=key_id(directory))["Aliases"] == []
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


GRANTS = """\
  grants:
    - name: app-decrypt
      granteePrincipal: arn:aws:iam::123456789012:role/app
      operations: [Decrypt, DescribeKey]
"""
EXCLUSIVE = "  exclusiveGrants: true\n"  # undeclared grants are revoked too (issue 6 item 6)


def test_grants_are_created_and_drift_reverted(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC + GRANTS + EXCLUSIVE})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    kid = key_id(directory)
    (grant,) = kms.list_grants(KeyId=kid)["Grants"]
    assert grant["Name"] == "app-decrypt" and sorted(grant["Operations"]) == ["Decrypt", "DescribeKey"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

    kms.create_grant(KeyId=kid, GranteePrincipal="arn:aws:iam::123456789012:role/intruder",
                     Operations=["Decrypt"])
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "grants.grant-id:" in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    names = [g.get("Name") for g in kms.list_grants(KeyId=kid)["Grants"]]
    assert names == ["app-decrypt"]

    (directory / "key.yaml").write_text(SYMMETRIC + GRANTS.replace("Decrypt, DescribeKey", "Encrypt") + EXCLUSIVE)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (grant,) = kms.list_grants(KeyId=kid)["Grants"]
    assert grant["Operations"] == ["Encrypt"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_replica_deleted_out_of_band_is_replicated_again(aws, example):
    from moto.kms.models import kms_backends

    directory = example("quickstart")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    rsa = key_id(directory, "vault-rsa")
    # AWS finishing a replica's deletion: the replica is gone and the primary no longer lists it
    del kms_backends["123456789012"]["us-west-2"].keys[rsa]
    primary = kms_backends["123456789012"]["us-east-1"].keys[rsa]
    primary.multi_region_configuration["ReplicaKeys"].clear()
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "replicas.us-west-2" in drift.output
    plan = run("plan", directory)
    assert "      + replicas.us-west-2 = {\n" in plan.output
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy." in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    west = boto3.client("kms", region_name="us-west-2")
    assert west.describe_key(KeyId=rsa)["KeyMetadata"]["KeyState"] == "Enabled"
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

"""Issue 11 item 2: state lost, restored from an older copy, or pointing at a
missing object is recovered by finding what the stack made (its tags, or a
vault entry bound to the stack), never by creating duplicates: no second key,
no moved alias, no regenerated secret."""

from __future__ import annotations

import json
import pathlib
import shutil

import boto3
import pytest

from tests.conftest import run, state_of

STATE = pathlib.Path(".reconciler") / "state.json"


def _kms(region: str = "us-east-1"):
    return boto3.client("kms", region_name=region)


def _keys_of(stack: str, region: str = "us-east-1") -> list[str]:
    """Keys in the region tagged for ``stack`` (not pending deletion)."""
    kms = _kms(region)
    found = []
    for key in kms.list_keys()["Keys"]:
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if meta["KeyState"] == "PendingDeletion" or meta.get("MultiRegionConfiguration", {}).get(
                "MultiRegionKeyType") == "REPLICA":
            continue
        tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]}
        if tags.get("reconciler:stack") == stack:
            found.append(key["KeyId"])
    return sorted(found)


def _aliases() -> dict[str, str]:
    return {a["AliasName"]: a.get("TargetKeyId") for a in _kms().list_aliases()["Aliases"]
            if not a["AliasName"].startswith("alias/aws/")}


def _secret(directory: pathlib.Path, address: str = "app/api-token") -> str:
    result = run("secret", "get", address, "--dir", directory)
    assert result.exit_code == 0, result.output
    return result.output


def _applied(directory: pathlib.Path, *extra: str) -> str:
    result = run("apply", directory, "--auto-approve", *extra)
    assert result.exit_code == 0, result.output
    return result.output


def _forget_state(directory: pathlib.Path) -> None:
    for name in ("state.json", "state.json.backup"):
        (directory / ".reconciler" / name).unlink(missing_ok=True)


def test_lost_state_is_found_by_tags_not_created_again(aws, example):
    directory = example("quickstart")
    _applied(directory)
    keys, aliases, value = _keys_of("quickstart"), _aliases(), _secret(directory)
    history = run("secret", "history", "app/api-token", "--dir", directory).output
    _forget_state(directory)

    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "<= KmsProvider/app-data" in plan.output and "<= KmsProvider/vault-rsa" in plan.output
    assert "<= Secret/api-token" in plan.output
    assert "+ KmsProvider" not in plan.output and "+ Secret" not in plan.output
    assert f"found key {keys[0]}" in plan.output or f"found key {keys[1]}" in plan.output
    assert "found version 1 in Vault/app's store" in plan.output

    _applied(directory)
    assert _keys_of("quickstart") == keys  # no duplicate
    assert _aliases() == aliases  # no alias moved
    assert _secret(directory) == value  # not regenerated
    assert run("secret", "history", "app/api-token", "--dir", directory).output == history  # no new version
    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert {a.split("/")[0] for a in state_of(directory)["resources"]} == {"KmsProvider", "Vault", "Secret"}


def test_state_restored_from_an_older_copy_finds_what_came_after(aws, example):
    directory = example("quickstart")
    keys_yaml = directory / "keys.yaml"
    full = keys_yaml.read_text()
    first, _, _rest = full.partition("\n---\napiVersion: reconciler/v1\nkind: KmsProvider\nmetadata:\n  name: vault-rsa")
    keys_yaml.write_text(first + "\n")
    _applied(directory)
    old = (directory / STATE).read_text()
    keys_yaml.write_text(full)
    _applied(directory)
    keys, aliases = _keys_of("quickstart"), _aliases()
    (directory / STATE).write_text(old)  # restored from the older copy (its serial is older, on purpose)

    plan = run("plan", directory, "--force")
    assert plan.exit_code == 0, plan.output
    assert "<= KmsProvider/vault-rsa" in plan.output and "+ KmsProvider" not in plan.output
    _applied(directory, "--force")
    assert _keys_of("quickstart") == keys and _aliases() == aliases


def test_an_entry_pointing_at_a_missing_key_finds_the_tagged_one(aws, example):
    directory = example("quickstart")
    _applied(directory)
    keys, aliases, value = _keys_of("quickstart"), _aliases(), _secret(directory)
    state = state_of(directory)
    recorded = state["resources"]["KmsProvider/app-data"]["ids"]["keyId"]
    state["resources"]["KmsProvider/app-data"]["ids"]["keyId"] = "00000000-0000-4000-8000-000000000000"
    (directory / STATE).write_text(json.dumps(state))

    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "KmsProvider/app-data [CRITICAL]: no longer exists in AWS; found key " + recorded in drift.output
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "<= KmsProvider/app-data" in plan.output and "+ KmsProvider" not in plan.output
    _applied(directory)
    assert state_of(directory)["resources"]["KmsProvider/app-data"]["ids"]["keyId"] == recorded
    assert _keys_of("quickstart") == keys and _aliases() == aliases and _secret(directory) == value


def test_lost_state_finds_the_oidc_provider_role_and_key_by_their_tags(aws, example):
    directory = example("pulumi-cmk")
    _applied(directory)
    iam = boto3.client("iam", region_name="us-east-1")
    role_id = iam.get_role(RoleName="pulumi-cmk")["Role"]["RoleId"]
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    keys = _keys_of("pulumi-cmk")
    _forget_state(directory)

    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    for address in ("OidcProvider/pulumi", "IamRole/pulumi-cmk", "KmsProvider/pulumi-secrets"):
        assert f"<= {address}" in plan.output
    assert "found role pulumi-cmk by its tags" in plan.output and "found provider arn:aws:iam::" in plan.output
    assert "already exists; adopt it with" not in plan.output  # ours by its tags, not a stranger's
    _applied(directory)
    assert iam.get_role(RoleName="pulumi-cmk")["Role"]["RoleId"] == role_id  # the same role, never re-made
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == providers
    assert _keys_of("pulumi-cmk") == keys
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_an_alias_is_never_taken_from_a_key_the_stack_made_for_another_address(aws, example):
    directory = example("quickstart")
    _applied(directory)
    keys, aliases = _keys_of("quickstart"), _aliases()
    _forget_state(directory)
    keys_yaml = directory / "keys.yaml"
    keys_yaml.write_text(keys_yaml.read_text().replace("name: app-data\n", "name: app-data-renamed\n")
                         .replace("provider: app-data\n", "provider: app-data-renamed\n"))

    plan = run("plan", directory)
    assert plan.exit_code == 1
    held = aliases["alias/quickstart/app-data"]
    assert (f"KmsProvider/app-data-renamed: alias alias/quickstart/app-data in us-east-1 points at key {held}, "
            "which this stack made for KmsProvider/app-data (its tags say so) but state does not record") \
        in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 1
    assert _keys_of("quickstart") == keys and _aliases() == aliases  # nothing created, nothing moved


def test_a_gone_key_with_nothing_tagged_is_critical_and_made_again_only_when_asked(aws, stack):
    directory = stack({"key.yaml": """\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {name: main}
        spec: {spec: SYMMETRIC_DEFAULT, alias: gone/main, protect: false, deletionWindowDays: 7}
        """})
    _applied(directory)
    state = state_of(directory)
    entry = state["resources"]["KmsProvider/main"]
    kms = _kms()
    kms.delete_alias(AliasName="alias/gone/main")
    kms.tag_resource(KeyId=entry["ids"]["keyId"], Tags=[{"TagKey": "reconciler:stack", "TagValue": "elsewhere"}])
    entry["ids"]["keyId"] = "00000000-0000-4000-8000-000000000000"  # the recorded key is gone
    (directory / STATE).write_text(json.dumps(state))

    drift = run("drift", directory)
    assert drift.exit_code == 2 and "KmsProvider/main [CRITICAL]: no longer exists in AWS" in drift.output
    plan = run("plan", directory)
    assert plan.exit_code == 0 and "+ KmsProvider/main" in plan.output
    assert "no longer exists in AWS and none tagged for this stack and address was found" in plan.output
    refused = run("apply", directory, "--auto-approve")
    assert refused.exit_code == 1 and "re-run apply with --allow-destroy" in refused.output
    assert state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"].startswith("00000000")
    _applied(directory, "--allow-destroy")
    assert _keys_of("test") == [state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]]


def test_a_serial_that_went_backwards_needs_force_and_a_missing_state_beside_its_backup_too(aws, example):
    directory = example("quickstart")
    _applied(directory)
    old = (directory / STATE).read_text()
    (directory / "keys.yaml").write_text((directory / "keys.yaml").read_text().replace(
        "description: Wraps the data keys of the app-data vault", "description: newer"))
    _applied(directory)
    newest = json.loads((directory / STATE).read_text())["serial"]
    (directory / STATE).write_text(old)
    for command in (("plan",), ("drift",), ("apply", "--auto-approve")):
        refused = run(*command, directory)
        assert refused.exit_code == 1, refused.output
        [line] = [line for line in refused.output.splitlines() if line.startswith("Error:")]
        assert f"the state's serial went backwards ({json.loads(old)['serial']}, its backup has {newest - 1})" \
            in line and "--force" in line
    assert json.loads((directory / STATE).read_text()) == json.loads(old)  # nothing written

    (directory / STATE).unlink()
    refused = run("plan", directory)
    assert refused.exit_code == 1 and "the state is missing, but its backup holds serial" in refused.output
    shutil.copy(directory / ".reconciler" / "state.json.backup", directory / STATE)  # the repair it names
    assert run("plan", directory).exit_code == 0


def test_a_no_refresh_plan_made_without_state_never_creates_a_duplicate_at_apply(aws, example, tmp_path):
    directory = example("quickstart")
    _applied(directory)
    keys = _keys_of("quickstart")
    _forget_state(directory)
    saved = tmp_path / "blind.plan"
    assert run("plan", directory, "--no-refresh", "--out", saved).exit_code == 0
    refused = run("apply", saved, "--auto-approve")
    assert refused.exit_code == 1
    assert "this plan was made with --no-refresh, and found key" in refused.output
    assert _keys_of("quickstart") == keys


def test_after_force_the_serial_goes_on_above_the_backup(aws, example):
    directory = example("quickstart")
    _applied(directory)
    old = (directory / STATE).read_text()
    (directory / "keys.yaml").write_text((directory / "keys.yaml").read_text().replace(
        "description: Wraps the data keys of the app-data vault", "description: newer"))
    _applied(directory)
    highest = json.loads((directory / STATE).read_text())["serial"]
    (directory / STATE).write_text(old)
    (directory / "keys.yaml").write_text((directory / "keys.yaml").read_text().replace(
        "description: newer", "description: newest"))  # something to write
    _applied(directory, "--force")
    assert json.loads((directory / STATE).read_text())["serial"] > highest  # never a serial this lineage had

"""Issue 6 item 25: a read-only adopted key is re-read by the key id recorded at
adoption, never by its alias again; an alias moved out of band is drift."""

from __future__ import annotations

import json
import textwrap

import boto3

from tests.aws.test_vaults import docs, get, secret_doc, vault_doc
from tests.conftest import run, state_of

READ_ONLY = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: key}
    spec:
      keyId: alias/shared/app
    """)


def test_alias_moved_out_of_band_is_drift_and_the_vault_keeps_its_key(aws, stack):
    kms = boto3.client("kms", region_name="us-east-1")
    first = kms.create_key(Description="adopted")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/shared/app", TargetKeyId=first)
    directory = stack({"main.yaml": docs(READ_ONLY, vault_doc()), "s.yaml": secret_doc("s", "generate: {}")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    entry = state_of(directory)["resources"]["KmsProvider/key"]
    assert (entry["mode"], entry["ids"]["keyId"]) == ("read", first)
    value = get(directory, "main/s")

    second = kms.create_key(Description="someone else's")["KeyMetadata"]["KeyId"]
    kms.update_alias(AliasName="alias/shared/app", TargetKeyId=second)

    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2, drift.output
    moved, recorded = json.loads(drift.output)["drift"]
    assert recorded["address"] == "KmsProvider/key"
    assert {"path": "alias", "op": "change", "before": "alias/shared/app", "after": None} in recorded["changes"]
    assert moved == alias_moved(first, second)

    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    entry = state_of(directory)["resources"]["KmsProvider/key"]
    assert entry["ids"]["keyId"] == first  # re-read by key id: the vault did not switch keys
    assert entry["attributes"]["alias"] is None
    assert entry["ids"]["adoptedAs"] == "alias/shared/app"  # what the manifest's keyId named
    assert get(directory, "main/s") == value
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    drift = run("drift", directory, "--format", "json")  # reported for as long as the alias points away
    assert json.loads(drift.output)["drift"] == [alias_moved(first, second)]


def alias_moved(first: str, second: str) -> dict:
    return {"address": "KmsProvider/key", "severity": "warning", "gone": False,
            "changes": [{"path": "keyId(alias/shared/app)", "op": "change", "before": first, "after": second}],
            "note": f"keyId alias/shared/app now points at key {second}; this stack keeps using key "
                    f"{first}, recorded at adoption (set keyId to the key id you mean to use)"}



def test_changing_key_id_in_the_manifest_adopts_the_key_it_names(aws, stack):
    kms = boto3.client("kms", region_name="us-east-1")
    first = kms.create_key(Description="same")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/shared/app", TargetKeyId=first)
    second = kms.create_key(Description="same")["KeyMetadata"]["KeyId"]
    directory = stack({"key.yaml": READ_ONLY})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(READ_ONLY.replace("alias/shared/app", second))
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert "<= KmsProvider/key" in plan.output
    assert f"keyId {second} now names another object than the one recorded" in plan.output
    assert run("drift", directory).exit_code == 0  # a manifest change, not a change in AWS
    assert run("apply", directory, "--auto-approve").exit_code == 0
    entry = state_of(directory)["resources"]["KmsProvider/key"]
    assert (entry["ids"]["keyId"], entry["ids"]["adoptedAs"]) == (second, second)
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

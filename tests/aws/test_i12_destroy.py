"""Issue 12, `destroy [DIR]` (SPEC §4): everything in state removed under
apply's protections. The quickstart destroyed after apply leaves nothing but
keys pending deletion (with their window); a protected key refuses the whole
destroy, nothing changed; a terminal is asked, anything else needs
--auto-approve."""

from __future__ import annotations

import datetime
import json
import pathlib

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import converse, run, state_of

REGIONS = ("us-east-1", "us-west-2")  # the quickstart's RSA key is replicated to us-west-2


def live_keys() -> dict[str, list[dict]]:
    found = {}
    for region in REGIONS:
        kms = boto3.client("kms", region_name=region)
        found[region] = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in kms.list_keys()["Keys"]]
    return found


def our_aliases() -> list[str]:
    return [a["AliasName"] for region in REGIONS
            for a in boto3.client("kms", region_name=region).list_aliases()["Aliases"]
            if not a["AliasName"].startswith("alias/aws/")]


def protect_by_default(path: pathlib.Path, key: str) -> None:
    """Drop `protect: false` from one key of the quickstart (protect: true is the default)."""
    head, _, tail = path.read_text().partition(f"  name: {key}\n")
    path.write_text(head + f"  name: {key}\n" + tail.replace("  protect: false\n", "", 1))


def test_destroy_of_the_quickstart_leaves_nothing_but_keys_pending_deletion(aws, example):
    directory = example("quickstart")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert sorted(state_of(directory)["resources"]) == [
        "KmsProvider/app-data", "KmsProvider/vault-rsa", "Secret/api-token", "Vault/app"]

    refused = run("destroy", directory)  # no terminal here
    assert refused.exit_code == 1
    assert refused.output == "Error: destroy needs --auto-approve when not run from a terminal\n"

    destroyed = run("destroy", directory, "--auto-approve")
    assert destroyed.exit_code == 0, destroyed.output
    assert "Plan: 0 to create, 0 to update, 0 to replace, 4 to destroy." in destroyed.output
    assert "the key is scheduled for deletion in 7 days, never deleted outright" in destroyed.output
    assert "Destroy complete: 4 destroyed." in destroyed.output
    assert state_of(directory)["resources"] == {}
    assert list((directory / ".reconciler" / "vault-app").rglob("*.*")) == []  # the secret's versions too
    keys = live_keys()
    assert [len(keys[r]) for r in REGIONS] == [2, 1]  # both keys, and the RSA key's replica
    now = datetime.datetime.now(datetime.timezone.utc)
    for meta in keys["us-east-1"] + keys["us-west-2"]:
        assert meta["KeyState"] == "PendingDeletion"
        assert datetime.timedelta(days=6.9) < meta["DeletionDate"] - now < datetime.timedelta(days=7.1)
    assert our_aliases() == []

    again = run("destroy", directory, "--auto-approve")
    assert again.exit_code == 0
    assert again.output == "Nothing to destroy: the state of stack quickstart holds no resources.\n"


def test_destroy_refuses_the_default_protected_key_and_changes_nothing(aws, example):
    directory = example("quickstart")
    protect_by_default(directory / "keys.yaml", "app-data")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    before = state_of(directory)

    refused = run("destroy", directory, "--auto-approve")
    assert refused.exit_code == 1
    lines = refused.output.splitlines()
    assert lines[0].startswith("Error: ") and "KmsProvider/app-data: refusing to destroy a protected resource " \
        "(protect: true)" in lines[0]
    assert lines[-1] == "Error: Nothing was destroyed: destroy removes everything in state, or nothing"
    assert not any("vault-rsa" in line for line in lines)  # the unprotected key is not what refused it
    assert state_of(directory) == before
    assert {m["KeyState"] for r in REGIONS for m in live_keys()[r]} == {"Enabled"}
    assert run("secret", "get", "app/api-token", "--dir", directory).exit_code == 0  # the vault still works


def test_destroy_refuses_a_key_the_manifests_protect_before_that_is_applied(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "key.yaml").write_text(SYMMETRIC.replace("  protect: false\n", ""))
    refused = run("destroy", directory, "--auto-approve")
    assert refused.exit_code == 1
    assert refused.output.splitlines()[0] == (
        f"Error: {directory / 'key.yaml'}:4:1: KmsProvider/main: refusing to destroy a protected resource "
        "(protect: true in the manifests, not yet applied)")
    assert state_of(directory)["resources"]["KmsProvider/main"]["attributes"]["protect"] is False
    assert {m["KeyState"] for m in live_keys()["us-east-1"]} == {"Enabled"}


def test_destroy_on_a_terminal_asks_and_a_no_changes_nothing(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    prompt = b"Destroy everything listed above? [y/N]:"
    code, output = converse(["destroy", str(directory)], [(prompt, b"n\n")])
    assert code == 1 and "# KmsProvider/main will be destroyed" in output and "Aborted!" in output
    assert [m["KeyState"] for m in live_keys()["us-east-1"]] == ["Enabled"]
    code, output = converse(["destroy", str(directory)], [(prompt, b"y\n")])
    assert code == 0, output
    assert "Destroy complete: 1 destroyed." in output
    assert [m["KeyState"] for m in live_keys()["us-east-1"]] == ["PendingDeletion"]
    assert json.loads((directory / ".reconciler" / "state.json").read_text())["resources"] == {}

"""Issue 11 item 1: the vault entries reconciler creates in Secrets Manager and
SSM carry tags naming the stack, the address and the creating operation (as
keys, roles and providers do), for a Secret, a rotation's outputs, and a
secret copied to a new store."""

from __future__ import annotations

import boto3
import pytest

from tests.aws.test_i9_rotation import manager, rotation_doc  # noqa: F401  (fixture)
from tests.aws.test_vaults import STORES, docs, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of


def tags_of(store: str, name: str) -> dict[str, str]:
    if store == "secretsmanager":
        described = boto3.client("secretsmanager", region_name="us-east-1").describe_secret(SecretId=f"rcl/team/{name}")
        return {t["Key"]: t["Value"] for t in described.get("Tags", [])}
    listed = boto3.client("ssm", region_name="us-east-1").list_tags_for_resource(
        ResourceType="Parameter", ResourceId=f"/rcl/team/{name}")
    return {t["Key"]: t["Value"] for t in listed["TagList"]}


def ours(tags: dict[str, str], address: str) -> None:
    assert tags["reconciler:stack"] == "test" and tags["reconciler:address"] == address
    assert len(tags["reconciler:operation"]) == 32  # the id of the journaled write that created it


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_entries_are_tagged_with_stack_address_and_operation(manager, stack, store):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES[store]),
                                          secret_doc("made", "generate: {length: 24}"), rotation_doc())})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    ours(tags_of(store, "made"), "Secret/made")
    ours(tags_of(store, "key-id"), "AccessKeyRotation/app")
    ours(tags_of(store, "key-secret"), "AccessKeyRotation/app")
    assert state_of(directory)["journal"] == []


def test_a_store_change_tags_the_copies(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["local"]),
                                          secret_doc("made", "generate: {length: 24}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "main.yaml").write_text(docs(key_doc(), vault_doc(STORES["ssm"]),
                                              secret_doc("made", "generate: {length: 24}")))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    ours(tags_of("ssm", "made"), "Secret/made")

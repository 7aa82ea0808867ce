"""Issue 8 review, item 4: recovery of an interrupted CreateKey lists the
region's keys and reads their tags; a key another team owns, whose tags the
identity running apply may not read (its policy grants ListResourceTags on
this stack's keys only), is not one this stack made: skipped, and recovery
finds its own key as before."""

from __future__ import annotations

import json

import boto3

from tests.aws.test_i6_keys_quota import inject, json_error  # noqa: F401  (fixture)
from tests.aws.test_i7_runtime_journal import KEY, kill_after, killed_apply  # noqa: F401  (fixture)
from tests.conftest import run, state_of


def denied_for(key_id: str, seen: list[str]):
    """A before-send hook denying ListResourceTags on ``key_id`` only (the
    request body names the key), recording every key asked about."""
    deny = json_error("AccessDeniedException", f"User is not authorized to perform: kms:ListResourceTags on {key_id}")

    def handler(request, **kwargs):
        asked = json.loads(request.body or b"{}").get("KeyId", "")
        seen.append(asked)
        return deny(request, **kwargs) if asked == key_id else None
    return handler


def test_recovery_skips_a_key_whose_tags_it_may_not_read(aws, stack, kill_after, inject):
    kms = boto3.client("kms", region_name="us-east-1")
    foreign = kms.create_key(Description="another team's key")["KeyMetadata"]["KeyId"]
    directory = stack({"key.yaml": KEY})
    killed_apply(directory, kill_after(1, "CreateKey"))
    [journal] = state_of(directory)["journal"]
    [key] = [k["KeyId"] for k in kms.list_keys()["Keys"] if k["KeyId"] != foreign]

    seen: list[str] = []
    inject("before-send.kms.ListResourceTags", denied_for(foreign, seen))
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert foreign in seen  # asked, denied, and skipped
    assert (f"resuming interrupted create of KmsProvider/main (operation {journal['operationId']}): "
            f"found key {key}") in " ".join(plan.output.split())
    assert "AccessDenied" not in plan.output

    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    recorded = state_of(directory)
    assert recorded["journal"] == []
    assert recorded["resources"]["KmsProvider/main"]["ids"]["keyId"] == key
    assert sorted(k["KeyId"] for k in kms.list_keys()["Keys"]) == sorted([foreign, key])  # no second key
    assert kms.describe_key(KeyId=foreign)["KeyMetadata"]["KeyState"] == "Enabled"  # left alone

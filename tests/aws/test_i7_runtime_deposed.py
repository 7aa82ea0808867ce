"""Issue 7 item 2: an object being replaced stays in state as deposed until
its deletion succeeds, whatever stops the replace: a run killed right after
any AWS call of a replace is finished by the next apply, which destroys the
old key (scheduled for deletion), keeps the new one, and orphans nothing."""

from __future__ import annotations

import pytest

from reconciler.aws import session
from tests.aws.test_i7_runtime_journal import KEY, Killed, _reset, kill_after, live_keys  # noqa: F401
from tests.conftest import run, state_of

RSA = KEY.replace("    rotation: {enabled: true}\n", "    spec: RSA_2048\n")


def _states(*key_ids: str) -> dict[str, str]:
    import boto3

    kms = boto3.client("kms", region_name="us-east-1")
    return {k: kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] for k in key_ids}


def test_killed_after_any_call_of_a_replace_the_next_apply_finishes_it(aws, stack, calls, tmp_path, kill_after):
    rehearsal = stack({"key.yaml": KEY})
    assert run("apply", rehearsal, "--auto-approve").exit_code == 0
    (rehearsal / "key.yaml").write_text(RSA)
    calls.clear()
    assert run("apply", rehearsal, "--auto-approve", "--allow-destroy").exit_code == 0
    total = len(calls.calls)
    create_at = [op for _s, op, _r in calls.calls].index("CreateKey") + 1
    assert {"CreateKey", "UpdateAlias", "ScheduleKeyDeletion"} <= {op for _s, op, _r in calls.calls}
    killed_after = []
    for k in range(1, total + 1):
        _reset(aws)
        directory = tmp_path / f"run-{k}"
        directory.mkdir()
        for path in rehearsal.glob("*.yaml"):
            (directory / path.name).write_text(path.read_text())
        (directory / "key.yaml").write_text(KEY)
        assert run("apply", directory, "--auto-approve").exit_code == 0
        old = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
        (directory / "key.yaml").write_text(RSA)
        hook = kill_after(k)
        with pytest.raises(Killed):
            run("apply", directory, "--auto-approve", "--allow-destroy")
        session.unregister_hook("after-call", hook)
        killed_after.append(hook.killed_at)
        if k >= create_at:  # the successor exists: the old key is remembered as deposed
            deposed = state_of(directory)["deposed"]["KmsProvider/main"]
            assert [d["ids"]["keyId"] for d in deposed] == [old], (k, hook.killed_at)

        finished = run("apply", directory, "--auto-approve", "--allow-destroy")
        assert finished.exit_code == 0, (k, hook.killed_at, finished.output)
        recorded = state_of(directory)
        new = recorded["resources"]["KmsProvider/main"]["ids"]["keyId"]
        assert new != old and recorded["resources"]["KmsProvider/main"]["attributes"]["keySpec"] == "RSA_2048"
        assert recorded["deposed"] == {} and recorded["journal"] == [], (k, hook.killed_at)
        assert live_keys() == [new], (k, hook.killed_at)  # the old one scheduled for deletion, no orphan
        assert _states(old) == {old: "PendingDeletion"}
        assert run("plan", directory, "--detailed-exitcode").exit_code == 0, (k, hook.killed_at)
    assert {"CreateKey", "UpdateAlias", "ScheduleKeyDeletion"} <= set(killed_after)

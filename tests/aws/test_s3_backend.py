"""The s3 state backend against the sandbox: conditional writes, backup,
lock object naming its holder, unlock by ID, stale plans."""

from __future__ import annotations

import json
import textwrap

import boto3
import pytest

from reconciler import engine, errors
from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run

STACK = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: Stack
    metadata: {name: remote}
    spec:
      region: us-east-1
      backend:
        s3: {bucket: rcl-state, key: stacks/remote.json}
    """)


@pytest.fixture()
def remote(aws, stack):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-state")
    return stack({"stack.yaml": STACK, "key.yaml": SYMMETRIC}, with_stack=False)


def read(key: str):
    s3 = boto3.client("s3", region_name="us-east-1")
    return json.loads(s3.get_object(Bucket="rcl-state", Key=key)["Body"].read())


def test_apply_writes_state_and_backup_to_s3(remote):
    assert run("apply", remote, "--auto-approve").exit_code == 0
    state = read("stacks/remote.json")
    assert "KmsProvider/main" in state["resources"] and state["serial"] >= 2
    assert read("stacks/remote.json.backup")["serial"] == state["serial"] - 1
    assert not (remote / ".reconciler").exists()
    assert run("plan", remote, "--detailed-exitcode").exit_code == 0
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="rcl-state")
    assert "stacks/remote.json.lock" not in {o["Key"] for o in listing["Contents"]}  # released


def test_held_lock_names_its_holder_and_unlock_breaks_it(remote):
    backend = engine.open_stack(remote).backend
    with backend.lock("apply") as lock_id:
        result = run("apply", remote, "--auto-approve")
        assert result.exit_code == 1
        assert "locked by PID" in result.output and lock_id in result.output
        assert "Traceback" not in result.output
    # a crashed run leaves its lock object behind: state unlock ID breaks it
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket="rcl-state", Key="stacks/remote.json.lock",
        Body=json.dumps({"id": "dead-run", "pid": 1, "host": "ci", "since": "2026-01-01T00:00:00+00:00"}))
    assert run("apply", remote, "--auto-approve").exit_code == 1
    wrong = run("state", "unlock", "other-id", "--dir", remote)
    assert wrong.exit_code == 1 and "does not match" in wrong.output
    assert run("state", "unlock", "dead-run", "--dir", remote).exit_code == 0
    assert run("apply", remote, "--auto-approve").exit_code == 0


def test_conditional_write_refuses_a_concurrent_change(remote):
    assert run("apply", remote, "--auto-approve").exit_code == 0
    backend = engine.open_stack(remote).backend
    with backend.lock("apply"):
        state = backend.read()
        s3 = boto3.client("s3", region_name="us-east-1")
        body = s3.get_object(Bucket="rcl-state", Key="stacks/remote.json")["Body"].read()
        s3.put_object(Bucket="rcl-state", Key="stacks/remote.json", Body=body + b" ")  # someone else
        backend.objects.get = _stale(backend.objects.get, body)
        with pytest.raises(errors.StateError, match="state was changed by someone else during this run"):
            backend.write(state)


def _stale(get, body):
    """Serve the first read from before the concurrent write, as a racing reader would see it."""
    calls = []

    def first_stale(key):
        calls.append(key)
        found = get(key)
        if key.endswith(".json") and len(calls) == 1 and found:
            return body, '"stale-etag"'
        return found
    return first_stale


def test_saved_plan_is_stale_against_remote_state(remote, tmp_path):
    planfile = tmp_path / "p.plan"
    assert run("plan", remote, "--out", planfile).exit_code == 0
    assert run("apply", remote, "--auto-approve").exit_code == 0
    stale = run("apply", planfile, "--auto-approve")
    assert stale.exit_code == 1 and "stale" in stale.output

"""Issue 12, state for teams: the S3 backend locked by a DynamoDB table in
Terraform's layout (hash key LockID = <bucket>/<key>, the holder in Info),
taken with a conditional put; two applies from two processes, a stale lock
broken by `state unlock ID`, a release or unlock that never deletes a lock
another run took."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time

import boto3
import pytest

from tests.aws.test_i6_keys_quota import inject  # noqa: F401  (fixture)
from tests.conftest import run

TABLE = "rcl-locks"
LOCK_ID = "rcl-state/stacks/team.json"
TERRAFORM_FIELDS = {"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}

STACK = textwrap.dedent(f"""\
    apiVersion: reconciler/v1
    kind: Stack
    metadata: {{name: team}}
    spec:
      region: us-east-1
      backend:
        s3: {{bucket: rcl-state, key: stacks/team.json, lockTable: {TABLE}}}
    """)
KEY = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: main}
    spec: {description: team key, protect: false, deletionWindowDays: 7}
    """)
DEAD = {"ID": "dead-run", "Operation": "apply", "Info": "pid 4242", "Who": "ci@runner-7",
        "Version": "reconciler 0.1.0", "Created": "2026-01-01T00:00:00+00:00", "Path": LOCK_ID}


def dynamodb():
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture()
def team(aws, stack):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-state")
    dynamodb().create_table(TableName=TABLE, KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
    return stack({"stack.yaml": STACK, "key.yaml": KEY}, with_stack=False)


def lock_item() -> dict | None:
    item = dynamodb().get_item(TableName=TABLE, Key={"LockID": {"S": LOCK_ID}}, ConsistentRead=True).get("Item")
    return {k: v["S"] for k, v in item.items()} if item else None


def put_lock(info: dict) -> None:
    dynamodb().put_item(TableName=TABLE, Item={"LockID": {"S": LOCK_ID}, "Info": {"S": json.dumps(info)}})


def s3_keys() -> set[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="rcl-state")
    return {o["Key"] for o in listing.get("Contents", [])}


class Terminal:
    """The real CLI in its own process on a pseudo-terminal (so apply asks
    before applying, holding the lock while it waits)."""

    def __init__(self, *args: str) -> None:
        self.controller, worker = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        self.process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], stdin=worker,
                                        stdout=worker, stderr=worker, env=env, close_fds=True)
        os.close(worker)
        self.seen = b""

    def wait_for(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline and self.process.poll() is None, self.seen.decode(errors="replace")
            ready, _, _ = select.select([self.controller], [], [], 0.5)
            if ready:
                try:
                    self.seen += os.read(self.controller, 4096)
                except OSError:
                    pass

    def answer(self, text: bytes) -> tuple[int, str]:
        os.write(self.controller, text)
        deadline = time.monotonic() + 60
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.controller], [], [], 0.5)
            if ready:
                try:
                    self.seen += os.read(self.controller, 4096)
                except OSError:
                    break
        if self.process.poll() is None:
            self.process.kill()  # stuck: fail, never hang
        code = self.process.wait(timeout=30)
        os.close(self.controller)
        return code, self.seen.decode(errors="replace")


def test_two_applies_from_two_processes_one_wins_the_other_names_the_holder(team):
    first = Terminal("apply", str(team))
    first.wait_for(b"Apply these changes?")  # planned, holding the lock, asking
    item = lock_item()
    assert item is not None and set(item) == {"LockID", "Info"}
    info = json.loads(item["Info"])
    assert set(info) == TERRAFORM_FIELDS  # what Terraform's S3 backend writes
    assert info["Path"] == LOCK_ID and info["Operation"] == "apply" and info["Info"] == f"pid {first.process.pid}"

    second = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", str(team), "--auto-approve"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    (line,) = second.stderr.splitlines()
    assert line.startswith(f"Error: state s3://rcl-state/stacks/team.json (lock table {TABLE}, LockID {LOCK_ID}) "
                           f"is locked by PID {first.process.pid} on ")
    assert re.search(r"since \S+ \(\d+s ago\), running apply \(lock ID " + re.escape(info["ID"]) + r"\)", line)
    assert "Traceback" not in second.stderr and "KmsProvider/main" not in second.stdout  # refused before planning

    code, output = first.answer(b"y\n")
    assert code == 0, output
    assert "Apply complete: 1 create" in output
    assert lock_item() is None  # released
    assert s3_keys() == {"stacks/team.json", "stacks/team.json.backup"}  # never a lock object
    assert run("plan", team, "--detailed-exitcode").exit_code == 0


def test_state_unlock_breaks_a_stale_table_lock(team):
    put_lock(DEAD)  # a run that crashed holding the lock
    held = run("apply", team, "--auto-approve")
    assert held.exit_code == 1
    assert ("is locked by PID 4242 on runner-7 since 2026-01-01T00:00:00+00:00 (" in held.output
            and "running apply (lock ID dead-run)" in held.output)
    wrong = run("state", "unlock", "other-id", "--dir", team)
    assert wrong.exit_code == 1
    assert (f"Error: lock ID other-id does not match the lock on s3://rcl-state/stacks/team.json (lock table "
            f"{TABLE}, LockID {LOCK_ID}) (held by PID 4242") in wrong.output
    assert lock_item() is not None
    broken = run("state", "unlock", "dead-run", "--dir", team)
    assert broken.exit_code == 0, broken.output
    assert f"Lock dead-run on s3://rcl-state/stacks/team.json (lock table {TABLE}, LockID {LOCK_ID}) released." \
        in broken.output
    assert lock_item() is None
    again = run("state", "unlock", "dead-run", "--dir", team)
    assert again.exit_code == 1 and "is not locked" in again.output


def item_taken_before_delete(seen):
    """Before our DeleteItem reaches DynamoDB, another run takes the lock (it
    broke ours as stale and locked it)."""
    def handler(request, **_kwargs):
        if not seen:
            seen.append(json.loads(request.body)["ConditionExpression"])
            put_lock({**DEAD, "ID": "other-run", "Who": "ci@runner-9"})
    return handler


def test_release_and_unlock_never_delete_a_lock_another_run_took(team, inject):
    seen: list = []
    inject("before-send.dynamodb.DeleteItem", item_taken_before_delete(seen))
    applied = run("apply", team, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert seen == ["#info = :seen"]  # the release was conditional
    assert json.loads(lock_item()["Info"])["ID"] == "other-run"  # and left the other run's lock

    put_lock(DEAD)
    seen.clear()
    refused = run("state", "unlock", "dead-run", "--dir", team)
    assert refused.exit_code == 1
    assert ("the lock on s3://rcl-state/stacks/team.json changed while unlocking (lock ID dead-run was "
            "released or taken over); nothing was deleted") in refused.output
    assert json.loads(lock_item()["Info"])["ID"] == "other-run"


def test_a_missing_lock_table_is_a_clear_error_and_changes_nothing(aws, stack):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-state")
    directory = stack({"stack.yaml": STACK, "key.yaml": KEY}, with_stack=False)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"Error: lock table {TABLE} does not exist in us-east-1")
    assert "AttributeName=LockID,AttributeType=S" in line and "KeyType=HASH" in line
    assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == []
    assert s3_keys() == set()


def test_policy_grants_the_lock_item_not_a_lock_object(team):
    result = run("policy", team)
    assert result.exit_code == 0, result.output
    statements = json.loads(result.stdout)["Statement"]
    (table,) = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    assert table == {"Effect": "Allow", "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"],
                     "Resource": [f"arn:aws:dynamodb:us-east-1:*:table/{TABLE}"],
                     "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": LOCK_ID}}}
    (objects,) = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert objects["Resource"] == ["arn:aws:s3:::rcl-state/stacks/team.json",
                                   "arn:aws:s3:::rcl-state/stacks/team.json.backup"]

"""Issue 6 item 27: the S3 state lock is released with If-Match on its ETag,
so a run never deletes a lock that another run holds."""

from __future__ import annotations

import json

import boto3

from tests.aws.test_i6_keys_quota import inject  # noqa: F401  (fixture)
from tests.aws.test_s3_backend import STACK, remote  # noqa: F401  (fixture)
from tests.conftest import run

LOCK = "stacks/remote.json.lock"
OTHER = {"id": "other-run", "pid": 4242, "host": "ci-2", "since": "2026-01-01T00:00:00+00:00",
         "operation": "apply"}


def lock_taken_before_delete(event_log):
    """Before our DeleteObject of the lock reaches S3, another run takes the lock
    (its holder broke ours as stale with `state unlock` and locked it)."""
    def handler(request, **_kwargs):
        if request.url.split("?")[0].endswith("/" + LOCK) and not event_log:
            event_log.append(request.headers.get("If-Match"))
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.put_object(Bucket="rcl-state", Key=LOCK, Body=json.dumps(OTHER).encode())
    return handler


def holder() -> dict:
    s3 = boto3.client("s3", region_name="us-east-1")
    return json.loads(s3.get_object(Bucket="rcl-state", Key=LOCK)["Body"].read())


def test_release_never_deletes_a_lock_taken_by_another_run(remote, inject):
    seen: list = []
    inject("before-send.s3.DeleteObject", lock_taken_before_delete(seen))
    result = run("apply", remote, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0]  # the release was conditional (If-Match)
    assert holder() == OTHER  # the other run's lock survived our release


def test_release_deletes_our_own_lock(remote):
    assert run("apply", remote, "--auto-approve").exit_code == 0
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="rcl-state")
    assert LOCK not in {o["Key"] for o in listing["Contents"]}


def test_unlock_never_deletes_a_lock_that_changed_meanwhile(remote, inject):
    s3 = boto3.client("s3", region_name="us-east-1")
    dead = {"id": "dead-run", "pid": 1, "host": "ci", "since": "2026-01-01T00:00:00+00:00"}
    s3.put_object(Bucket="rcl-state", Key=LOCK, Body=json.dumps(dead).encode())
    seen: list = []
    inject("before-send.s3.DeleteObject", lock_taken_before_delete(seen))
    result = run("state", "unlock", "dead-run", "--dir", remote)
    assert result.exit_code == 1
    assert ("the lock on s3://rcl-state/stacks/remote.json changed while unlocking (lock ID dead-run "
            "was released or taken over); nothing was deleted") in result.output
    assert holder() == OTHER

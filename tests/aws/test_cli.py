"""CLI options: formats, --target, --no-refresh, state commands, sandbox."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC, key_id
from tests.conftest import run

SECOND = SYMMETRIC.replace("name: main", "name: second").replace("team/main", "team/second")


def test_plan_formats(aws, stack):
    directory = stack({"a.yaml": SYMMETRIC})
    data = json.loads(run("plan", directory, "--format", "json").output)
    assert data["hasChanges"] is True and data["summary"]["create"] == 1
    (change,) = data["changes"]
    assert change["action"] == "create" and change["after"]["alias"] == "alias/team/main"
    markdown = run("plan", directory, "--format", "markdown").output
    assert "| `+` create | `KmsProvider/main` |" in markdown


def test_target_plans_and_applies_only_the_target(aws, stack):
    directory = stack({"a.yaml": SYMMETRIC, "b.yaml": SECOND})
    plan = run("plan", directory, "--target", "KmsProvider/second")
    assert "KmsProvider/second" in plan.output and "KmsProvider/main" not in plan.output
    assert run("apply", directory, "--auto-approve", "--target", "KmsProvider/second").exit_code == 0
    assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1
    bad = run("plan", directory, "--target", "KmsProvider/nope")
    assert bad.exit_code == 1 and "no such resource" in bad.output


def test_no_refresh_trusts_state_and_makes_no_calls(aws, stack, calls):
    directory = stack({"a.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    boto3.client("kms", region_name="us-east-1").disable_key(KeyId=key_id(directory))
    calls.clear()
    assert run("plan", directory, "--no-refresh", "--detailed-exitcode").exit_code == 0
    assert calls.calls == []
    assert run("plan", directory, "--detailed-exitcode").exit_code == 2


def test_state_list_and_show(aws, stack):
    directory = stack({"a.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    listed = run("state", "list", directory).output
    assert listed.startswith("KmsProvider/main\tmanaged\tarn:aws:kms:us-east-1:123456789012:key/")
    shown = json.loads(run("state", "show", "KmsProvider/main", "--dir", directory).output)
    assert shown["ids"]["keyId"] == key_id(directory)
    missing = run("state", "show", "KmsProvider/nope", "--dir", directory)
    assert missing.exit_code == 1 and "not in state" in missing.output


def test_sandbox_background_start_and_stop(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pid_file = tmp_path / "sandbox.pid"
    cli = [sys.executable, "-m", "reconciler.cli", "sandbox", "--port", str(port), "--pid-file", str(pid_file)]
    started = subprocess.run([*cli, "--background"], capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in started.stdout
        kms = boto3.client("kms", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        key = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        kms.replicate_key(KeyId=key, ReplicaRegion="us-west-2")
        # the fidelity layer is active in the background server too
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["MultiRegionConfiguration"][
            "MultiRegionKeyType"] == "PRIMARY"
    finally:
        stopped = subprocess.run([*cli, "--stop"], capture_output=True, text=True, timeout=30)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not pid_file.exists()


def test_sandbox_on_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "reconciler.cli", "sandbox", "--port", str(port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: 127.0.0.1:{port} is already in use; pick another --port"

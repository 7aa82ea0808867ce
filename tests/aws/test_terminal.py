"""apply on a terminal asks before changing anything (driven through a pty)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC


def _drive(directory, answer: bytes) -> tuple[int, str]:
    controller, worker = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", str(directory)],
                               stdin=worker, stdout=worker, stderr=worker, env=env, close_fds=True)
    os.close(worker)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"Apply these changes?" in seen:
            os.write(controller, answer)
            answered = True
    code = process.wait(timeout=60)
    os.close(controller)
    return code, seen.decode(errors="replace")


def test_terminal_apply_asks_and_a_no_changes_nothing(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    code, output = _drive(directory, b"n\n")
    assert "Apply these changes?" in output and code == 1
    assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == []
    code, output = _drive(directory, b"y\n")
    assert code == 0, output
    assert "Apply complete: 1 create" in output
    assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1

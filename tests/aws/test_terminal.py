"""apply on a terminal asks before changing anything (driven through a pty)."""

from __future__ import annotations

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import converse


def _drive(directory, answer: bytes) -> tuple[int, str]:
    return converse(["apply", str(directory)], [(b"Apply these changes? [y/N]:", answer)])


def test_terminal_apply_asks_and_a_no_changes_nothing(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    code, output = _drive(directory, b"n\n")
    assert "Apply these changes?" in output and code == 1
    assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == []
    code, output = _drive(directory, b"y\n")
    assert code == 0, output
    assert "Apply complete: 1 create" in output
    assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1

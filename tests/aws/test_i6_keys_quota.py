"""Issue 6 item 23: a KMS LimitExceededException is a quota, not throttling."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from reconciler.aws import session
from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


def json_error(code: str, message: str):
    """A before-send handler answering every call with the AWS JSON error ``code``."""
    def handler(request, **_kwargs):
        raw = json.dumps({"__type": code, "message": message}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(raw))
    return handler


class Injector:
    """inject(event, handler): a botocore hook on clients created from now on;
    inject.clear() removes every hook it added (the fixture does at the end)."""

    def __init__(self) -> None:
        self.added: list = []

    def __call__(self, event, handler) -> None:
        session.register_hook(event, handler)
        self.added.append((event, handler))

    def clear(self) -> None:
        for event, handler in self.added:
            session.unregister_hook(event, handler)
        self.added.clear()


@pytest.fixture()
def inject():
    injector = Injector()
    yield injector
    injector.clear()


def test_kms_limit_exceeded_is_reported_as_a_quota_not_throttling(aws, stack, inject, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    inject("before-send.kms.CreateKey",
           json_error("LimitExceededException", "Limit exceeded: Customer managed keys per Region"))
    directory = stack({"key.yaml": SYMMETRIC})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert ("kms:CreateKey failed: an AWS service quota is exhausted (LimitExceededException): "
            "Limit exceeded: Customer managed keys per Region. This is a quota, not throttling, "
            "so retrying will not help") in line
    assert "schedule deletion of unused keys" in line
    assert "aws service-quotas list-service-quotas --service-code kms" in line
    assert "throttled" not in line and "retry later" not in line
    assert "Traceback" not in result.output

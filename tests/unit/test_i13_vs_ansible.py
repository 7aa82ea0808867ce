"""Issue 13 item 4: bench/vs_ansible.py's counting, so that its figures cannot silently break. The
requests are botocore's own, caught before they are sent (no server, no network, no Ansible)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import urllib.parse
from types import ModuleType
from typing import Any

import boto3
import pytest
from werkzeug.test import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vs_ansible", ROOT / "bench" / "vs_ansible.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vs_ansible", module)
    spec.loader.exec_module(module)
    return module


class _Caught(Exception):
    pass


def wire(service: str, operation: str, **params: Any) -> tuple[str, str, str, dict[str, str], bytes]:
    """What botocore would send for one call: method, path, query, headers, body."""
    client = boto3.client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    seen: list[Any] = []

    def catch(request: Any, **_: Any) -> None:
        seen.append(request)
        raise _Caught

    client.meta.events.register("before-send", catch)
    with pytest.raises(_Caught):
        getattr(client, operation)(**params)
    request = seen[0]
    url = urllib.parse.urlsplit(request.url)
    body = request.body or b""
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return (request.method, url.path, url.query, headers,
            body.encode() if isinstance(body, str) else body)


@pytest.mark.parametrize(("service", "call", "params", "expected"), [
    ("kms", "create_key", {}, ("kms", "CreateKey")),
    ("kms", "generate_data_key", {"KeyId": "k", "KeySpec": "AES_256"}, ("kms", "GenerateDataKey")),
    ("iam", "create_user", {"UserName": "u"}, ("iam", "CreateUser")),
    ("iam", "list_access_keys", {"UserName": "u"}, ("iam", "ListAccessKeys")),
    ("sts", "get_caller_identity", {}, ("sts", "GetCallerIdentity")),
    ("secretsmanager", "put_secret_value", {"SecretId": "s", "SecretString": "v"},
     ("secretsmanager", "PutSecretValue")),
    ("resourcegroupstaggingapi", "get_resources", {}, ("tagging", "GetResources")),
    ("s3", "get_object", {"Bucket": "b", "Key": "k"}, ("s3", "GET")),
    ("s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"x"}, ("s3", "PUT")),
])
def test_operation_of_botocore_requests(bench, service, call, params, expected):
    assert bench.operation_of(*wire(service, call, **params)) == expected


def test_moto_api_is_no_aws_call(bench):
    assert bench.operation_of("POST", "/moto-api/reset", "", {}, b"") is None


@pytest.mark.parametrize(("operation", "write"), [
    ("CreateKey", True), ("EnableKeyRotation", True), ("TagResource", True), ("PutSecretValue", True),
    ("UpdateAccessKey", True), ("CreateSecret", True), ("PUT", True), ("DELETE", True),
    ("DescribeKey", False), ("ListAliases", False), ("GetSecretValue", False), ("GetCallerIdentity", False),
    ("GenerateDataKey", False), ("Decrypt", False), ("AssumeRole", False), ("BatchGetSecretValue", False),
    ("GET", False), ("HEAD", False),
])
def test_read_or_write(bench, operation, write):
    assert bench.is_write(operation) is write


def test_counting_counts_by_operation_and_passes_the_body_on(bench):
    bodies: list[bytes] = []

    def app(environ, start_response):
        bodies.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    counting = bench.Counting(app)
    client = Client(counting)
    for service, call, params in [("iam", "create_user", {"UserName": "u"}),
                                  ("iam", "create_user", {"UserName": "v"}), ("kms", "list_aliases", {})]:
        method, path, query, headers, body = wire(service, call, **params)
        client.open(path, method=method, query_string=query, headers=headers, data=body)
    client.post("/moto-api/reset")
    assert bodies[0] == wire("iam", "create_user", UserName="u")[4]
    assert counting.take() == {"iam:CreateUser": 2, "kms:ListAliases": 1}
    assert counting.take() == {}


def test_changed_items_counts_loop_items(bench):
    report = {"plays": [{"tasks": [
        {"task": {"name": "keys"}, "hosts": {"localhost": {"changed": True, "results": [
            {"changed": True}, {"changed": False}, {"changed": True}]}}},
        {"task": {"name": "one"}, "hosts": {"localhost": {"changed": True}}},
        {"task": {"name": "same"}, "hosts": {"localhost": {"changed": False}}}]}]}
    assert bench.changed_items(report) == 3

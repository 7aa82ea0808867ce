"""Issue 11 item 5: throttling costs what it must, no more.

Throttling is injected on the client, inside botocore's retry loop (a
``before-send`` hook answering an attempt with AWS's throttling error), for a
seeded random share of every attempt of every service. The backoff base is
made tiny so the test runs in seconds; the real figures (wall time, the
throttled/unthrottled ratio) are bench/throttling.py's, never timed here.
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time

import boto3
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse

from reconciler import refresh
from reconciler.aws import session
from tests.conftest import run, state_of

JSON_SERVICES = {"kms", "secrets-manager", "ssm", "dynamodb", "resource-groups-tagging-api"}  # before-send names use the hyphenated service id
WRITE_PREFIXES = ("Create", "Put", "Update", "Tag", "Enable", "Attach", "Schedule", "Delete")

STACK = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: vault-key}
spec: {}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: v}
spec:
  provider: vault-key
  default: true
  store: {secretsmanager: {prefix: thr/}}
---
apiVersion: reconciler/v1
kind: IamRole
metadata: {name: partner}
spec:
  trust:
    awsAccount:
      principal: arn:aws:iam::749452252575:root
      externalId: partner-1234
"""


def manifests(keys: int = 4, secrets: int = 4) -> dict[str, str]:
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\n"
            f"spec: {{alias: thr/key-{i}, tags: {{n: '{i}'}}}}\n" for i in range(keys)]
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
             for i in range(secrets)]
    return {"base.yaml": STACK, "many.yaml": "---\n".join(docs)}


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


class Throttle:
    """A before-send hook: every attempt counted (per service, per call by its
    amz-sdk-invocation-id), a seeded random ``rate`` of them throttled the
    way AWS throttles (JSON or XML by protocol)."""

    def __init__(self, rate: float, seed: int = 11) -> None:
        self.lock = threading.Lock()
        self.rate, self.random = rate, random.Random(seed)
        self.after_first_write = False  # throttle nothing until the first write, then everything
        self.attempts: collections.Counter[str] = collections.Counter()
        self.per_call: collections.Counter[str] = collections.Counter()
        self.throttled = 0
        self.in_flight = self.most_in_flight = 0
        self.hold = 0.0  # seconds each attempt stays in flight (to see concurrency)

    def __call__(self, request, event_name: str = "", **_kwargs):
        _, service, operation = event_name.split(".")
        with self.lock:
            self.attempts[service] += 1
            self.per_call[request.headers.get("amz-sdk-invocation-id", b"").decode() or event_name] += 1
            if self.after_first_write and operation.startswith(WRITE_PREFIXES):
                self.rate, self.after_first_write = 1.0, False
            throttle = self.rate >= 1.0 or (self.rate > 0 and self.random.random() < self.rate)
            self.throttled += throttle
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold:
                time.sleep(self.hold)
        finally:
            with self.lock:
                self.in_flight -= 1
        if not throttle:
            return None
        if service in JSON_SERVICES:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded"
                b"</Message></Error><RequestId>t</RequestId></ErrorResponse>")
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Raw(body))

    @property
    def total(self) -> int:
        return sum(self.attempts.values())


@pytest.fixture()
def throttle(aws, monkeypatch):
    """throttle(rate): start throttling; backoff made tiny (milliseconds) for the test."""
    monkeypatch.setattr(session, "THROTTLE_BASE_DELAY", 0.001)
    monkeypatch.setattr(session, "MAX_BACKOFF", 0.05)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    hooks: list[Throttle] = []

    def start(rate: float, seed: int = 11) -> Throttle:
        hook = Throttle(rate, seed)
        session.register_hook("before-send", hook)
        hooks.append(hook)
        return hook

    yield start
    for hook in hooks:
        session.unregister_hook("before-send", hook)


def calls_by_service(calls) -> collections.Counter[str]:
    names = {"secretsmanager": "secrets-manager"}
    return collections.Counter(names.get(service, service) for service, _, _ in calls.calls)


def live(region: str = "us-east-1") -> tuple[list, list, list]:
    keys = boto3.client("kms", region_name=region).list_keys()["Keys"]
    secrets = boto3.client("secretsmanager", region_name=region).list_secrets()["SecretList"]
    roles = [r for r in boto3.client("iam").list_roles()["Roles"] if r["RoleName"].startswith("partner")
             or "test" in r["RoleName"]]
    return keys, secrets, roles


def test_apply_converges_with_30_percent_of_attempts_throttled(stack, throttle, calls):
    directory = stack(manifests())
    hook = throttle(0.3)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    made = len(calls.calls)
    # Bounded attempts. Each throttled attempt is retried exactly once and nothing else is: no
    # client-side pacing, no retry of a success, no call given up (0.3**8 per call).
    assert hook.throttled > 0
    assert hook.total == made + hook.throttled
    assert max(hook.per_call.values()) <= session.MAX_ATTEMPTS
    assert hook.total <= 2 * made  # 1/0.7 = 1.43 expected
    # converged: still throttled, the next plan is clean
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    keys, secrets, roles = live()
    assert len(keys) == 5 and len(secrets) == 4 and len(roles) == 1


def test_apply_with_every_attempt_throttled_fails_clearly_within_the_retry_budget(stack, throttle, calls):
    directory = stack(manifests())
    hook = throttle(1.0)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "was throttled by AWS (" in line and "and still failed after" in line and "retry later" in line
    assert "\n" not in line
    # Bounded attempts: every call makes at most MAX_ATTEMPTS; and all of a service's calls share
    # one retry budget (RETRY_BUDGET, a throttled retry costs 5, nothing succeeds to give any back),
    # so a service's retries are at most RETRY_BUDGET / 5 however many calls are made.
    assert max(hook.per_call.values()) <= session.MAX_ATTEMPTS
    made = calls_by_service(calls)
    for service, attempts in hook.attempts.items():
        assert attempts - made[service] <= session.RETRY_BUDGET // 5, (service, attempts, made[service])
    # nothing half-changed: nothing made, nothing recorded
    assert live() == ([], [], [])
    state = directory / ".reconciler" / "state.json"
    if state.exists():
        recorded = state_of(directory)
        assert recorded["resources"] == {} and recorded["journal"] == []


def test_throttled_from_the_first_write_on_changes_nothing(stack, throttle, calls):
    """The plan gets through; AWS then throttles everything: apply stops at
    its first change, within the budget, with nothing made and nothing left open."""
    directory = stack(manifests())
    hook = throttle(0.0)
    hook.after_first_write = True
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "was throttled by AWS (" in line and "0 of " in line and "changes were applied" in line
    assert max(hook.per_call.values()) <= session.MAX_ATTEMPTS
    assert live() == ([], [], [])
    recorded = state_of(directory)
    assert recorded["resources"] == {} and recorded["deposed"] == {}
    assert all(entry.get("status") != "open" for entry in recorded["journal"]), recorded["journal"]
    hook.rate = 0.0  # AWS recovers: the next apply makes everything, once
    again = run("apply", directory, "--auto-approve")
    assert again.exit_code == 0, again.output
    keys, secrets, roles = live()
    assert len(keys) == 5 and len(secrets) == 4 and len(roles) == 1
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_clients_of_one_service_and_region_share_one_retry_budget(aws):
    factory = session.ClientFactory()
    kms = factory.client("kms", "us-east-1", None)
    other_auth = factory.client("kms", "us-east-1", {"defaultChain": {"profile": None}})
    assert kms is not other_auth  # one client per auth, as before
    assert factory.budget("kms", "us-east-1") is factory.budget("kms", "us-east-1")
    assert factory.budget("kms", "us-east-1") is not factory.budget("kms", "us-west-2")
    assert factory.budget("kms", "us-east-1") is not factory.budget("secretsmanager", "us-east-1")
    assert kms.meta.config.retries == {"mode": "standard", "total_max_attempts": session.MAX_ATTEMPTS}


def test_one_budget_spent_by_one_client_is_spent_for_the_others(aws, throttle):
    hook = throttle(1.0)
    factory = session.ClientFactory()
    first = factory.client("kms", "us-east-1", None)
    second = factory.client("kms", "us-east-1", {"defaultChain": {"profile": None}})
    failures = 0
    for _ in range(session.RETRY_BUDGET // (5 * (session.MAX_ATTEMPTS - 1))):
        with pytest.raises(botocore.exceptions.ClientError, match="ThrottlingException"):
            first.list_keys()
        failures += 1
    spent = hook.total
    assert spent == failures * session.MAX_ATTEMPTS  # full retries while the budget lasts
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError, match="ThrottlingException") as caught:
            second.list_keys()
    # what is left of the budget (250 - 7*35 = 5: one retry) then one attempt per call
    assert hook.total - spent <= 3 + 2
    metadata = caught.value.response["ResponseMetadata"]  # type: ignore[attr-defined]
    assert metadata.get("RetryQuotaReached") is True
    from reconciler.aws import errors as aws_errors
    message = aws_errors.translate(caught.value, "kms", "ListKeys").message
    assert message.startswith("kms:ListKeys was throttled by AWS (ThrottlingException) and still failed after 1 "
                              "attempt: so many kms calls were throttled in this run that its retry budget")


def test_throttled_retries_back_off_from_the_small_base():
    class Throttling:
        def is_throttling_error_from_context(self, _context):
            return True

    class Context:
        http_response = None

        def __init__(self, attempt: int) -> None:
            self.attempt_number = attempt

    session._boto()
    backoff = session._backoff()(throttling_base=0.05, max_backoff=20, random=lambda: 1.0,
                                 throttling_detector=Throttling())
    assert [backoff.delay_amount(Context(n)) for n in (1, 2, 3, 7, 12)] == [0.05, 0.1, 0.2, 3.2, 20]


def test_parallelism_bounds_the_calls_in_flight(stack, throttle, monkeypatch):
    directory = stack(manifests(keys=8, secrets=0))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    hook = throttle(0.0)
    hook.hold = 0.02
    monkeypatch.setattr(refresh, "PARALLELISM", 3)  # the default, until the CLI passes --parallelism down
    flag = ["--parallelism", "3"] if "--parallelism" in run("plan", "--help").output else []
    assert run("plan", directory, "--detailed-exitcode", *flag).exit_code == 0
    assert 1 < hook.most_in_flight <= 3
    if flag:
        hook.most_in_flight = 0
        assert run("drift", directory, "--parallelism", "1").exit_code == 0
        assert hook.most_in_flight == 1
    assert refresh.workers(None) == 3 and refresh.workers(1) == 1 and refresh.workers(10_000) == session.MAX_PARALLELISM

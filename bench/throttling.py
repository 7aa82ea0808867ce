"""Throttling (issue 11 item 5): what a throttled apply costs.

    python bench/throttling.py [--keys N] [--secrets M] [--rate R] [--seed S] [--parallelism P]

Starts the sandbox in-process and applies, each time from scratch (sandbox
reset, empty state), a stack of N KMS keys (with aliases) and a Secrets
Manager vault holding M generated secrets:

1. unthrottled;
2. with a botocore ``before-send`` hook answering a random R of all attempts
   (seeded) with a throttling error, as AWS would (JSON ThrottlingException
   for JSON protocols, XML Throttling for query/REST-XML ones); the hook sits
   inside botocore's retry loop, so every retry is an attempt again and may be
   throttled again; then an unthrottled plan must be clean;
3. with every attempt throttled: apply must fail with one clear error line
   within a bounded time, having created nothing.

The backoff sleeping is real (this is a bench): wall time includes it. For
each run: wall time, attempts (``before-send`` invocations, retries
included), calls (API calls as the code makes them, once per call), the
throttled attempts, and at the end the throttled/unthrottled time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from botocore.awsrequest import AWSResponse  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.aws import session  # noqa: E402
from reconciler.sandbox import server  # noqa: E402

JSON_SERVICES = {"kms", "secrets-manager", "ssm", "dynamodb", "resource-groups-tagging-api"}  # event names use the hyphenated service id


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


class Throttle:
    """A before-send hook: counts every attempt, throttles a seeded random ``rate`` of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rate = 0.0
        self.random = random.Random(0)
        self.attempts = 0
        self.throttled = 0
        self.calls = 0

    def reset(self, rate: float, seed: int) -> None:
        with self.lock:
            self.rate, self.random = rate, random.Random(seed)
            self.attempts = self.throttled = self.calls = 0

    def call(self, _service: str, _operation: str, _region: str | None) -> None:
        with self.lock:
            self.calls += 1

    def __call__(self, request, event_name: str = "", **_kwargs):
        service = event_name.split(".")[1] if event_name.count(".") >= 2 else ""
        with self.lock:
            self.attempts += 1
            if not (self.rate and self.random.random() < self.rate):
                return None
            self.throttled += 1
        if service in JSON_SERVICES:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.1"}
        else:
            body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                    b"<Message>Rate exceeded</Message></Error><RequestId>bench</RequestId></ErrorResponse>")
            headers = {"Content-Type": "text/xml"}
        return AWSResponse(request.url, 400, headers, _Raw(body))


def write_stack(stack: pathlib.Path, keys: int, secrets: int) -> None:
    (stack / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: bench}\n"
                                      "spec: {region: us-east-1}\n")
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: bench/key-{i}\n  tags: {{n: '{i}'}}\n" for i in range(keys)]
    docs.append("apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: vault-key}\nspec: {}\n")
    docs.append("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: vault-key\n"
                "  default: true\n  store: {secretsmanager: {prefix: bench/}}\n")
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
             for i in range(secrets)]
    (stack / "keys.yaml").write_text("---\n".join(docs))


def live_objects(endpoint: str) -> tuple[int, int]:
    """KMS keys and Secrets Manager secrets in the sandbox (read without the hook)."""
    import boto3

    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
    return len(kms.list_keys()["Keys"]), len(sm.list_secrets()["SecretList"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--parallelism", type=int, default=None,
                        help="passed to apply/plan as --parallelism (when the CLI has it)")
    args = parser.parse_args()
    moto = server.start(0)
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    throttle = Throttle()
    session.register_hook("before-send", throttle)
    session.add_call_listener(throttle.call)
    extra = ["--parallelism", str(args.parallelism)] if args.parallelism else []
    runner = CliRunner()
    print(f"{args.keys} keys with aliases, a Secrets Manager vault with {args.secrets} generated secrets; "
          f"seed {args.seed}")
    times: dict[str, float] = {}
    for label, rate in [("unthrottled", 0.0), (f"{args.rate:.0%} throttled", args.rate), ("100% throttled", 1.0)]:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
        with tempfile.TemporaryDirectory() as tmp:
            stack = pathlib.Path(tmp)
            write_stack(stack, args.keys, args.secrets)
            throttle.reset(rate, args.seed)
            started = time.perf_counter()
            result = runner.invoke(cli.main, ["apply", str(stack), "--auto-approve", *extra])
            elapsed = times[label] = time.perf_counter() - started
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            print(f"apply, {label:15s} {elapsed:7.2f}s  exit {result.exit_code}  {throttle.attempts:5d} attempts  "
                  f"{throttle.calls:5d} calls  {throttle.throttled:5d} throttled")
            if rate < 1.0:
                assert result.exit_code == 0, result.output[-2000:]
                throttle.reset(0.0, args.seed)
                after = runner.invoke(cli.main, ["plan", str(stack), "--detailed-exitcode", *extra])
                assert after.exit_code == 0, after.output
                print(f"    then plan: clean ({throttle.calls} calls)")
            else:
                assert result.exit_code == 1, result.output
                assert "Traceback" not in result.output, result.output
                keys, secrets = live_objects(endpoint)
                print(f"    {len(errors)} error line: {errors[0][:160] if errors else result.output[-300:]}")
                print(f"    live afterwards: {keys} KMS keys, {secrets} secrets")
    base = times["unthrottled"]
    print(f"ratio {args.rate:.0%} throttled / unthrottled: {times[f'{args.rate:.0%} throttled'] / base:.2f}x; "
          f"100% throttled fails after {times['100% throttled']:.1f}s")
    session.unregister_hook("before-send", throttle)
    moto.stop()


if __name__ == "__main__":
    main()

"""A no-op plan against the API-call floor (issue 13 item 1).

    python bench/refresh_floor.py [--n N] [--page-size P] [--sandbox process|thread]

Starts the sandbox (by default in a process of its own, as `reconciler
sandbox` runs it: the tool and moto each get a core; ``thread`` shares this
process's GIL with the tool), applies N symmetric KMS keys (alias,
description, tags, rotation) and N generated secrets in a Secrets Manager
vault (under the first key), then runs a no-op plan and prints its calls by
operation, the lower bound of calls for a consistent full refresh, their
ratio, and the wall time. The bound: what cannot be listed, per object
(DescribeKey and GetKeyRotationStatus per key), plus one page per 100 of
what can (ListAliases per region, the keys' tags by the Resource Groups
Tagging API, ListSecrets for the secrets' current version ids). On the
sandbox wall time is mostly API calls: compare the counts. The setup apply
runs with AWS's request quotas lifted (RECONCILER_REQUEST_QUOTAS): under
CreateKey's 5/s, 1,000 keys alone take 200 s, and the apply is not what is
measured here (bench/parallel_apply.py is).

Issue 13's target: N=1,000 (2,001 resources), the no-op plan under 5 s.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.aws import quotas, session  # noqa: E402
from reconciler.sandbox import server  # noqa: E402

PAGE = 100  # the largest page of ListAliases, GetResources and ListSecrets


def write_stack(directory: pathlib.Path, n: int) -> None:
    (directory / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: bench}\n"
                                          "spec: {region: us-east-1}\n")
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: bench/key-{i}\n  description: key {i}\n  tags: {{n: '{i}'}}\n"
            "  rotation: {enabled: true}\n" for i in range(n)]
    docs.append("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: key-0\n"
                "  default: true\n  store: {secretsmanager: {prefix: bench/}}\n")
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
             for i in range(n)]
    for start in range(0, len(docs), 100):  # at most 1,000 documents a file (loader.MAX_DOCUMENTS)
        (directory / f"resources-{start // 100:04d}.yaml").write_text("---\n".join(docs[start:start + 100]))


def lower_bound(keys: int, secrets: int, aliases: int, page: int) -> dict[str, int]:
    """The fewest calls a consistent full refresh of the stack can make, by operation."""
    return {"kms:DescribeKey": keys, "kms:GetKeyRotationStatus": keys,
            "kms:ListAliases": max(1, math.ceil(aliases / page)),
            "resourcegroupstaggingapi:GetResources": max(1, math.ceil(keys / page)),
            "secretsmanager:ListSecrets": max(1, math.ceil(secrets / page))}


def _sandbox_process() -> tuple[str, int, Callable[[], None]]:
    """The sandbox as `reconciler sandbox` runs it: its own process, on a free port."""
    with socket.socket() as probe:
        probe.bind((server.HOST, 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "reconciler.sandbox.server", "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not server._answering(port):
        if time.monotonic() > deadline or child.poll() is not None:
            child.kill()
            raise SystemExit("the sandbox did not start")
        time.sleep(0.1)

    def stop() -> None:
        child.terminate()
        child.wait(10)
    return server.HOST, port, stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="keys, and as many secrets")
    parser.add_argument("--page-size", type=int, default=0, help="list pages this small (RECONCILER_PAGE_SIZE)")
    parser.add_argument("--sandbox", choices=["process", "thread"], default="process")
    args = parser.parse_args()
    if args.sandbox == "thread":
        moto = server.start(0)
        host, port = moto.get_host_and_port()
        stop = moto.stop
    else:
        host, port, stop = _sandbox_process()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    if args.page_size:
        os.environ["RECONCILER_PAGE_SIZE"] = str(args.page_size)
    page = min(args.page_size or PAGE, PAGE)
    calls: collections.Counter[str] = collections.Counter()
    session.add_call_listener(lambda service, op, _region: calls.update([f"{service}:{op}"]))
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        stack = pathlib.Path(tmp)
        write_stack(stack, args.n)
        print(f"{args.n} symmetric keys (alias, description, tags, rotation) + {args.n} Secrets Manager "
              f"secrets, list pages of {page}")
        started = time.perf_counter()
        os.environ[quotas.ENV] = ",".join(f"{service}:{operation}=0" for service, operation in quotas.QUOTAS)
        result = runner.invoke(cli.main, ["apply", str(stack), "--auto-approve"])
        del os.environ[quotas.ENV]
        assert result.exit_code == 0, result.output
        print(f"apply (create, quotas lifted): {time.perf_counter() - started:.1f} s, {sum(calls.values())} calls")
        kms = boto3.client("kms", region_name="us-east-1")
        aliases = sum(len(p["Aliases"]) for p in kms.get_paginator("list_aliases").paginate())
        calls.clear()
        started = time.perf_counter()
        result = runner.invoke(cli.main, ["plan", str(stack), "--detailed-exitcode"])
        elapsed = time.perf_counter() - started
        assert result.exit_code == 0, result.output
    stop()
    bound = lower_bound(args.n, args.n, aliases, page)
    total, floor = sum(calls.values()), sum(bound.values())
    print(f"\nno-op plan: {elapsed:.2f} s, {total} calls for {2 * args.n + 1} resources "
          f"({total / (2 * args.n + 1):.2f} per resource)")
    print(f"{'operation':45s} {'calls':>7s} {'bound':>7s}")
    for op in sorted(set(calls) | set(bound)):
        print(f"{op:45s} {calls.get(op, 0):7d} {bound.get(op, 0):7d}")
    print(f"{'total':45s} {total:7d} {floor:7d}   ratio {total / floor:.3f} (at most 1.1 holds: "
          f"{'yes' if total <= 1.1 * floor else 'NO'})")


if __name__ == "__main__":
    main()

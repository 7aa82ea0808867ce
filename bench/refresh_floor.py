"""A no-op plan against the API-call floor (issue 13 item 1).

    python bench/refresh_floor.py [--n N] [--rotations R] [--oidc O] [--templates T --leases L]
                                  [--page-size P] [--sandbox process|thread]

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

The other kinds, each in a stack of its own (its own no-op plan, its bound
next to its count):
  --rotations R  R AccessKeyRotations (R users made by hand), their outputs in
                 a Secrets Manager vault under one key: ListAccessKeys per user
                 (IAM lists keys by user only), ListSecrets for the outputs'
                 current version ids (one page per 100), the key's four calls
  --oidc O       O OidcProviders: GetOpenIDConnectProvider each (the listing
                 has ARNs only)
  --templates T  T DynamicIamTemplates with L leases each (``lease create``):
                 GetAccountAuthorizationDetails for the account's users, one
                 page per 1,000, whatever the number of leases
A stack with N=0 is left out.

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
DETAILS_PAGE = 1000  # the largest page of GetAccountAuthorizationDetails
STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {{name: {name}}}\nspec: {{region: us-east-1}}\n"


def _write_docs(directory: pathlib.Path, name: str, docs: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stack.yaml").write_text(STACK.format(name=name))
    for start in range(0, len(docs), 100):  # at most 1,000 documents a file (loader.MAX_DOCUMENTS)
        (directory / f"resources-{start // 100:04d}.yaml").write_text("---\n".join(docs[start:start + 100]))


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


def write_rotations(directory: pathlib.Path, rotations: int) -> None:
    docs = ["apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: rotations-key}\n"
            "spec: {alias: bench/rotations}\n",
            "apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: rotations-key\n"
            "  default: true\n  store: {secretsmanager: {prefix: bench-rotations/}}\n"]
    docs += [f"apiVersion: reconciler/v1\nkind: AccessKeyRotation\nmetadata: {{name: r-{i}}}\nspec:\n"
             f"  userName: bench-user-{i}\n  interval: 30d\n  outputs:\n"
             f"    accessKeyId: {{secret: r-{i}-id}}\n    secretAccessKey: {{secret: r-{i}-secret}}\n"
             for i in range(rotations)]
    _write_docs(directory, "bench-rotations", docs)


def write_oidc(directory: pathlib.Path, providers: int) -> None:
    _write_docs(directory, "bench-oidc", [
        f"apiVersion: reconciler/v1\nkind: OidcProvider\nmetadata: {{name: idp-{i}}}\nspec:\n"
        f"  url: https://issuer-{i}.example.com\n  audiences: [sts.amazonaws.com]\n  tags: {{n: '{i}'}}\n"
        for i in range(providers)])


def write_templates(directory: pathlib.Path, templates: int) -> None:
    _write_docs(directory, "bench-templates", [
        f"apiVersion: reconciler/v1\nkind: DynamicIamTemplate\nmetadata: {{name: t-{i}}}\nspec:\n"
        f"  defaultTtl: 1h\n  maxTtl: 4h\n  path: /bench/t-{i}/\n  tags: {{team: bench}}\n"
        "  inlinePolicy:\n    Version: '2012-10-17'\n"
        "    Statement: [{Effect: Allow, Action: 's3:GetObject', Resource: 'arn:aws:s3:::reports/*'}]\n"
        for i in range(templates)])


def pages(items: int, page: int) -> int:
    return max(1, math.ceil(items / page))


def key_bound(keys: int, aliases: int, page: int) -> dict[str, int]:
    return {"kms:DescribeKey": keys, "kms:GetKeyRotationStatus": keys, "kms:ListAliases": pages(aliases, page),
            "resourcegroupstaggingapi:GetResources": pages(keys, page)}


def rotations_bound(rotations: int, aliases: int, page: int) -> dict[str, int]:
    """Per user ListAccessKeys; the outputs' current version ids listed; the vault's one key."""
    return {**key_bound(1, aliases, page), "iam:ListAccessKeys": rotations,
            "secretsmanager:ListSecrets": pages(2 * rotations, page)}


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


def _print(title: str, calls: collections.Counter[str], bound: dict[str, int], elapsed: float,
           resources: int) -> tuple[int, int]:
    total, floor = sum(calls.values()), sum(bound.values())
    print(f"\n{title}\nno-op plan: {elapsed:.2f} s, {total} calls for {resources} resources "
          f"({total / max(1, resources):.2f} per resource)")
    print(f"{'operation':45s} {'calls':>7s} {'bound':>7s}")
    for op in sorted(set(calls) | set(bound)):
        print(f"{op:45s} {calls.get(op, 0):7d} {bound.get(op, 0):7d}")
    print(f"{'total':45s} {total:7d} {floor:7d}   ratio {total / floor:.3f} (at most 1.1 holds: "
          f"{'yes' if total <= 1.1 * floor else 'NO'})")
    return total, floor


def _apply(runner: CliRunner, stack: pathlib.Path, calls: collections.Counter[str], what: str) -> None:
    started = time.perf_counter()
    calls.clear()
    os.environ[quotas.ENV] = ",".join(f"{service}:{operation}=0" for service, operation in quotas.QUOTAS)
    try:
        result = runner.invoke(cli.main, ["apply", str(stack), "--auto-approve"])
    finally:
        del os.environ[quotas.ENV]
    assert result.exit_code == 0, result.output
    print(f"apply {what} (create, quotas lifted): {time.perf_counter() - started:.1f} s, {sum(calls.values())} calls")


def _noop_plan(runner: CliRunner, stack: pathlib.Path, calls: collections.Counter[str]) -> float:
    calls.clear()
    started = time.perf_counter()
    result = runner.invoke(cli.main, ["plan", str(stack), "--detailed-exitcode"])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return elapsed


def _aliases() -> int:
    kms = boto3.client("kms", region_name="us-east-1")
    return sum(len(p["Aliases"]) for p in kms.get_paginator("list_aliases").paginate())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="keys, and as many secrets (0: none)")
    parser.add_argument("--rotations", type=int, default=0, help="AccessKeyRotations, in a stack of their own")
    parser.add_argument("--oidc", type=int, default=0, help="OidcProviders, in a stack of their own")
    parser.add_argument("--templates", type=int, default=0, help="DynamicIamTemplates, in a stack of their own")
    parser.add_argument("--leases", type=int, default=10, help="leases of each template")
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
    details_page = min(args.page_size or DETAILS_PAGE, DETAILS_PAGE)
    calls: collections.Counter[str] = collections.Counter()
    session.add_call_listener(lambda service, op, _region: calls.update([f"{service}:{op}"]))
    runner = CliRunner()
    sums = [0, 0]
    print(f"list pages of {page} (GetAccountAuthorizationDetails: {details_page})")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = pathlib.Path(tmp)
            for measured in (_keys_and_secrets, _rotations, _oidc, _templates):
                found = measured(args, root, runner, calls, page, details_page)
                if found is not None:
                    sums[0], sums[1] = sums[0] + found[0], sums[1] + found[1]
    finally:
        stop()
    if sums[1]:
        print(f"\nevery stack: {sums[0]} calls, bound {sums[1]}, ratio {sums[0] / sums[1]:.3f}")


Measured = tuple[int, int] | None


def _keys_and_secrets(args: argparse.Namespace, root: pathlib.Path, runner: CliRunner,
                      calls: collections.Counter[str], page: int, _details: int) -> Measured:
    if not args.n:
        return None
    stack = root / "keys"
    stack.mkdir()
    write_stack(stack, args.n)
    print(f"\n{args.n} symmetric keys (alias, description, tags, rotation) + {args.n} Secrets Manager secrets")
    _apply(runner, stack, calls, "keys and secrets")
    aliases = _aliases()
    elapsed = _noop_plan(runner, stack, calls)
    return _print(f"KmsProvider + Secret ({args.n} + {args.n} + a vault)", calls,
                  lower_bound(args.n, args.n, aliases, page), elapsed, 2 * args.n + 1)


def _rotations(args: argparse.Namespace, root: pathlib.Path, runner: CliRunner,
               calls: collections.Counter[str], page: int, _details: int) -> Measured:
    if not args.rotations:
        return None
    iam = boto3.client("iam", region_name="us-east-1")
    for i in range(args.rotations):
        iam.create_user(UserName=f"bench-user-{i}")
    stack = root / "rotations"
    write_rotations(stack, args.rotations)
    print(f"\n{args.rotations} AccessKeyRotations (a user each), outputs in a Secrets Manager vault under one key")
    _apply(runner, stack, calls, "rotations")
    aliases = _aliases()
    elapsed = _noop_plan(runner, stack, calls)
    return _print(f"AccessKeyRotation ({args.rotations}, + their vault and its key)", calls,
                  rotations_bound(args.rotations, aliases, page), elapsed, args.rotations + 2)


def _oidc(args: argparse.Namespace, root: pathlib.Path, runner: CliRunner,
          calls: collections.Counter[str], _page: int, _details: int) -> Measured:
    if not args.oidc:
        return None
    stack = root / "oidc"
    write_oidc(stack, args.oidc)
    print(f"\n{args.oidc} OidcProviders (audiences, tags)")
    _apply(runner, stack, calls, "OIDC providers")
    elapsed = _noop_plan(runner, stack, calls)
    return _print(f"OidcProvider ({args.oidc})", calls, {"iam:GetOpenIDConnectProvider": args.oidc}, elapsed,
                  args.oidc)


def _templates(args: argparse.Namespace, root: pathlib.Path, runner: CliRunner,
               calls: collections.Counter[str], _page: int, details: int) -> Measured:
    if not args.templates:
        return None
    stack = root / "templates"
    write_templates(stack, args.templates)
    print(f"\n{args.templates} DynamicIamTemplates (path, inline policy, tags), {args.leases} leases each")
    _apply(runner, stack, calls, "templates")
    started = time.perf_counter()
    os.environ[quotas.ENV] = ",".join(f"{service}:{operation}=0" for service, operation in quotas.QUOTAS)
    try:
        for i in range(args.templates):
            for _ in range(args.leases):
                made = runner.invoke(cli.main, ["lease", "create", f"t-{i}", str(stack), "--format", "json"])
                assert made.exit_code == 0, made.output
    finally:
        del os.environ[quotas.ENV]
    print(f"lease create x {args.templates * args.leases}: {time.perf_counter() - started:.1f} s")
    users = sum(len(p["Users"]) for p in boto3.client("iam").get_paginator("list_users").paginate())
    elapsed = _noop_plan(runner, stack, calls)
    return _print(f"DynamicIamTemplate ({args.templates}, {args.templates * args.leases} leases; "
                  f"{users} users in the account)", calls,
                  {"iam:GetAccountAuthorizationDetails": pages(users, details)}, elapsed, args.templates)


if __name__ == "__main__":
    main()

"""Apply from empty, one action at a time and side by side: wall time and calls/s.

    python bench/parallel_apply.py [--n N] [--parallelism 1 10] [--quotas aws|off|both]

Starts the sandbox in-process and, for each parallelism, applies N symmetric
keys (alias, description, tags, rotation) and a Secrets Manager vault (under
one more key) holding N generated secrets to an empty sandbox.

``--quotas aws`` keeps AWS's default request quotas (aws/quotas.py: KMS
CreateKey 5/s, so N keys take at least N/5 s whatever the parallelism);
``off`` lifts them (``RECONCILER_REQUEST_QUOTAS``), as for an account whose
quotas were raised well above what the sandbox serves. The sandbox serves
about 200-225 requests/s in all on 2 cores, so the figures to compare are
side by side in one run, not across machines.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.aws import quotas, session  # noqa: E402
from reconciler.sandbox import server  # noqa: E402


def manifests(n: int) -> str:
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: bench/key-{i}\n  description: bench key {i}\n  tags: {{n: '{i}'}}\n"
            f"  rotation: {{enabled: true}}\n  protect: false\n  deletionWindowDays: 7\n" for i in range(n)]
    docs.append("apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: vault-key}\n"
                "spec: {protect: false, deletionWindowDays: 7}\n")
    docs.append("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: vault-key\n"
                "  default: true\n  store: {secretsmanager: {prefix: bench/}}\n")
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
             for i in range(n)]
    return "---\n".join(docs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100, help="keys, and secrets (default 100 of each)")
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--quotas", choices=["aws", "off", "both"], default="both")
    args = parser.parse_args()
    moto = server.start(0)
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    calls: collections.Counter[str] = collections.Counter()
    session.add_call_listener(lambda service, op, _region: calls.update([f"{service}:{op}"]))
    lifted = ",".join(f"{service}:{operation}=0" for service, operation in quotas.QUOTAS)
    modes = ["aws", "off"] if args.quotas == "both" else [args.quotas]
    print(f"{args.n} keys + {args.n} secrets (a Secrets Manager vault under one more key): apply from empty")
    runner = CliRunner()
    for mode in modes:
        if mode == "off":
            os.environ[quotas.ENV] = lifted
        else:
            os.environ.pop(quotas.ENV, None)
        label = "AWS default quotas" if mode == "aws" else "quotas lifted"
        for parallelism in args.parallelism:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
            with tempfile.TemporaryDirectory() as tmp:
                stack = pathlib.Path(tmp)
                (stack / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\n"
                                                  "metadata: {name: bench}\nspec: {region: us-east-1}\n")
                (stack / "main.yaml").write_text(manifests(args.n))
                calls.clear()
                started = time.perf_counter()
                result = runner.invoke(cli.main, ["apply", str(stack), "--auto-approve",
                                                  "--parallelism", str(parallelism)])
                elapsed = time.perf_counter() - started
                assert result.exit_code == 0, result.output
            total = sum(calls.values())
            floor = ""
            if mode == "aws":
                floor = f"  (CreateKey quota floor {(args.n + 1) / quotas.QUOTAS[('kms', 'CreateKey')]:.0f}s)"
            print(f"{label:20s} parallelism {parallelism:3d}: {elapsed:7.2f}s  {total:6d} calls  "
                  f"{total / elapsed:6.1f} calls/s{floor}")
    moto.stop()


if __name__ == "__main__":
    main()

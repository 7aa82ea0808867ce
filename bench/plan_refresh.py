"""Figures for plan/apply on the sandbox: wall time and AWS API calls.

    python bench/plan_refresh.py [--keys N] [--secrets M] [--key-spec SPEC]

Starts the sandbox in-process, applies N symmetric keys and a vault (under
one more key of SPEC) holding M generated secrets, then measures a
no-change plan (refresh), a --no-refresh plan and a drift run. Wall time on
the sandbox is mostly API calls (moto serves ~200 requests/s), so the call
counts are the figures to compare across versions. Memory is the process's peak RSS
(sandbox included), printed after each step.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import tempfile
import time
import resource

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.aws import session  # noqa: E402
from reconciler.sandbox import server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--key-spec", default="RSA_2048")
    args = parser.parse_args()
    moto = server.start(0)
    host, port = moto.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    calls: collections.Counter[str] = collections.Counter()
    session.add_call_listener(lambda service, op, _region: calls.update([f"{service}:{op}"]))
    with tempfile.TemporaryDirectory() as tmp:
        stack = pathlib.Path(tmp)
        (stack / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: bench}\n"
                                          "spec: {region: us-east-1}\n")
        docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
                f"  alias: bench/key-{i}\n  tags: {{n: '{i}'}}\n  rotation: {{enabled: true}}\n"
                for i in range(args.keys)]
        docs.append(f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: vault-key}}\n"
                    f"spec: {{spec: {args.key_spec}}}\n")
        docs.append("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: vault-key\n"
                    "  default: true\n  store: {local: {path: vault}}\n")
        docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
                 for i in range(args.secrets)]
        (stack / "keys.yaml").write_text("---\n".join(docs))
        print(f"{args.keys} keys, a vault under {args.key_spec} with {args.secrets} secrets")
        runner = CliRunner()
        for label, argv in [("apply (create)", ["apply", str(stack), "--auto-approve"]),
                            ("plan (refresh, no changes)", ["plan", str(stack)]),
                            ("plan --no-refresh", ["plan", str(stack), "--no-refresh"]),
                            ("drift", ["drift", str(stack)])]:
            calls.clear()
            started = time.perf_counter()
            result = runner.invoke(cli.main, argv)
            elapsed = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            assert result.exit_code == 0, result.output
            total = sum(calls.values())
            top = ", ".join(f"{op}={n}" for op, n in calls.most_common(5))
            print(f"{label:28s} {elapsed:7.2f}s  {total:5d} calls  "
                  f"max RSS {peak / 1e6:.0f} MB  [{top}]")
    moto.stop()


if __name__ == "__main__":
    main()

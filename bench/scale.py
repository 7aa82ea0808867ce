"""Scale targets without AWS (issue 13 item 3): `validate` and `plan --no-refresh`
of large stacks, run as a user runs them (the CLI in a child process), with
wall time and peak memory (the child's maximum resident set), next to the
issue's targets.

    python bench/scale.py [--sizes 1000,10000] [--shapes keys,mixed] [--runs 3]

Shapes: ``keys`` is N KmsProviders (alias, description, tags, rotation), the
issue's own measurement; ``mixed`` is 10 keys, 5 vaults and N-15 Secrets in
files of 100 documents (bench/load_manifests.py's stack). ``plan --no-refresh``
is measured from an empty state (every resource a create: the plan renders N
changes) and, for ``keys``, as a no-op over a state recording all N (written by
this script from the plan's own ``after`` values, with made-up key ids: what
an apply would record, without applying 10,000 keys). Each figure is the
best of ``--runs`` (the machine is shared; the best is the least disturbed).

Targets (issue 13): 10,000 resources, ``plan --no-refresh`` under 2 s and
300 MB, ``validate`` under 2 s. Figures on the 2-core dev box, 2026-12-02,
Python 3.11.7: see the README ("Performance").
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import load_manifests  # noqa: E402


TARGETS = {"validate": (2.0, None), "plan --no-refresh": (2.0, 300.0),  # at 10,000 resources: s, MB
           "no-op plan --no-refresh": (2.0, 300.0)}


def write_keys(directory: pathlib.Path, total: int, per_file: int = 100) -> None:
    (directory / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: bench}\n"
                                          "spec: {region: us-east-1}\n")
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: bench/key-{i}\n  description: key {i}\n  tags: {{n: '{i}', team: bench}}\n"
            "  rotation: {enabled: true}\n" for i in range(total)]
    for start in range(0, len(docs), per_file):
        (directory / f"keys-{start // per_file:05d}.yaml").write_text("---\n".join(docs[start:start + per_file]))


def record_everything(tool: str, directory: pathlib.Path, cwd: pathlib.Path) -> None:
    """A state recording every resource as the plan would create it."""
    from reconciler.state import model as state_model

    planned = subprocess.run([tool, "plan", "--no-refresh", "--format", "json", str(directory)], cwd=cwd,
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    plan = json.loads(planned.stdout)
    resources = {}
    for number, change in enumerate(plan["changes"]):
        key_id = f"{number:08d}-0000-4000-8000-000000000000"
        ids = {"keyId": key_id, "arn": f"arn:aws:kms:us-east-1:123456789012:key/{key_id}"}
        entry = state_model.ResourceState(change["kind"], change["name"], "managed", ids, change["after"],
                                          {"region": "us-east-1"})
        resources[entry.address] = entry
    state = state_model.State(lineage="bench", serial=1, resources=resources, stack="bench")
    (directory / ".reconciler").mkdir(exist_ok=True)
    (directory / ".reconciler" / "state.json").write_text(state_model.dumps(state))


def run(command: list[str], cwd: pathlib.Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one CLI run (it must succeed)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "NO_COLOR": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = child.stderr.read().decode() if child.stderr else ""
    child.stderr.close() if child.stderr else None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {stderr.strip()[:500]}")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--shapes", default="keys,mixed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", help=argparse.SUPPRESS)  # internal: write the no-op state for DIR
    args = parser.parse_args()
    tool = str(pathlib.Path(sys.executable).with_name("reconciler"))
    if args.record:
        record_everything(tool, pathlib.Path(args.record), pathlib.Path(args.record).parent)
        return
    print(f"{'shape':>6} {'resources':>9} {'command':>24} {'wall (best)':>12} {'peak RSS':>9} {'target':>16}")
    for shape in args.shapes.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                directory = pathlib.Path(tmp) / "stack"
                directory.mkdir()
                if shape == "keys":
                    write_keys(directory, size)
                else:
                    load_manifests.write_stack(directory, size, 100)
                commands = [("validate", [tool, "validate", str(directory)]),
                            ("plan --no-refresh", [tool, "plan", "--no-refresh", str(directory)])]
                if shape == "keys":
                    commands.append(("no-op plan --no-refresh", [tool, "plan", "--no-refresh", "--detailed-exitcode",
                                                                 str(directory)]))
                for name, command in commands:
                    if name.startswith("no-op"):  # in a child: this process stays small, and a child's
                        # peak RSS (ru_maxrss) starts from what it inherits when forked
                        subprocess.run([sys.executable, __file__, "--record", str(directory)], check=True)
                    figures = [run(command, pathlib.Path(tmp)) for _ in range(args.runs)]
                    seconds = min(f[0] for f in figures)
                    memory = max(f[1] for f in figures)
                    limit_s, limit_mb = TARGETS[name]
                    target = (f"<{limit_s:.0f} s" + (f", <{limit_mb:.0f} MB" if limit_mb else "")
                              if size >= 10_000 else "")
                    print(f"{shape:>6} {size:>9,} {name:>24} {seconds:>10.2f} s {memory:>6.0f} MB {target:>16}",
                          flush=True)


if __name__ == "__main__":
    main()

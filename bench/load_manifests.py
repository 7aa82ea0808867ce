"""Figures for loading manifests: load + validate time and peak memory.

    python bench/load_manifests.py [--sizes 1000,5000,10000] [--per-file 100]

Writes a stack of N resources (a few keys and vaults, the rest Secrets, most
of them in the default vault) into a temporary directory, then times
``manifest.load`` (read, parse, schema, references, lint, cycles) and, in a
second run under tracemalloc, its peak Python memory. No AWS, no sandbox:
this is the work every command does before its first API call, and it
should grow linearly with the number of resources.

Measured on the 2-core dev box (shared, so +-30%), issue 6 item 26:
  before (quadratic):  1,000: 0.65 s   2,000: 1.46 s   4,000: 3.75 s
  after (linear, libyaml events): 1,000: 0.25 s   5,000: 1.7 s   10,000: 3-4 s, 67 MiB peak
Most of what is left is composing nodes in Python and jsonschema.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.manifest import model  # noqa: E402

KEYS = 10
VAULTS = 5


def _documents(total: int) -> list[str]:
    """Keys, vaults (the first one default) and Secrets, ``total`` in all."""
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: bench/key-{i}\n  tags: {{n: '{i}'}}\n  rotation: {{enabled: true}}\n"
            for i in range(KEYS)]
    docs += [f"apiVersion: reconciler/v1\nkind: Vault\nmetadata: {{name: vault-{i}}}\nspec:\n"
             f"  provider: key-{i}\n  default: {'true' if i == 0 else 'false'}\n"
             f"  store: {{local: {{path: vaults/v{i}}}}}\n"
             for i in range(VAULTS)]
    for i in range(total - len(docs)):
        vault = f"  vault: vault-{i % VAULTS}\n" if i % 4 == 0 else ""
        docs.append(f"apiVersion: reconciler/v1\nkind: Secret\nmetadata:\n  name: s-{i}\n"
                    f"  labels: {{team: bench}}\nspec:\n{vault}  description: secret {i}\n"
                    f"  generate: {{length: 32, charset: alphanumeric}}\n")
    return docs


def write_stack(directory: pathlib.Path, total: int, per_file: int) -> None:
    (directory / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: bench}\n"
                                          "spec: {region: us-east-1}\n")
    docs = _documents(total)
    for start in range(0, len(docs), per_file):
        (directory / f"part-{start // per_file:05d}.yaml").write_text("---\n".join(docs[start:start + per_file]))


def measure(directory: pathlib.Path) -> tuple[float, float, int]:
    """Seconds for one load, peak MiB of a second (traced) load, resources loaded."""
    started = time.perf_counter()
    config, diagnostics = model.load(str(directory))
    elapsed = time.perf_counter() - started
    failures = [d for d in diagnostics if d.severity == "error"]
    if failures or config is None:
        raise SystemExit(f"bench stack does not validate: {failures[:3]}")
    tracemalloc.start()
    model.load(str(directory))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2 ** 20, len(config.resources)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--per-file", type=int, default=100)
    args = parser.parse_args()
    print(f"{'resources':>10} {'load+validate':>14} {'per resource':>13} {'peak memory':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            directory = pathlib.Path(tmp)
            write_stack(directory, size, args.per_file)
            seconds, peak, count = measure(directory)
        print(f"{count:>10} {seconds:>13.2f}s {seconds / count * 1e3:>11.3f}ms {peak:>9.1f} MiB")


if __name__ == "__main__":
    main()

"""Figures for hostile YAML: time and peak memory to refuse each case.

    python bench/yaml_limits.py

Parses (``loader.parse_text``, what every command does first) a recursive
alias, the billion-laughs alias bomb (9 levels of 9: 387 million strings if
expanded), a wide alias repeated, and 100,000 levels of nesting. Each must be
refused with one positioned error in well under a second and 100 MB.
"""

from __future__ import annotations

import pathlib
import sys
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.manifest import loader  # noqa: E402

HEAD = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: main}\nspec:\n"


def laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["  policy:", "    a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    lines += [f"    a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * width) + "]" for n in range(1, levels)]
    return HEAD + "\n".join(lines + [f"    Statement: [*a{levels - 1}]"]) + "\n"


CASES = {
    "recursive alias": HEAD + "  tags: &t {a: *t}\n",
    "billion laughs (9x9)": laughs(),
    "wide alias x3": HEAD + "  policy:\n    a: &a [" + ",".join(map(str, range(4000))) + "]\n"
                             "    Statement: [*a, *a, *a]\n",
    "100k-deep flow nesting": HEAD + "  tags: " + "[" * 100_000 + "]" * 100_000 + "\n",
}


def main() -> None:
    print(f"{'case':<24} {'bytes':>8} {'time':>9} {'peak':>10}  error")
    for name, text in CASES.items():
        tracemalloc.start()
        started = time.perf_counter()
        _docs, diagnostics = loader.parse_text(text, "bench.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        first = str(diagnostics[0]) if diagnostics else "(accepted!)"
        print(f"{name:<24} {len(text.encode()):>8} {elapsed * 1e3:>7.1f}ms {peak / 2 ** 20:>7.2f}MiB  {first}")


if __name__ == "__main__":
    main()

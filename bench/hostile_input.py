"""Figures for hostile manifests (issue 11, item 6): each case through the
real CLI (`python -m reconciler.cli validate DIR`) in a fresh process, with
its wall time, peak RSS (of the whole process: the ~1 s and ~55 MB of
starting Python and importing reconciler included), exit code and first
error line.

    python bench/hostile_input.py [--only NAME]

Every case must exit 1 with a positioned one-line error in under 2 s and
200 MB (the budget of the issue); the script exits 1 when one does not.
Measured on the 2-core dev box (shared, so +-30%): see the report of the
issue 11 item 6 change.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.manifest import loader  # noqa: E402

BUDGET_S = 2.0
BUDGET_MB = 200
STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
HEAD = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: main}\nspec:\n"
VAULT = ("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\n"
         "spec: {provider: main, store: {local: {path: .reconciler/v}}, default: true}\n")


def _keys(n: int) -> str:
    digits = "abcdefghijklmnopqrstuvwxyz0123456789"
    names = []
    for i in range(n):
        out = "k"
        while True:
            i, r = divmod(i, 36)
            out += digits[r]
            if not i:
                break
        names.append(out)
    return "{" + ",".join(names) + "}"


def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["  policy:", "    a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    lines += [f"    a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * width) + "]" for n in range(1, levels)]
    return HEAD + "\n".join(lines + [f"    Statement: [*a{levels - 1}]"]) + "\n"


def _envelope(header: bytes) -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    sealed = f"rcl:v1:{b64(header)}:{b64(b'wrapped')}:{b64(b'n' * 12)}:{b64(b'c' * 16)}"
    return HEAD + "  alias: main\n---\n" + VAULT + "---\napiVersion: reconciler/v1\nkind: Secret\n" \
        f"metadata: {{name: s}}\nspec: {{encrypted: '{sealed}'}}\n"


def _files() -> dict[str, dict[str, str | bytes]]:
    non_arn = (b'{"a":"SYMMETRIC_DEFAULT","c":{"secret":"s","stack":"test","vault":"v"},"k":"not-an-arn"}')
    return {
        "nesting 1,000 (flow)": {"bad.yaml": HEAD + "  tags: " + "[" * 1000 + "]" * 1000 + "\n"},
        "nesting 1,000 (block)": {"bad.yaml": HEAD + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(1000))},
        "recursive alias": {"bad.yaml": HEAD + "  tags: &t {a: *t}\n"},
        "billion laughs": {"bad.yaml": _laughs()},
        "control char \\x00": {"bad.yaml": HEAD + "  description: a\x00b\n"},
        "control char \\x07": {"bad.yaml": HEAD + "  description: a\x07b\n"},
        "control char \\x1b": {"bad.yaml": HEAD + "  description: a\x1b[2Jb\n"},
        "control char \\x7f": {"bad.yaml": HEAD + "  description: a\x7fb\n"},
        "escaped \\e in a value": {"bad.yaml": HEAD + '  description: "a\\e[2Jb"\n'},
        "not UTF-8": {"bad.yaml": (HEAD + "  description: caf\xe9\n").encode("latin-1")},
        "FIFO": {"bad.yaml": "FIFO"},
        "directory x.yaml": {"x.yaml": "DIR"},
        "over 5 MB": {"bad.yaml": HEAD + "# " + "x" * (loader.MAX_FILE_BYTES + 10) + "\n"},
        "500,000 keys": {"bad.yaml": HEAD + "  tags: " + _keys(500_000) + "\n"},
        "500,000 list items": {"bad.yaml": HEAD + "  replicaRegions: [" + ",".join(["us-east-2"] * 500_000) + "]\n"},
        "200,000 documents": {"bad.yaml": "---\nkind: Nope\n" * 200_000},
        "200,000 empty documents": {"bad.yaml": "---\n" * 200_000},
        "4 MB value": {"bad.yaml": HEAD + "  alias: " + "x" * 4_000_000 + "\n"},
        "envelope: nested header": {"bad.yaml": _envelope(b"[" * 100_000 + b"]" * 100_000)},
        "envelope: non-ARN key": {"bad.yaml": _envelope(non_arn)},
        "alias: alias/": {"bad.yaml": HEAD + "  alias: alias/\n"},
        "dangling symlink": {"bad.yaml": "LINK:/nonexistent/x.yaml"},
        "looping symlink": {"bad.yaml": "LINK:bad.yaml"},
        "symlink to /dev/zero": {"bad.yaml": "LINK:/dev/zero"},
        "symlink to a directory": {"bad.yaml": "LINK:/tmp"},
        "directory symlink loop": {"sub": "LINK:."},
        "symlink to /": {"root": "LINK:/"},
    }


def _write(directory: pathlib.Path, files: dict[str, str | bytes]) -> None:
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    for name, content in files.items():
        path = directory / name
        if content == "FIFO":
            os.mkfifo(path)
        elif content == "DIR":
            path.mkdir()
        elif isinstance(content, str) and content.startswith("LINK:"):
            target = content[len("LINK:"):]
            path.symlink_to(directory if target == "." else directory / target if not target.startswith("/")
                            else pathlib.Path(target))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def measure(directory: pathlib.Path) -> tuple[int, float, float, list[str]]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "validate", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    return os.waitstatus_to_exitcode(status), elapsed, usage.ru_maxrss / 1024, stderr.decode().splitlines()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args()
    baseline_dir = pathlib.Path(tempfile.mkdtemp()) / "ok"
    _write(baseline_dir, {"key.yaml": HEAD + "  alias: main\n"})
    code, seconds, peak, _ = measure(baseline_dir)
    print(f"{'a valid one-key stack (baseline)':<28} exit {code} {seconds:6.2f}s {peak:6.0f}MB")
    failures = 0
    for name, files in _files().items():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            directory = pathlib.Path(scratch) / "stack"
            _write(directory, files)
            code, seconds, peak, lines = measure(directory)
        errors = [line for line in lines if line.startswith("Error:")]
        ok = code == 1 and errors and seconds < BUDGET_S and peak < BUDGET_MB and \
            not any("Traceback" in line or "internal error" in line for line in lines)
        failures += not ok
        first = errors[0].replace(str(directory), "DIR") if errors else (lines[-1] if lines else "(accepted)")
        print(f"{name:<28} exit {code} {seconds:6.2f}s {peak:6.0f}MB {'ok ' if ok else 'BAD'} "
              f"{len(errors):>5} error(s)  {first[:150]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Kill an apply of every kind after each of its AWS calls in turn, rerun it,
and check it converged (issue 11 item 1): prints the calls, the k swept, the
time and every k that did not converge.

    python bench/kill_sweep.py [--every N]

Starts the sandbox in-process; the stack and the checks are those of
tests/aws/test_i11_kill_every_kind.py (which CI runs on a sample of k)."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.sandbox import server  # noqa: E402
from tests.aws import test_i11_kill_every_kind as every  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=1, help="sweep every Nth call (1: all of them)")
    args = parser.parse_args()
    moto = server.start(0)
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        _killed, _failures, total = every.sweep(endpoint, pathlib.Path(tmp), os.environ.__setitem__, [])
        ks = list(range(1, total + 1, args.every))
        killed, failures, _ = every.sweep(endpoint, pathlib.Path(tmp), os.environ.__setitem__, ks)
    moto.stop()
    print(f"apply of every kind: {total} AWS calls; killed after {len(killed)} of them "
          f"in {time.monotonic() - started:.1f}s")
    print(f"converged: {len(killed) - len(failures)} / {len(killed)}")
    for k, problems in sorted(failures.items()):
        op = dict(killed).get(k, "?")
        print(f"  k={k} ({op}): {'; '.join(problems)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""Shared fixtures. AWS tests talk to the real sandbox server (moto with the
fidelity layer) over HTTP on 127.0.0.1; nothing of ours is patched."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import select
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from reconciler import cli
from reconciler.aws import session

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
READ_PREFIXES = ("Describe", "Get", "List")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[str]:
    from reconciler.sandbox import server

    moto = server.start(port=0)
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@pytest.fixture()
def aws(sandbox: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean sandbox and the environment pointing at it."""
    request = urllib.request.Request(f"{sandbox}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    return sandbox


class Calls:
    """Every AWS API call the code under test makes (botocore event hook)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, service: str, operation: str, region: str | None) -> None:
        self.calls.append((service, operation, region))

    def clear(self) -> None:
        self.calls.clear()

    @property
    def writes(self) -> list[str]:
        return [f"{s}:{o}" for s, o, _ in self.calls if not o.startswith(READ_PREFIXES)]

    def count(self, operation: str) -> int:
        return sum(1 for _, o, _ in self.calls if o == operation)


@pytest.fixture()
def calls() -> Iterator[Calls]:
    recorder = Calls()
    session.add_call_listener(recorder)
    yield recorder
    session.remove_call_listener(recorder)


def run(*args: str, input: str | None = None) -> Result:
    """The real CLI, in-process."""
    return CliRunner().invoke(cli.main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture()
def stack(tmp_path: pathlib.Path):
    """Write a stack directory: stack("name", {"file.yaml": "..."})."""

    def make(files: dict[str, str], *, region: str = "us-east-1", with_stack: bool = True) -> pathlib.Path:
        directory = tmp_path / "stack"
        directory.mkdir(exist_ok=True)
        if with_stack:
            (directory / "stack.yaml").write_text(textwrap.dedent(f"""\
                apiVersion: reconciler/v1
                kind: Stack
                metadata: {{name: test}}
                spec:
                  region: {region}
                """))
        for name, text in files.items():
            (directory / name).write_text(textwrap.dedent(text))
        return directory

    return make


@pytest.fixture()
def example(tmp_path: pathlib.Path):
    """A copy of an example stack, so its state lands in tmp."""

    def copy(name: str) -> pathlib.Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".reconciler"))
        return target

    return copy


def state_of(directory: pathlib.Path) -> dict:
    return json.loads((directory / ".reconciler" / "state.json").read_text())


def converse(args: list[str], answers: list[tuple[bytes, bytes]]) -> tuple[int, str]:
    """Run the CLI on a pty, answering each prompt in turn."""
    controller, worker = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], stdin=worker, stdout=worker, stderr=worker, env=env,
                               close_fds=True)
    os.close(worker)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if pending and seen.rstrip().endswith(pending[0][0]):
            os.write(controller, pending.pop(0)[1])
    if process.poll() is None:
        process.kill()  # stuck (waiting for input that never comes): fail, never hang
    code = process.wait(timeout=60)
    os.close(controller)
    return code, seen.decode(errors="replace")

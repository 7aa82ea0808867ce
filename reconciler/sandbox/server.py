"""Run the sandbox: moto's server on 127.0.0.1 with the fidelity layer."""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from reconciler import errors

HOST = "127.0.0.1"


def exports(port: int) -> list[str]:
    return [f"export AWS_ENDPOINT_URL=http://{HOST}:{port}",
            "export AWS_ACCESS_KEY_ID=testing",
            "export AWS_SECRET_ACCESS_KEY=testing",
            "export AWS_DEFAULT_REGION=us-east-1"]


def start(port: int = 0):  # -> ThreadedMotoServer
    """Start the sandbox in this process (used by the tests); returns the server."""
    from moto.server import ThreadedMotoServer

    from reconciler.sandbox import fidelity

    fidelity.apply()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    return server


def _answering(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/data.json", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _check_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise errors.ConfigError(f"{HOST}:{port} is already in use; pick another --port") from None


def run_foreground(port: int, announce: Callable[[str], None] = print) -> None:
    _check_free(port)
    server = start(port)
    announce(f"# reconciler sandbox (moto + fidelity fixes) on http://{HOST}:{port}; Ctrl-C stops it.")
    announce("# In another shell:")
    for line in exports(port):
        announce(line)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def start_background(port: int, pid_file: str) -> str:
    pid_path = pathlib.Path(pid_file)
    if pid_path.exists():
        pid = int(pid_path.read_text().strip() or 0)
        if pid and _alive(pid) and _answering(port):
            return "\n".join([f"# sandbox already running (PID {pid})", *exports(port)])
    _check_free(port)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(pid_path.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen([sys.executable, "-m", "reconciler.sandbox.server", "--port", str(port)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 30
    while not _answering(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise errors.ConfigError(f"the sandbox did not start; see {pid_path.with_suffix('.log')}")
        time.sleep(0.1)
    pid_path.write_text(f"{process.pid}\n")
    return "\n".join([f"# sandbox started (PID {process.pid}); stop it with: reconciler sandbox --stop",
                      *exports(port)])


def stop_background(pid_file: str) -> str:
    pid_path = pathlib.Path(pid_file)
    if not pid_path.exists():
        raise errors.ConfigError(f"no sandbox pid file at {pid_file}")
    pid = int(pid_path.read_text().strip() or 0)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
    pid_path.unlink()
    return f"sandbox (PID {pid}) stopped"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="reconciler-sandbox")
    parser.add_argument("--port", type=int, default=4566)
    run_foreground(parser.parse_args().port)

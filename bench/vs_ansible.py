"""Side by side with Ansible's AWS modules (issue 13 item 4).

    python bench/vs_ansible.py [--n N]

One sandbox, started in-process with every request it serves counted by the
server itself (a WSGI wrapper around moto's app: service from the SigV4
credential scope, operation from ``X-Amz-Target`` or ``Action=``), so that
reconciler's calls and those Ansible's modules make from their own processes
are counted the same way. Both tools run as subprocesses, as a user runs them,
on the same workload in separate prefixes (``rcl-bench`` / ``ans-bench``), so
neither sees the other's objects as its own:

- N symmetric KMS keys: alias, description, a tag, rotation enabled;
- N IAM users. reconciler creates no IAM user: the users it manages are those
  of ``AccessKeyRotation`` (SPEC 1: "the user's access keys, the output
  secrets"), each made beforehand (not counted, as the iam-user-rotation
  example says) and given its first access key pair by ``apply``, verified and
  sealed into two vault entries. Ansible's ``amazon.aws.iam_user`` creates
  the user (with a tag). So in ``create`` reconciler does more per user than
  Ansible (an access key, an STS check, two secrets); the calls by service
  show it;
- N Secrets Manager secrets under key 0: reconciler ``Secret`` documents
  (``generate: {}``) in a ``secretsmanager`` vault wrapped by key 0;
  ``community.aws.secretsmanager_secret`` with ``kms_key_id`` key 0's alias.

Phases, each tool in turn on the same sandbox (so read phases list the same
number of objects): ``create`` (reconciler ``apply`` vs ``ansible-playbook``
from empty), ``no-op`` (``plan`` vs ``ansible-playbook --check`` after it
applied), ``drift`` (``drift`` vs ``ansible-playbook --check --diff``) after
the same out-of-band changes on each side (key 0's description, key 1's
rotation off, secret 0's value; a user: Ansible's user 0 retagged,
reconciler's user 0's current access key deactivated: what each tool models
of a user). Ansible is optional for the bench and never needed by the tests:
``pip install ansible`` brings ansible-core, amazon.aws and community.aws.
On the sandbox wall time is mostly API calls (~200 requests/s) plus, for
Ansible, one Python process per loop item: compare side by side in one run.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import io
import json
import logging
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RCL, ANS = "rcl-bench", "ans-bench"  # each tool's prefix
REGION = "us-east-1"

# -- counting: a request as the server sees it -> (service, operation), read or write -------------------
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
READ_PREFIXES = ("Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Search", "Lookup",
                 "Simulate", "Validate")
# Calls that change nothing in the account although their names do not say so: KMS cryptography
# and STS credentials (they return a value, store nothing).
NOT_WRITES = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                        "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom", "Sign",
                        "Verify", "GenerateMac", "VerifyMac", "AssumeRole", "AssumeRoleWithWebIdentity",
                        "AssumeRoleWithSAML"})


def operation_of(method: str, path: str, query: str, headers: Mapping[str, str],
                 body: bytes) -> tuple[str, str] | None:
    """``(service, operation)`` of one AWS request, or None for what is no AWS call (moto's own API).

    The service is the SigV4 credential scope's; the operation the JSON protocols' ``X-Amz-Target``
    (``TrentService.CreateKey``), else the query protocol's ``Action`` (IAM, STS: form body or query
    string), else the REST method (S3: ``GET``, ``PUT``...)."""
    if path.startswith("/moto-api"):
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lowered.get("authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    target = lowered.get("x-amz-target", "")
    if target:
        return service, target.rsplit(".", 1)[-1]
    for source in (query, body.decode("utf-8", "replace")
                   if "x-www-form-urlencoded" in lowered.get("content-type", "") else ""):
        action = urllib.parse.parse_qs(source).get("Action")
        if action:
            return service, action[0]
    return service, method.upper()


def is_write(operation: str) -> bool:
    """Whether a call changes the account (a REST call by its method: GET and HEAD read)."""
    if operation in ("GET", "HEAD"):
        return False
    return not (operation.startswith(READ_PREFIXES) or operation in NOT_WRITES)


class Counting:
    """A WSGI wrapper counting every AWS request the app serves, as ``service:Operation``."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        op = operation_of(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""),
                          environ.get("QUERY_STRING", ""), headers, body)
        if op is not None:
            with self._lock:
                self.calls[f"{op[0]}:{op[1]}"] += 1
        return self.app(environ, start_response)

    def take(self) -> collections.Counter[str]:
        """The calls counted since the last take."""
        with self._lock:
            taken, self.calls = self.calls, collections.Counter()
        return taken


@dataclasses.dataclass
class Run:
    phase: str
    tool: str
    seconds: float
    calls: collections.Counter[str]
    found: str  # what the tool reported: changes made / drift seen

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if is_write(op.split(":", 1)[1]))

    def by_service(self) -> dict[str, int]:
        services: collections.Counter[str] = collections.Counter()
        for op, n in self.calls.items():
            services[op.split(":", 1)[0]] += n
        return dict(services)


# -- the workload ---------------------------------------------------------------------------------------
def user_name(prefix: str, i: int) -> str:
    return f"{prefix}-user-{i}"


def reconciler_stack(directory: pathlib.Path, n: int) -> None:
    (directory / "stack.yaml").write_text(f"apiVersion: reconciler/v1\nkind: Stack\nmetadata: {{name: {RCL}}}\n"
                                          f"spec: {{region: {REGION}}}\n")
    docs = [f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: key-{i}}}\nspec:\n"
            f"  alias: {RCL}/key-{i}\n  description: key {i}\n  tags: {{n: '{i}'}}\n"
            "  rotation: {enabled: true}\n" for i in range(n)]
    docs.append("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: key-0\n"
                f"  default: true\n  store: {{secretsmanager: {{prefix: {RCL}/}}}}\n")
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
             for i in range(n)]
    docs += [f"apiVersion: reconciler/v1\nkind: AccessKeyRotation\nmetadata: {{name: u-{i}}}\nspec:\n"
             f"  userName: {user_name(RCL, i)}\n  interval: 30d\n"
             f"  outputs: {{accessKeyId: {{secret: u-{i}-id}}, secretAccessKey: {{secret: u-{i}-key}}}}\n"
             for i in range(n)]
    (directory / "resources.yaml").write_text("---\n".join(docs))


def playbook(n: int) -> str:
    loop = f'loop: "{{{{ range({n}) | list }}}}"'
    return f"""\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: keys
      amazon.aws.kms_key:
        alias: "{ANS}/key-{{{{ item }}}}"
        description: "key {{{{ item }}}}"
        tags: {{n: "{{{{ item }}}}"}}
        enable_key_rotation: true
      {loop}
    - name: users
      amazon.aws.iam_user:
        name: "{ANS}-user-{{{{ item }}}}"
        state: present
        tags: {{n: "{{{{ item }}}}"}}
      {loop}
    - name: secrets
      community.aws.secretsmanager_secret:
        name: "{ANS}/s-{{{{ item }}}}"
        secret: "value-{{{{ item }}}}"
        kms_key_id: "alias/{ANS}/key-0"
      {loop}
"""


def changed_items(report: Mapping[str, Any]) -> int:
    """How many loop items (or tasks) the json callback's report says changed (or would)."""
    changed = 0
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                items = result.get("results")
                changed += sum(1 for r in items if r.get("changed")) if items else int(bool(result.get("changed")))
    return changed


# -- driving the tools ----------------------------------------------------------------------------------
def ansible_missing() -> str | None:
    for module in ("ansible", "ansible_collections.amazon.aws", "ansible_collections.community.aws"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


def run_timed(argv: list[str], env: Mapping[str, str],
              cwd: pathlib.Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    return time.perf_counter() - started, done


def failure(done: subprocess.CompletedProcess[str]) -> str:
    """The first failure message of a run: the json callback's, else the last line of stderr or stdout."""
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return ((done.stderr or done.stdout).strip().splitlines() or [""])[-1]
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                for item in result.get("results") or [result]:
                    if item.get("failed"):
                        return f"{task['task']['name']}: {item.get('msg', '')}"[:300]
    return ((done.stderr or "").strip().splitlines() or [""])[-1]


def expect(done: subprocess.CompletedProcess[str], codes: Iterable[int], what: str) -> None:
    if done.returncode not in tuple(codes):
        sys.exit(f"vs_ansible: {what} exited {done.returncode}: {failure(done)}")


class Bench:
    def __init__(self, n: int, work: pathlib.Path, counting: Counting, env: Mapping[str, str]) -> None:
        self.n, self.work, self.counting, self.env = n, work, counting, env
        self.stack = work / "reconciler"
        self.stack.mkdir()
        reconciler_stack(self.stack, n)
        self.book = work / "ansible" / "bench.yml"
        self.book.parent.mkdir()
        self.book.write_text(playbook(n))
        (self.book.parent / "inventory").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
        self.runs: list[Run] = []

    def reconciler(self, phase: str, *argv: str, codes: Iterable[int] = (0,)) -> subprocess.CompletedProcess[str]:
        self.counting.take()
        seconds, done = run_timed([sys.executable, "-m", "reconciler.cli", *argv, str(self.stack)],
                                  self.env, self.work)
        calls = self.counting.take()
        expect(done, codes, f"reconciler {' '.join(argv)}")
        found = ""
        if phase == "create":
            summary = re.search(r"Apply complete: ([^.]*)", done.stdout)
            found = f"applied: {summary.group(1)}" if summary else ""
        elif phase == "drift":
            found = f"{json.loads(done.stdout)['count']} drifted"
        elif phase == "no-op":
            found = "no changes" if done.returncode == 0 else "CHANGES"
        self.runs.append(Run(phase, "reconciler", seconds, calls, found))
        return done

    def ansible(self, phase: str, *flags: str) -> None:
        env = {**self.env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOCALHOST_WARNING": "False",
               "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
               "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_NOCOLOR": "1"}
        self.counting.take()
        seconds, done = run_timed([str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
                                   "-i", str(self.book.parent / "inventory"), *flags, str(self.book)],
                                  env, self.book.parent)
        calls = self.counting.take()
        expect(done, (0,), " ".join(["ansible-playbook", *flags]))
        changed = changed_items(json.loads(done.stdout))
        found = {"create": f"{changed} changed", "no-op": "no changes" if not changed else f"{changed} changed",
                 "drift": f"{changed} would change"}[phase]
        self.runs.append(Run(phase, "ansible", seconds, calls, found))


def out_of_band(prefix: str, *, ansible_user: bool) -> None:
    """The same changes behind each tool's back (made between the counted runs)."""
    import boto3

    kms = boto3.client("kms", region_name=REGION)
    key = {i: kms.describe_key(KeyId=f"alias/{prefix}/key-{i}")["KeyMetadata"]["KeyId"] for i in (0, 1)}
    kms.update_key_description(KeyId=key[0], Description="changed by hand")
    kms.disable_key_rotation(KeyId=key[1])
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.put_secret_value(SecretId=f"{prefix}/s-0", SecretString="changed by hand")
    iam = boto3.client("iam", region_name=REGION)
    if ansible_user:
        iam.tag_user(UserName=user_name(prefix, 0), Tags=[{"Key": "n", "Value": "changed by hand"}])
    else:
        for key_meta in iam.list_access_keys(UserName=user_name(prefix, 0))["AccessKeyMetadata"]:
            iam.update_access_key(UserName=user_name(prefix, 0), AccessKeyId=key_meta["AccessKeyId"],
                                  Status="Inactive")


# -- the report -----------------------------------------------------------------------------------------
def top(calls: Mapping[str, int], count: int = 4) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))[:count])


def report(runs: list[Run]) -> str:
    lines = [f"{'phase':7s} {'tool':10s} {'wall s':>8s} {'calls':>6s} {'writes':>6s}  {'by service':52s} "
             "what it found", ""]
    for run in runs:
        services = " ".join(f"{s} {n}" for s, n in sorted(run.by_service().items()))
        lines.append(f"{run.phase:7s} {run.tool:10s} {run.seconds:8.2f} {run.total:6d} {run.writes:6d}  "
                     f"{services:52s} {run.found}")
        lines.append(f"{'':18s} top: {top(run.calls)}")
        writes = {op: n for op, n in run.calls.items() if is_write(op.split(':', 1)[1])}
        if writes:
            lines.append(f"{'':18s} writes: {top(writes, 8)}")
    lines += ["", f"{'phase':7s} {'time ansible/reconciler':>24s} {'calls ansible/reconciler':>25s} "
              f"{'writes ansible/reconciler':>26s}"]
    for phase in ("create", "no-op", "drift"):
        ours = next(r for r in runs if r.phase == phase and r.tool == "reconciler")
        theirs = next(r for r in runs if r.phase == phase and r.tool == "ansible")
        both = f"{theirs.writes}/{ours.writes}"
        lines.append(f"{phase:7s} {theirs.seconds / ours.seconds:23.1f}x {theirs.total / ours.total:24.2f}x "
                     f"{both:>26s}")
    return "\n".join(lines)


def versions() -> str:
    import ansible.release
    import boto3
    import moto

    galaxy = pathlib.Path(sys.executable).parent / "ansible-galaxy"
    listed = subprocess.run([str(galaxy), "collection", "list", "amazon.aws"], capture_output=True, text=True,
                            check=False).stdout + subprocess.run(
        [str(galaxy), "collection", "list", "community.aws"], capture_output=True, text=True, check=False).stdout
    collections_ = sorted(set(re.findall(r"^((?:amazon|community)\.aws)\s+(\S+)", listed, re.M)))
    return (f"{os.cpu_count()} cores, Python {platform.python_version()}, ansible-core "
            f"{ansible.release.__version__}, {', '.join(' '.join(c) for c in collections_)}, "
            f"boto3 {boto3.__version__}, moto {moto.__version__}, {time.strftime('%Y-%m-%d')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="keys, and as many IAM users and secrets (default 50)")
    args = parser.parse_args()
    missing = ansible_missing()
    if missing or not (pathlib.Path(sys.executable).parent / "ansible-playbook").exists():
        print(f"vs_ansible: Ansible is not installed in this Python ({missing or 'no ansible-playbook'}); "
              "install it with `pip install ansible` (it brings amazon.aws and community.aws)", file=sys.stderr)
        sys.exit(1)

    from reconciler.sandbox import server

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    moto = server.start(0)
    counting = Counting(moto._server.app)  # noqa: SLF001 - moto serves self._server.app per request
    moto._server.app = counting  # noqa: SLF001
    host, port = moto.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_URL": f"http://{host}:{port}",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
           "AWS_REGION": REGION, "PYTHONPATH": str(ROOT)}
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    print(f"{args.n} symmetric KMS keys (alias, description, tag, rotation) + {args.n} IAM users + {args.n} "
          "Secrets Manager secrets under key 0, per tool; calls counted by the sandbox")
    iam = boto3.client("iam", region_name=REGION)
    for i in range(args.n):  # reconciler's users exist beforehand (AccessKeyRotation never creates one)
        iam.create_user(UserName=user_name(RCL, i))
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.n, pathlib.Path(tmp), counting, env)
        bench.reconciler("create", "apply", "--auto-approve")
        bench.ansible("create")
        bench.reconciler("no-op", "plan", "--detailed-exitcode")
        bench.ansible("no-op", "--check")
        out_of_band(RCL, ansible_user=False)
        out_of_band(ANS, ansible_user=True)
        bench.reconciler("drift", "drift", "--format", "json", codes=(2,))
        bench.ansible("drift", "--check", "--diff")
    moto.stop()
    print(report(bench.runs))
    print(f"\nmachine: {versions()}")


if __name__ == "__main__":
    main()

"""Issue 11 item 1: an apply that creates one of every kind (a key, a vault,
a generated secret, an OIDC provider, a role granted the key, an access-key
rotation and a dynamic-user template), killed right after AWS call k, is
finished by the next apply with exactly the objects the manifests declare:
one key, one provider, one role, the user's keys all recorded, each secret
stored once, the journal empty, nothing left to plan.

CI runs a sample of k: every call that creates or stores something (a kill
right after it is where an orphan would be born); ``python bench/kill_sweep.py``
sweeps every k and prints the figures."""

from __future__ import annotations

import json
import pathlib
import shutil
import textwrap
import urllib.request
from collections.abc import Callable, Sequence

import boto3

from reconciler.aws import session
from tests.aws.test_i7_runtime_journal import Killed, KillAfter
from tests.conftest import run

STACK = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: Stack
    metadata: {name: every}
    spec: {region: us-east-1}
    ---
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: app}
    spec: {alias: every/app, protect: false, deletionWindowDays: 7}
    ---
    apiVersion: reconciler/v1
    kind: Vault
    metadata: {name: main}
    spec: {provider: app, default: true, store: {secretsmanager: {prefix: every/}}}
    ---
    apiVersion: reconciler/v1
    kind: Secret
    metadata: {name: made}
    spec: {generate: {length: 24}}
    ---
    apiVersion: reconciler/v1
    kind: OidcProvider
    metadata: {name: ci}
    spec: {url: "https://token.example.com", audiences: [sts.amazonaws.com]}
    ---
    apiVersion: reconciler/v1
    kind: IamRole
    metadata: {name: deploy}
    spec:
      trust: {oidc: {provider: ci, audience: sts.amazonaws.com, subject: "repo:acme/app:ref:refs/heads/main"}}
      grants: [{provider: app, actions: [encrypt, decrypt]}]
    ---
    apiVersion: reconciler/v1
    kind: AccessKeyRotation
    metadata: {name: app-user}
    spec:
      userName: app-user
      auth: {accessKey: {accessKeyId: {env: MGR_ID}, secretAccessKey: {env: MGR_SECRET}}}
      interval: 30d
      outputs: {accessKeyId: {secret: key-id}, secretAccessKey: {secret: key-secret}}
    ---
    apiVersion: reconciler/v1
    kind: DynamicIamTemplate
    metadata: {name: ci}
    spec: {defaultTtl: 1h, maxTtl: 2h, path: /leases/}
    """)
# call k names the same call in every run only one action at a time (tests/aws/test_i13_parallel_apply.py
# kills parallel applies)
SEQUENTIAL = ("--parallelism", "1")
CREATES = ("CreateKey", "CreateAlias", "CreateSecret", "CreateOpenIDConnectProvider", "CreateRole",
           "PutRolePolicy", "PutKeyPolicy", "CreateAccessKey", "GenerateDataKey", "PutSecretValue")


def reset(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()


def prepare(endpoint: str, directory: pathlib.Path, env: Callable[[str, str], None]) -> None:
    """An empty sandbox with the rotation's user and manager, and a fresh stack."""
    reset(endpoint)
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="app-user")
    iam.create_user(UserName="manager")
    key = iam.create_access_key(UserName="manager")["AccessKey"]
    env("MGR_ID", key["AccessKeyId"])
    env("MGR_SECRET", key["SecretAccessKey"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "stack.yaml").write_text(STACK)


def converged(directory: pathlib.Path) -> list[str]:
    """What differs from exactly the declared objects (empty: converged)."""
    problems: list[str] = []
    state = json.loads((directory / ".reconciler" / "state.json").read_text())
    if state["journal"]:
        problems.append(f"journal left open: {[j['address'] for j in state['journal']]}")
    kms = boto3.client("kms", region_name="us-east-1")
    live = [k["KeyId"] for k in kms.list_keys()["Keys"]
            if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"]
    if len(live) != 1:
        problems.append(f"{len(live)} live KMS keys")
    iam = boto3.client("iam", region_name="us-east-1")
    if len(iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]) != 1:
        problems.append("not exactly one OIDC provider")
    if [r["RoleName"] for r in iam.list_roles()["Roles"]] != ["deploy"]:
        problems.append("not exactly the one role")
    ids = state["resources"].get("AccessKeyRotation/app-user", {}).get("ids", {})
    recorded = {(ids.get(k) or {}).get("id") for k in ("current", "previous")} - {None}
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName="app-user")["AccessKeyMetadata"]}
    if not keys or keys - recorded:
        problems.append(f"access keys {sorted(keys)} not all recorded ({sorted(recorded)})")
    if iam.list_users(PathPrefix="/leases/")["Users"]:
        problems.append("a lease user exists")
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    for name in ("made", "key-id", "key-secret"):
        versions = [v["VersionId"] for v in sm.list_secret_version_ids(SecretId=f"every/{name}")["Versions"]
                    if v["VersionId"].startswith("rcl-")]
        numbers = [v.split("-")[1] for v in versions]
        if len(numbers) != len(set(numbers)):
            problems.append(f"{name}: a version number written twice")
        if name == "made" and len(versions) != 1:
            problems.append(f"the generated secret was stored {len(versions)} times")
    plan = run("plan", directory, "--detailed-exitcode")
    if plan.exit_code != 0:
        problems.append(f"plan after the rerun: exit {plan.exit_code}")
    return problems


def sweep(endpoint: str, base: pathlib.Path, env: Callable[[str, str], None],
          ks: Sequence[int] | None = None) -> tuple[list[tuple[int, str]], dict[int, list[str]], int]:
    """Kill after call k for each k (every k when None), rerun; (killed at, failures, calls)."""
    operations: list[str] = []
    listener = lambda _s, operation, _r: operations.append(operation)  # noqa: E731
    clean = base / "clean"
    prepare(endpoint, clean, env)
    session.add_call_listener(listener)
    try:
        assert run("apply", clean, "--auto-approve", *SEQUENTIAL).exit_code == 0
    finally:
        session.remove_call_listener(listener)
    total = len(operations)
    chosen = list(ks) if ks is not None else list(range(1, total + 1))
    killed: list[tuple[int, str]] = []
    failures: dict[int, list[str]] = {}
    for k in chosen:
        directory = base / f"k{k}"
        prepare(endpoint, directory, env)
        hook = KillAfter(k)
        session.register_hook("after-call", hook)
        try:
            try:
                run("apply", directory, "--auto-approve", *SEQUENTIAL)
            except Killed:
                pass
        finally:
            session.unregister_hook("after-call", hook)
        killed.append((k, hook.killed_at))
        again = run("apply", directory, "--auto-approve")
        problems = ([f"rerun exit {again.exit_code}: {again.output.strip().splitlines()[-1:]}"]
                    if again.exit_code != 0 else converged(directory))
        if problems:
            failures[k] = problems
        shutil.rmtree(directory, ignore_errors=True)
    return killed, failures, total


def sample(operations: Sequence[str]) -> list[int]:
    """The first call of each kind that creates or stores something, and the last
    (the full sweep is bench/kill_sweep.py)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(operations, 1):
        if op in CREATES:
            first.setdefault(op, i)
            last[op] = i
    return sorted(set(first.values()) | set(last.values()))


def test_killed_after_sampled_calls_of_an_apply_of_every_kind_the_next_apply_converges(aws, tmp_path, monkeypatch):
    operations: list[str] = []
    listener = lambda _s, operation, _r: operations.append(operation)  # noqa: E731
    prepare(aws, tmp_path / "count", monkeypatch.setenv)
    session.add_call_listener(listener)
    try:
        assert run("apply", tmp_path / "count", "--auto-approve", *SEQUENTIAL).exit_code == 0
    finally:
        session.remove_call_listener(listener)
    assert {"CreateKey", "CreateOpenIDConnectProvider", "CreateRole", "CreateAccessKey", "CreateSecret"} <= \
        set(operations)
    ks = sample(operations)
    killed, failures, _total = sweep(aws, tmp_path, monkeypatch.setenv, ks)
    assert {op for _k, op in killed} >= {"CreateKey", "CreateOpenIDConnectProvider", "CreateRole",
                                         "CreateAccessKey", "CreateSecret"}
    assert failures == {}, failures

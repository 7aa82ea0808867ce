"""Issue 9: an access-key rotation killed after any AWS call never strands a
consumer. A run is killed right after its k-th AWS call (a botocore
``after-call`` hook raising a BaseException, as in test_i7_runtime_journal:
nothing of ours can catch it, as nothing catches SIGKILL), for every k from
the first call the rotation's own change makes to the last (the calls before
it are refresh and plan: read-only, a kill there leaves nothing behind, and
sweeping them too made the file several times slower).

Right after each kill the outputs (``secret get``) name a live, active key
of the user (or, before the first key, do not exist yet). The one exception
is inherent to two output secrets: killed between the write of key-id and
the write of key-secret, key-id names the new key while key-secret is still
the old key's secret (both keys active); the tests assert that this happens
exactly for the kills in that window, and that the next run fixes it.

Then ``apply`` again at the same clock must converge: the journal empty; one
or two keys on the user, each of them state's current or previous key
(nothing orphaned); ``secret get`` giving a pair that works
(sts:GetCallerIdentity with it returns the user's ARN) whose id is the
current key; every stored version of an output with a number of its own, the
newest the one state records; ``plan --detailed-exitcode`` exiting 0.

Cases: (a) the apply that issues the first key (Secrets Manager and local
vaults); (b) a due rotation by ``apply`` (Secrets Manager; the sweep split in
two tests, even and odd k, to run in parallel) and ``reconciler rotate`` a
minute after the last rotation, so the user holds two keys and step 1 evicts
the previous one (local vault); (c) the previous key deactivated past grace
and deleted past twice grace (in the same cycles as (b)); and an interrupted
rotation finished by ``reconciler rotate`` instead of ``apply``."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import textwrap

import boto3
import botocore.exceptions
import botocore.loaders
import pytest

from reconciler.aws import session
from tests.aws.test_i7_runtime_journal import Killed, kill_after  # noqa: F401  (fixture)
from tests.aws.test_vaults import STORES, docs, key_doc, vault_doc
from tests.conftest import run, state_of

USER = "app-user"
ADDRESS = "AccessKeyRotation/app"
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
OUTPUTS = ("key-id", "key-secret")
ROTATION = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: AccessKeyRotation
    metadata: {name: app}
    spec:
      userName: app-user
      auth:
        accessKey:
          accessKeyId: {env: MGR_ID}
          secretAccessKey: {env: MGR_SECRET}
      interval: 30d
      gracePeriod: 1h
      outputs:
        accessKeyId: {secret: key-id}
        secretAccessKey: {secret: key-secret}
    """)
OUTPUT_WRITES = ("CreateSecret", "PutSecretValue")  # a Secrets Manager output written (local: no AWS call)

_MODELS: dict = {}


@pytest.fixture(autouse=True)
def _shared_models(monkeypatch):
    """Speed only: every botocore loader of this process shares one cache of
    parsed service models (each CLI run makes new sessions, and parsing the
    models again was half of a run's time). Nothing reconciler does changes."""
    original = botocore.loaders.Loader.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._cache = _MODELS.setdefault(tuple(self.search_paths), {})

    monkeypatch.setattr(botocore.loaders.Loader, "__init__", init)


def at(**delta: float) -> str:
    return (T0 + datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the sandbox, read directly ------------------------------------------------------------------
_CLIENTS: dict = {}


def _client(service: str):
    """One client per service and sandbox (the test's own identity), made once."""
    key = (service, os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client(service, region_name="us-east-1")
    return _CLIENTS[key]


def _iam():
    return _client("iam")


def _users(monkeypatch) -> None:
    """The target user and the manager, whose key the rotation's auth reads from MGR_ID / MGR_SECRET."""
    iam = _iam()
    iam.create_user(UserName=USER)
    iam.create_user(UserName="key-manager")
    key = iam.create_access_key(UserName="key-manager")["AccessKey"]
    monkeypatch.setenv("MGR_ID", key["AccessKeyId"])
    monkeypatch.setenv("MGR_SECRET", key["SecretAccessKey"])


def _keys() -> dict[str, str]:
    """The target user's access keys: id -> Active / Inactive."""
    return {k["AccessKeyId"]: k["Status"] for k in _iam().list_access_keys(UserName=USER)["AccessKeyMetadata"]}


def _works(key_id: str, secret: str) -> bool:
    """The pair authenticates as the target user (the sandbox may or may not
    refuse deleted or inactive keys itself: the caller checks the status too)."""
    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret)
    try:
        arn = sts.get_caller_identity()["Arn"]
    except botocore.exceptions.ClientError:
        return False
    return arn == _iam().get_user(UserName=USER)["User"]["Arn"]


# -- the stack ------------------------------------------------------------------------------------
def _write(directory: pathlib.Path, store: str, rotation: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stack.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec:\n  region: us-east-1\n")
    (directory / "main.yaml").write_text(docs(key_doc(), vault_doc(STORES[store]), *([ROTATION] if rotation else [])))


def _run(monkeypatch, now: str, *args):
    monkeypatch.setenv("RECONCILER_NOW", now)
    return run(*args)


def _apply(directory, monkeypatch, now: str) -> None:
    result = _run(monkeypatch, now, "apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output


def _get(directory, name: str) -> str | None:
    result = run("secret", "get", f"main/{name}", "--dir", directory)
    return result.stdout if result.exit_code == 0 else None


def _numbers(directory, name: str) -> list[int]:
    result = run("secret", "history", f"main/{name}", "--dir", directory)
    assert result.exit_code == 0, result.output
    return [int(line.split("\t", 1)[0]) for line in result.stdout.splitlines()]


def _token_number(version_id: str) -> int:
    """Our number in a Secrets Manager version's token (rcl-v<number>-..., see stores/secretsmanager.py)."""
    match = re.match(r"rcl-v(\d+)-", version_id)
    assert match is not None, version_id  # every version of an output is ours
    return int(match.group(1))


def _ids(directory) -> dict:
    return state_of(directory)["resources"][ADDRESS]["ids"]


# -- one trial ------------------------------------------------------------------------------------
class Sweep:
    """Kill a command after its k-th AWS call, check what the killed run left,
    apply again, check it converged. ``known``: every pair the outputs held
    once converged (id -> secret), to tell a matching pair from a mixed one.

    ``secret get`` reads the outputs, except when their stored entries (read
    raw: ciphertext) are byte for byte those of the last read: then what that
    read gave is used again (speed only)."""

    def __init__(self, directory: pathlib.Path, store: str, monkeypatch, kill_after, first: bool = False) -> None:
        self.directory, self.store, self.monkeypatch, self.kill_after = directory, store, monkeypatch, kill_after
        self.first = first
        self.known: dict[str, str] = {}
        self.killed_at: list[str] = []
        self.mixed: list[int] = []  # kills after which key-id was new while key-secret was still the old one
        self.failures: list[str] = []
        self._read: tuple[tuple, tuple] | None = None  # (raw entries, what secret get gave)

    def reset(self) -> None:
        self.known.clear()
        self._read = None

    # -- reading the outputs ----------------------------------------------------------------
    def _raw(self) -> tuple:
        """The outputs' entries as stored (ciphertext only): for Secrets Manager
        the current version's envelope (every write of a new pair changes it)."""
        if self.store == "local":
            paths = [self.directory / ".reconciler" / "vault" / f"{name}.json" for name in OUTPUTS]
            return tuple(path.read_bytes() if path.exists() else None for path in paths)
        sm, found = _client("secretsmanager"), []
        for name in OUTPUTS:
            try:
                value = sm.get_secret_value(SecretId=f"rcl/team/{name}")
            except botocore.exceptions.ClientError as exc:
                found.append(exc.response["Error"]["Code"])
                continue
            found.append((value["VersionId"], value.get("SecretBinary") or value.get("SecretString")))
        return tuple(found)

    def outputs(self) -> tuple[str | None, str | None]:
        """What ``secret get`` gives for key-id and key-secret (None: it fails)."""
        raw = self._raw()
        if self._read is None or self._read[0] != raw:
            self._read = (raw, tuple(_get(self.directory, name) for name in OUTPUTS))
        return self._read[1]  # type: ignore[return-value]

    def versions(self, where: tuple, ids: dict) -> None:
        """Every stored version of each output has a number of its own (read raw:
        ``secret history`` shows one version per number whatever is stored, the
        last write of a number winning), and the newest is the one state records."""
        for which, name in zip(("accessKeyId", "secretAccessKey"), OUTPUTS):
            if self.store == "local":
                document = json.loads((self.directory / ".reconciler" / "vault" / f"{name}.json").read_text())
                numbers = [v["version"] for v in document["versions"]]
            else:
                sm = _client("secretsmanager")
                listed = sm.list_secret_version_ids(SecretId=f"rcl/team/{name}", IncludeDeprecated=True)
                numbers = sorted(_token_number(v["VersionId"]) for v in listed["Versions"])
            assert len(numbers) == len(set(numbers)), (where, name, numbers)
            assert max(numbers) == ids["outputs"][which]["version"], (where, name, numbers, ids["outputs"][which])

    def history(self) -> None:
        """``secret history``: one line per kept version, numbers newest first, never repeated."""
        for name in OUTPUTS:
            numbers = _numbers(self.directory, name)
            assert numbers == sorted(set(numbers), reverse=True), (name, numbers)

    # -- runs -----------------------------------------------------------------------------------
    def clean(self, calls, now: str, *command: str) -> list[str]:
        """The uninterrupted run: the names of its AWS calls."""
        calls.clear()
        result = _run(self.monkeypatch, now, *command)
        assert result.exit_code == 0, result.output
        names = [op for _service, op, _region in calls.calls]
        self.converged(now)
        return names

    def trial(self, k: int, now: str, *command: str) -> bool:
        """One kill and the apply after it; whether the killed run had opened
        the rotation's journal (killed before that, it changed nothing). A
        rerun that fails is recorded in ``failures``, the stack repaired by
        hand so that the sweep goes on, and the test fails at its end."""
        hook = self.kill_after(k)
        try:
            with pytest.raises(Killed):
                _run(self.monkeypatch, now, *command)
        finally:
            session.unregister_hook("after-call", hook)
        self.killed_at.append(hook.killed_at)
        opened = any(j["address"] == ADDRESS for j in state_of(self.directory)["journal"])
        self.after_kill(k, hook.killed_at)
        try:
            resumed = _run(self.monkeypatch, now, "apply", self.directory, "--auto-approve")
            assert resumed.exit_code == 0, " ".join(resumed.output.split()).replace(str(self.directory), "DIR")
            self.converged(now, (k, hook.killed_at))
        except AssertionError as exc:
            self.failures.append(f"k={k} (killed after {hook.killed_at}): {str(exc).splitlines()[0]}")
            self.repair(now)
        return opened

    def repair(self, now: str) -> None:
        """By hand, what an operator would do after a failed rerun, so that the
        sweep can go on: delete the keys neither state nor the open journal
        knows, apply again; if that is refused too, apply once with
        evictUnknownKeys: true. Not checked: the next trial checks again."""
        recorded = state_of(self.directory)
        ids = recorded["resources"].get(ADDRESS, {}).get("ids", {})
        known = {(ids.get(w) or {}).get("id") for w in ("current", "previous")}
        for journal in recorded["journal"]:
            known |= set(journal["data"].get("known") or ()) | {journal["data"].get("newKey")}
        for key in set(_keys()) - known:
            _iam().delete_access_key(UserName=USER, AccessKeyId=key)
        manifest = self.directory / "main.yaml"
        declared = manifest.read_text()
        if _run(self.monkeypatch, now, "apply", self.directory, "--auto-approve").exit_code != 0:
            manifest.write_text(declared.replace("  interval: 30d\n", "  interval: 30d\n  evictUnknownKeys: true\n"))
            _apply(self.directory, self.monkeypatch, now)
            manifest.write_text(declared)
            _apply(self.directory, self.monkeypatch, now)

    # -- the checks -----------------------------------------------------------------------------
    def after_kill(self, k: int, killed_at: str) -> None:
        """What the killed run left: the outputs name a live, active key of the
        user (before the first key: nothing yet, or the id alone)."""
        where = (k, killed_at)
        key_id, secret = self.outputs()
        keys = _keys()
        if key_id is None:
            assert self.first and secret is None, where  # only the first issuance has no outputs yet
            return
        assert keys.get(key_id) == "Active", (where, key_id, keys)  # never a deleted or inactive key
        if secret is None:
            assert self.first, where  # the first issuance, killed between its two writes
            return
        if key_id in self.known:
            assert self.known[key_id] == secret, where
        elif secret in self.known.values():  # the id written, the secret not yet (see the module docstring)
            [old] = [key for key, known in self.known.items() if known == secret]
            assert keys.get(old) == "Active", (where, old, keys)  # the secret's own key still works
            self.mixed.append(k)
            return
        assert _works(key_id, secret), where

    def converged(self, now: str, where: tuple = ()) -> None:
        recorded = state_of(self.directory)
        assert recorded["journal"] == [], (where, recorded["journal"])
        ids = recorded["resources"][ADDRESS]["ids"]
        current = ids["current"]["id"]
        previous = (ids.get("previous") or {}).get("id")
        keys = _keys()
        assert 1 <= len(keys) <= 2, (where, keys)
        assert set(keys) <= {current, previous}, (where, keys, ids)  # no orphan
        assert keys[current] == "Active", (where, keys)
        key_id, secret = self.outputs()
        assert key_id is not None and key_id == current, (where, key_id, current)
        assert secret is not None and _works(key_id, secret), where
        assert self.known.setdefault(key_id, secret) == secret, where
        plan = _run(self.monkeypatch, now, "plan", self.directory, "--detailed-exitcode")
        assert plan.exit_code == 0, (where, plan.output)
        # what reconciler did itself, even in a killed run, is never reported as done by someone else
        drift = plan.output.split("\n\n", 2)[1] if "changed outside of reconciler" in plan.output else ""
        assert not drift, f"{where}: reconciler's own change reported as drift: {' '.join(drift.split())}"
        self.versions(where, ids)


def _planned(calls, monkeypatch, now: str, *command: str) -> list[str]:
    """The calls of refresh and plan alone (``command``: plan, or rotate --dry-run)."""
    calls.clear()
    planned = _run(monkeypatch, now, *command)
    assert planned.exit_code == 0, planned.output
    names = [op for _s, op, _r in calls.calls]
    assert all(op.startswith(("Describe", "Get", "List")) for op in names), names
    return names


def _start(clean: list[str], planned: list[str]) -> int:
    """The (1-based) index of the first call the rotation's own change makes:
    the clean run first makes the plan's calls (refresh runs in threads: the
    same calls, not always in the same order)."""
    assert sorted(clean[:len(planned)]) == sorted(planned), (clean, planned)
    assert len(clean) > len(planned), (clean, planned)
    return len(planned) + 1


def _window(clean: list[str], start: int) -> set[int]:
    """The kills after the first output's write and before the second's (Secrets
    Manager only: the local store writes without AWS calls)."""
    writes = [i for i, op in enumerate(clean, 1) if op in OUTPUT_WRITES and i >= start]
    return set(range(writes[0], writes[1])) if len(writes) == 2 else set()


def _restore(directory: pathlib.Path, snapshot: pathlib.Path, store: str) -> None:
    """Back to the key and vault applied, no rotation yet: the user without
    keys, no outputs, the state as it was then."""
    iam = _iam()
    for key in _keys():
        iam.delete_access_key(UserName=USER, AccessKeyId=key)
    if store == "secretsmanager":
        sm = _client("secretsmanager")
        for name in OUTPUTS:
            try:
                sm.delete_secret(SecretId=f"rcl/team/{name}", ForceDeleteWithoutRecovery=True)
            except sm.exceptions.ResourceNotFoundException:
                pass
    shutil.rmtree(directory / ".reconciler")
    shutil.copytree(snapshot, directory / ".reconciler")


# -- (b) a due rotation by apply, (c) the previous key's retirement ---------------------------------
def _cycle(i: int) -> tuple[str, str, str]:
    """Cycle i's clock: the rotation due (31 days after the last), past grace
    (deactivate the previous key), past twice grace (delete it)."""
    day = 31 * i
    return at(days=day), at(days=day, minutes=90), at(days=day, hours=3)


def _due_rotation_and_retirement(calls, monkeypatch, tmp_path, kill_after, half: int) -> None:
    """One stack lives through rotations, each 31 days after the last; each
    cycle has three phases: the due rotation, the deactivation past grace, the
    deletion past twice grace. Cycle j kills each phase after its call number
    start + 2j + half (``half``: the even or the odd ones, two tests so that
    they run in parallel), or runs it uninterrupted when it has no such call.
    After each phase converges: a new current key and the old one previous,
    both active; the previous inactive, the outputs untouched; the previous
    deleted."""
    store = "secretsmanager"
    _users(monkeypatch)
    directory = tmp_path / "stack"
    _write(directory, store)
    sweep = Sweep(directory, store, monkeypatch, kill_after)
    _apply(directory, monkeypatch, at())
    sweep.converged(at())
    apply = ("apply", directory, "--auto-approve")
    cleans, starts = [], []
    for now in _cycle(1):  # the clean run of each phase: its calls
        planned = _planned(calls, monkeypatch, now, "plan", directory)
        cleans.append(sweep.clean(calls, now, *apply))
        starts.append(_start(cleans[-1], planned))
    own = [clean[start - 1:] for clean, start in zip(cleans, starts)]
    assert own[0].index("CreateAccessKey") < own[0].index("GetCallerIdentity") < own[0].index("PutSecretValue")
    assert own[1:] == [["ListAccessKeys", "UpdateAccessKey"], ["ListAccessKeys", "DeleteAccessKey"]]
    swept: list[list[str]] = [[], [], []]
    for j in range((max(map(len, own)) - half + 1) // 2):
        for phase, now in enumerate(_cycle(2 + j)):
            before, failed = _ids(directory), len(sweep.failures)
            k = starts[phase] + 2 * j + half
            if k <= len(cleans[phase]):
                sweep.trial(k, now, *apply)
                swept[phase].append(sweep.killed_at[-1])
            else:
                _apply(directory, monkeypatch, now)
            if len(sweep.failures) > failed:
                continue  # repaired by hand (recorded: the test fails at its end)
            ids, keys = _ids(directory), _keys()
            match phase:
                case 0:  # rotated: the new key current, the old one previous and still active
                    assert ids["current"]["id"] != before["current"]["id"], (j, k)
                    assert ids["previous"]["id"] == before["current"]["id"], (j, k)
                    assert keys == {ids["current"]["id"]: "Active", ids["previous"]["id"]: "Active"}, (j, k)
                case 1:  # past grace: the previous key deactivated, the outputs untouched
                    assert ids["current"] == before["current"] and ids["outputs"] == before["outputs"], (j, k)
                    assert keys[ids["previous"]["id"]] == "Inactive", (j, k)
                case 2:  # past twice grace: the previous key deleted
                    assert "previous" not in ids and keys == {ids["current"]["id"]: "Active"}, (j, k)
    assert not sweep.failures, "\n".join(sweep.failures)
    assert swept == [own[0][half::2], own[1][half::2], own[2][half::2]], swept
    # the one moment a killed run leaves the outputs mixed: key-id written, key-secret not yet
    window = {k for k in _window(cleans[0], starts[0]) if (k - starts[0]) % 2 == half}
    assert set(sweep.mixed) == window, (sweep.mixed, window, cleans[0])
    sweep.history()


def test_due_rotation_and_retirement_killed_after_each_even_call_the_next_apply_converges(
        aws, calls, monkeypatch, tmp_path, kill_after):
    _due_rotation_and_retirement(calls, monkeypatch, tmp_path, kill_after, 0)


# -- (a) the first key --------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["secretsmanager", "local"])
def test_first_key_killed_after_each_call_the_next_apply_converges(aws, calls, monkeypatch, tmp_path,
                                                                   kill_after, store):
    """The apply that issues the first key (key and vault applied before),
    killed after each call of the rotation's change: right after the kill the
    outputs do not exist, or key-id alone names an active key (killed between
    the two writes), or both form a working pair; the next apply converges."""
    _users(monkeypatch)
    directory = tmp_path / "stack"
    _write(directory, store, rotation=False)
    _apply(directory, monkeypatch, at())
    snapshot = tmp_path / "snapshot"
    shutil.copytree(directory / ".reconciler", snapshot)
    _write(directory, store)
    sweep = Sweep(directory, store, monkeypatch, kill_after, first=True)
    planned = _planned(calls, monkeypatch, at(), "plan", directory)
    clean = sweep.clean(calls, at(), "apply", directory, "--auto-approve")
    start = _start(clean, planned)
    for k in range(start, len(clean) + 1):
        _restore(directory, snapshot, store)
        sweep.reset()
        sweep.trial(k, at(), "apply", directory, "--auto-approve")
        assert len(_keys()) == 1, k  # a key made before the kill was deleted, or is the current one
    assert not sweep.failures, "\n".join(sweep.failures)
    assert sweep.mixed == []
    assert len(sweep.killed_at) == len(clean) - start + 1
    assert {"CreateAccessKey", "GenerateDataKey", "GetCallerIdentity"} <= set(sweep.killed_at)
    if store == "secretsmanager":
        assert sweep.killed_at.count("CreateSecret") == 2
    sweep.history()


# -- (b), (c): the other half ---------------------------------------------------------------------
def test_due_rotation_and_retirement_killed_after_each_odd_call_the_next_apply_converges(
        aws, calls, monkeypatch, tmp_path, kill_after):
    _due_rotation_and_retirement(calls, monkeypatch, tmp_path, kill_after, 1)


# -- (b) reconciler rotate NAME, the user holding two keys ------------------------------------------
@pytest.mark.parametrize("store", ["local"])
def test_rotate_command_killed_after_each_call_the_next_apply_converges(
        aws, calls, monkeypatch, tmp_path, kill_after, store):
    """``reconciler rotate app`` a minute after the last rotation (not due; the
    previous key still in its grace period), so the user holds two keys and
    step 1 evicts the previous one first. Killed after each call of the
    rotation, then ``apply``: the evicted key is gone, never the current one."""
    _users(monkeypatch)
    directory = tmp_path / "stack"
    _write(directory, store)
    sweep = Sweep(directory, store, monkeypatch, kill_after)
    _apply(directory, monkeypatch, at())
    rotate = ("rotate", "app", "--dir", directory)
    sweep.clean(calls, at(minutes=1), *rotate)  # two keys from now on
    planned = _planned(calls, monkeypatch, at(minutes=2), *rotate, "--dry-run")
    clean = sweep.clean(calls, at(minutes=2), *rotate)
    start = _start(clean, planned)
    assert clean[start - 1:].index("DeleteAccessKey") < clean[start - 1:].index("CreateAccessKey")  # evict first
    for k in range(start, len(clean) + 1):
        before, failed = _ids(directory), len(sweep.failures)
        opened = sweep.trial(k, at(minutes=2 + k), *rotate)
        if len(sweep.failures) > failed:
            continue  # repaired by hand (recorded: the test fails at its end)
        ids, keys = _ids(directory), _keys()
        assert keys == {ids["current"]["id"]: "Active", ids["previous"]["id"]: "Active"}, k
        if not opened:  # killed before the rotation began: nothing changed (apply has nothing due)
            assert ids == before, k
            continue
        assert ids["previous"]["id"] == before["current"]["id"], k  # the journal's rotation was finished
        assert before["previous"]["id"] not in keys, k  # evicted
    assert not sweep.failures, "\n".join(sweep.failures)
    assert {"DeleteAccessKey", "CreateAccessKey", "GetCallerIdentity"} <= set(sweep.killed_at)
    assert set(sweep.mixed) == _window(clean, start), (sweep.mixed, clean)
    sweep.history()


# -- resumed by rotate -----------------------------------------------------------------------------
@pytest.mark.parametrize("operation", ["CreateAccessKey", "PutSecretValue"])
def test_an_interrupted_rotation_is_finished_by_rotate_too(aws, monkeypatch, tmp_path, kill_after, operation):
    """A due rotation killed after its new key was made (not yet sealed) or
    after key-id was written (key-secret not yet): ``reconciler rotate`` then
    finishes that rotation from the journal, not a second one on top of it
    (killed after the write, the key key-id names is the one made current)."""
    _users(monkeypatch)
    directory = tmp_path / "stack"
    _write(directory, "secretsmanager")
    sweep = Sweep(directory, "secretsmanager", monkeypatch, kill_after)
    _apply(directory, monkeypatch, at())
    sweep.converged(at())
    first = _ids(directory)["current"]["id"]
    hook = kill_after(1, operation)
    try:
        with pytest.raises(Killed):
            _run(monkeypatch, at(days=31), "apply", directory, "--auto-approve")
    finally:
        session.unregister_hook("after-call", hook)
    [journal] = state_of(directory)["journal"]
    assert journal["operation"] == "rotate"
    sweep.after_kill(1, operation)
    written = sweep.outputs()[0]
    rotated = _run(monkeypatch, at(days=31), "rotate", "app", "--dir", directory)
    assert rotated.exit_code == 0, " ".join(rotated.output.split()).replace(str(directory), "DIR")
    sweep.converged(at(days=31))
    ids = _ids(directory)
    assert ids["previous"]["id"] == first
    assert set(_keys()) == {first, ids["current"]["id"]}
    if operation == "PutSecretValue":
        assert written != first and ids["current"]["id"] == written  # the journal's key, not a third one

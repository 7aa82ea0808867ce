"""Issue 13 item 2: apply runs independent actions side by side (``--parallelism
N``, default 10), each only after what it depends on completed, within AWS's
request quotas (aws/quotas.py), state written after every action; a run killed
at any point of a parallel apply is finished by the next one.

A botocore event hook records each write: when it was asked for
(``before-parameter-build``, with its parameters), sent (``before-send``: after any wait for its quota) and
answered (``after-call``), and by which thread."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

import boto3
import pytest

from reconciler.aws import quotas, session
from tests.aws.test_i6_keys_quota import inject, json_error  # noqa: F401  (fixture)
from tests.aws.test_i7_runtime_journal import READS, Killed, KillAfter
from tests.aws.test_vaults import STORES, docs, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

KEYS = 6
SECRETS = 3


def manifests(keys: int = KEYS, secrets: int = SECRETS) -> str:
    """``keys`` independent keys, and a vault (Secrets Manager, under one more key) with ``secrets`` secrets."""
    return docs(*(key_doc(name=f"k{i}") for i in range(keys)), key_doc(name="vault-key"),
                vault_doc(STORES["secretsmanager"], provider="vault-key"),
                *(secret_doc(f"s{i}", "generate: {length: 16}") for i in range(secrets)))


class Recorder:
    """Every write: operation, params, asked / sent / answered times, thread;
    the most in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.current: dict[int, dict[str, Any]] = {}  # by thread: a thread makes one call at a time
        self.in_flight = self.most_in_flight = 0

    def asked(self, model, params, **_kwargs) -> None:
        if model.name.startswith(READS):
            return
        call = {"op": model.name, "params": params, "asked": time.monotonic(), "sent": None,
                "answered": None, "thread": threading.current_thread().name, "parsed": None}
        with self.lock:
            self.calls.append(call)
            self.current[threading.get_ident()] = call
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def sent(self, **_kwargs) -> None:
        call = self.current.get(threading.get_ident())
        if call is not None and call["sent"] is None:
            call["sent"] = time.monotonic()

    def answered(self, model, parsed, **_kwargs) -> None:
        call = self.current.pop(threading.get_ident(), None)
        if call is None:
            return
        call["answered"], call["parsed"] = time.monotonic(), parsed
        with self.lock:
            self.in_flight -= 1

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["op"] == operation]


@pytest.fixture()
def recorder():
    recording = Recorder()
    hooks = [("before-parameter-build", recording.asked), ("before-send", recording.sent),
             ("after-call", recording.answered)]
    for event, handler in hooks:
        session.register_hook(event, handler)
    yield recording
    for event, handler in hooks:
        session.unregister_hook(event, handler)


def test_independent_actions_run_side_by_side_after_what_they_depend_on_within_the_quotas(
        aws, stack, recorder, monkeypatch):
    monkeypatch.setitem(quotas.QUOTAS, ("kms", "CreateKey"), 3)  # 7 keys: at least 2 s of pacing
    directory = stack({"main.yaml": manifests()})
    applied = run("apply", directory, "--auto-approve", "--parallelism", "4")
    assert applied.exit_code == 0, applied.output
    assert f"Apply complete: {KEYS + 1 + 1 + SECRETS} create." in applied.output  # keys, vault, secrets

    # at most 4 at a time, from at most 4 apply threads; more than one at a time
    assert 1 < recorder.most_in_flight <= 4
    threads = {c["thread"] for c in recorder.calls}
    assert 1 < len(threads) <= 4 and all(t.startswith("reconciler-apply") for t in threads)

    # dependency order: every write on the vault's key is answered before the first secret is stored
    [vault_key] = [c["parsed"]["KeyMetadata"]["KeyId"] for c in recorder.of("CreateKey")
                   if {"TagKey": "reconciler:address", "TagValue": "KmsProvider/vault-key"} in c["params"]["Tags"]]
    on_vault_key = [c for c in recorder.calls if vault_key in (c["params"].get("KeyId"), c["params"].get("TargetKeyId"))
                    or c["parsed"] and c["parsed"].get("KeyMetadata", {}).get("KeyId") == vault_key]
    stores = recorder.of("CreateSecret")
    assert len(stores) == SECRETS and len(on_vault_key) >= 2  # CreateKey, CreateAlias at least
    assert max(c["answered"] for c in on_vault_key) < min(c["asked"] for c in stores)
    # ...while the independent keys' writes overlapped one another
    spans = sorted((c["asked"], c["answered"]) for c in recorder.of("CreateKey"))
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))

    # the quota: no 1-second window holds more than 3 CreateKey requests (the tolerance is the
    # time between the grant and this hook in the same thread, never a whole slot)
    sent = sorted(c["sent"] for c in recorder.of("CreateKey"))
    assert len(sent) == KEYS + 1
    assert all(sent[i + 3] - sent[i] >= quotas.WINDOW - 0.1 for i in range(len(sent) - 3)), sent

    recorded = state_of(directory)
    assert len(recorded["resources"]) == KEYS + 1 + 1 + SECRETS and recorded["journal"] == []
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_parallelism_one_runs_the_plan_in_its_order_one_action_at_a_time(aws, stack, recorder):
    directory = stack({"main.yaml": manifests(keys=2, secrets=2)})
    applied = run("apply", directory, "--auto-approve", "--parallelism", "1")
    assert applied.exit_code == 0, applied.output
    assert recorder.most_in_flight == 1
    assert {c["thread"] for c in recorder.calls} == {threading.current_thread().name}  # no worker threads
    addresses = [next(t["TagValue"] for t in c["params"]["Tags"] if t["TagKey"] == "reconciler:address")
                 for c in recorder.of("CreateKey")]
    assert addresses == ["KmsProvider/k0", "KmsProvider/k1", "KmsProvider/vault-key"]  # the plan's order


def test_a_failure_stops_new_actions_lets_running_ones_finish_and_says_how_many_were_applied(
        aws, stack, inject):
    directory = stack({"main.yaml": manifests(keys=3, secrets=2)})
    inject("before-send.secrets-manager.CreateSecret", json_error("AccessDeniedException", "not allowed"))
    failed = run("apply", directory, "--auto-approve")
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    [line] = [line for line in failed.output.splitlines() if line.startswith("Error:")]
    total = 3 + 1 + 1 + 2
    assert line.startswith("Error: Secret/s")
    assert f"(5 of {total} changes were applied and recorded in state, 1 more failed; run plan" in line
    recorded = state_of(directory)
    assert set(recorded["resources"]) == {"KmsProvider/k0", "KmsProvider/k1", "KmsProvider/k2",
                                          "KmsProvider/vault-key", "Vault/main"}
    inject.clear()
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def live_keys() -> list[str]:
    kms = boto3.client("kms", region_name="us-east-1")
    return [k["KeyId"] for k in kms.list_keys()["Keys"]
            if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"]


def test_a_parallel_apply_killed_after_any_sampled_write_is_finished_by_the_next_one(aws, stack, tmp_path, calls):
    clean = stack({"main.yaml": manifests(keys=3, secrets=2)})
    assert run("apply", clean, "--auto-approve").exit_code == 0
    writes = len(calls.writes)
    assert writes >= 10
    for k in sorted({2, writes // 2, writes - 2}):
        urllib.request.urlopen(urllib.request.Request(f"{aws}/moto-api/reset", method="POST")).read()
        directory = tmp_path / f"killed-{k}"
        directory.mkdir()
        (directory / "stack.yaml").write_text((clean / "stack.yaml").read_text())
        (directory / "main.yaml").write_text((clean / "main.yaml").read_text())
        hook = KillAfter(k, writes=True)
        session.register_hook("after-call", hook)
        try:
            with pytest.raises(Killed):
                run("apply", directory, "--auto-approve")
        finally:
            session.unregister_hook("after-call", hook)
        again = run("apply", directory, "--auto-approve")
        assert again.exit_code == 0, (k, hook.killed_at, again.output)
        recorded = state_of(directory)
        assert recorded["journal"] == [] and recorded["deposed"] == {}, (k, hook.killed_at)
        keys = {r["ids"]["keyId"] for a, r in recorded["resources"].items() if a.startswith("KmsProvider/")}
        assert sorted(live_keys()) == sorted(keys) and len(keys) == 4, (k, hook.killed_at)  # no orphan
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        names = sorted(s["Name"] for s in sm.list_secrets()["SecretList"])
        assert names == ["rcl/team/s0", "rcl/team/s1"], (k, hook.killed_at)
        for name in names:  # generated and stored once, never twice
            versions = [v for v in sm.list_secret_version_ids(SecretId=name)["Versions"]
                        if v["VersionId"].startswith("rcl-")]
            assert len(versions) == 1, (k, hook.killed_at, name)
        assert run("plan", directory, "--detailed-exitcode").exit_code == 0, (k, hook.killed_at)


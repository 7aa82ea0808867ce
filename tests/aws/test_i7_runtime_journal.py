"""Issue 7 item 3: the typed journal. A run killed after any AWS call of an
apply that creates keys and secrets is finished by the next one: zero
orphaned keys, no value generated twice. The kill is a BaseException raised
by a botocore ``after-call`` hook (nothing of ours catches it, as nothing
catches SIGKILL), right after AWS answered and before the state write."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator

import boto3
import pytest

from reconciler.aws import session
from tests.aws.test_i6_keys_quota import inject, json_error  # noqa: F401  (fixture)
from tests.aws.test_vaults import STORES, docs, get, key_doc, secret_doc, vault_doc
from tests.conftest import ROOT, run, state_of

KEY = """\
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: main}
    spec:
      alias: team/main
      description: main key
      tags: {team: platform}
      rotation: {enabled: true}
      protect: false
      deletionWindowDays: 7
    """


class Killed(BaseException):
    """The process dying: no `except Exception` of ours can swallow it."""


READS = ("Describe", "Get", "List")


class KillAfter:
    """An after-call hook that kills the run right after AWS answered call
    number ``at`` (``operation``: only counting that operation's calls;
    ``writes``: only counting calls that change something)."""

    def __init__(self, at: int, operation: str = "", writes: bool = False) -> None:
        self.at, self.operation, self.writes, self.seen = at, operation, writes, 0
        self.killed_at = ""

    def __call__(self, model, **_kwargs) -> None:
        if (self.operation and model.name != self.operation) or (self.writes and model.name.startswith(READS)):
            return
        self.seen += 1
        if self.seen == self.at:
            self.killed_at = model.name
            raise Killed(model.name)


@pytest.fixture()
def kill_after() -> Iterator:
    hooks: list[KillAfter] = []

    def install(at: int, operation: str = "", writes: bool = False) -> KillAfter:
        hook = KillAfter(at, operation, writes)
        session.register_hook("after-call", hook)
        hooks.append(hook)
        return hook

    yield install
    for hook in hooks:
        session.unregister_hook("after-call", hook)


def live_keys() -> list[str]:
    """Keys in the sandbox that are not scheduled for deletion (an orphan would be one more)."""
    kms = boto3.client("kms", region_name="us-east-1")
    keys = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    return [k for k in keys if kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] != "PendingDeletion"]


def killed_apply(directory, hook: KillAfter) -> None:
    with pytest.raises(Killed):
        run("apply", directory, "--auto-approve")
    session.unregister_hook("after-call", hook)


def test_killed_between_create_key_and_state_write_is_adopted_by_the_next_plan(aws, stack, kill_after):
    directory = stack({"key.yaml": KEY})
    killed_apply(directory, kill_after(1, "CreateKey"))
    recorded = state_of(directory)
    assert recorded["resources"] == {}  # the key exists, state does not know it...
    [journal] = recorded["journal"]  # ...but the journal recorded the intent before the call
    assert (journal["address"], journal["operation"], journal["step"]) == ("KmsProvider/main", "create", "create-key")
    [key] = live_keys()
    tags = {t["TagKey"]: t["TagValue"]
            for t in boto3.client("kms", region_name="us-east-1").list_resource_tags(KeyId=key)["Tags"]}
    assert tags == {"team": "platform", "reconciler:stack": "test", "reconciler:address": "KmsProvider/main",
                    "reconciler:operation": journal["operationId"]}

    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    text = " ".join(plan.output.split())
    assert (f"resuming interrupted create of KmsProvider/main (operation {journal['operationId']}): "
            f"found key {key}") in text
    assert "~ KmsProvider/main" in plan.output and "+ KmsProvider/main" not in plan.output
    assert state_of(directory)["journal"] == [journal]  # plan writes nothing

    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert live_keys() == [key]  # adopted, not created again: zero orphans
    recorded = state_of(directory)
    assert recorded["journal"] == [] and recorded["resources"]["KmsProvider/main"]["ids"]["keyId"] == key
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.describe_key(KeyId="alias/team/main")["KeyMetadata"]["KeyId"] == key  # converged after adoption
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0  # our reconciler:* tags are never drift


def test_an_interrupted_create_that_made_nothing_is_rolled_back_and_said(aws, stack, kill_after):
    directory = stack({"key.yaml": KEY})
    killed_apply(directory, kill_after(1, "CreateKey"))
    [journal] = state_of(directory)["journal"]
    [key] = live_keys()
    boto3.client("kms", region_name="us-east-1").untag_resource(
        KeyId=key, TagKeys=["reconciler:operation", "reconciler:stack", "reconciler:address"])
    # as if CreateKey never got through: no key carries the operation's tag (nor the stack's: see
    # tests/aws/test_i11_state_loss.py for a key found by those)
    plan = run("plan", directory)
    assert (f"rolled back interrupted create of KmsProvider/main (operation {journal['operationId']}): "
            "no key was created") in " ".join(plan.output.split())
    assert "+ KmsProvider/main" in plan.output


def test_a_duplicate_made_by_one_operation_is_deposed_and_destroyed(aws, stack, kill_after):
    """A CreateKey retried after a lost answer can make two keys: one is adopted,
    the other is a deposed object the plan destroys (no orphan either way)."""
    directory = stack({"key.yaml": KEY})
    killed_apply(directory, kill_after(1, "CreateKey"))
    [journal] = state_of(directory)["journal"]
    kms = boto3.client("kms", region_name="us-east-1")
    kms.create_key(Tags=[{"TagKey": "reconciler:operation", "TagValue": journal["operationId"]}])
    assert len(live_keys()) == 2
    plan = run("plan", directory)
    assert "1 duplicate key(s) made by the same operation are deposed" in " ".join(plan.output.split())
    assert "KmsProvider/main (deposed" in plan.output
    applied = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert applied.exit_code == 0, applied.output
    assert len(live_keys()) == 1
    recorded = state_of(directory)
    assert recorded["deposed"] == {} and recorded["journal"] == []
    assert live_keys() == [recorded["resources"]["KmsProvider/main"]["ids"]["keyId"]]


def _secret(name: str, source: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Secret
        metadata: {{name: {name}}}
        spec:
          vault: main
          {source}
        """)


def _full_stack(stack, name: str):
    return stack({"main.yaml": docs(textwrap.dedent(KEY), vault_doc(STORES["secretsmanager"], provider="main"),
                                    _secret("made", "generate: {length: 20}"),
                                    _secret("other", "generate: {length: 12, charset: hex}"))})


def _reset(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()


def test_killed_after_any_call_of_an_apply_the_next_apply_converges(aws, stack, calls, tmp_path, kill_after):
    """For every k: kill the apply right after its k-th AWS call, then apply
    again: one key, each secret stored once (never generated twice), the
    journal empty, nothing left to change."""
    clean = _full_stack(stack, "clean")  # one action at a time: the k-th call is the same call in every run
    assert run("apply", clean, "--auto-approve", "--parallelism", "1").exit_code == 0
    total = len(calls.calls)
    assert total >= 8  # CreateKey, alias, rotation, two secrets' data keys and stores, reads
    killed_after: list[str] = []
    for k in range(1, total + 1):
        _reset(aws)
        directory = tmp_path / f"run-{k}"
        for path in clean.glob("*.yaml"):
            directory.mkdir(exist_ok=True)
            (directory / path.name).write_text(path.read_text())
        hook = kill_after(k)
        with pytest.raises(Killed):
            run("apply", directory, "--auto-approve", "--parallelism", "1")
        session.unregister_hook("after-call", hook)
        killed_after.append(hook.killed_at)
        stored = {n: _stored(n) for n in ("made", "other")}
        resumed = run("apply", directory, "--auto-approve")
        assert resumed.exit_code == 0, (k, hook.killed_at, resumed.output)
        assert len(live_keys()) == 1, (k, hook.killed_at)  # zero orphaned keys
        recorded = state_of(directory)
        assert recorded["journal"] == [] and recorded["deposed"] == {}, (k, hook.killed_at)
        key = recorded["resources"]["KmsProvider/main"]["ids"]["keyId"]
        assert live_keys() == [key]
        for name in ("made", "other"):
            history = run("secret", "history", f"main/{name}", "--dir", directory).output.splitlines()
            assert len(history) == 1, (k, hook.killed_at, name, history)  # stored once, never regenerated
            if stored[name] is not None:  # stored before the kill: kept as it was, not written again
                assert _stored(name) == stored[name], (k, hook.killed_at, name)
        assert run("plan", directory, "--detailed-exitcode").exit_code == 0, (k, hook.killed_at)
    assert {"CreateKey", "CreateAlias", "GenerateDataKey", "CreateSecret"} <= set(killed_after)


def _stored(name: str) -> bytes | None:
    """What the secrets manager store holds for a secret (an envelope, never a value)."""
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        return bytes(sm.get_secret_value(SecretId=f"rcl/team/{name}")["SecretBinary"])
    except sm.exceptions.ResourceNotFoundException:
        return None


def test_a_failed_store_write_keeps_its_entry_with_the_error_then_is_rolled_back(aws, stack, inject):
    directory = _full_stack(stack, "failing")
    inject("before-send.secrets-manager.CreateSecret", json_error("InternalServiceError", "try later"))
    failed = run("apply", directory, "--auto-approve", "--parallelism", "1")  # the first store write fails, alone
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    [entry] = state_of(directory)["journal"]
    assert (entry["address"], entry["operation"], entry["step"], entry["attempts"]) == (
        "Secret/made", "write", "storing", 1)
    assert entry["lastError"].startswith("secretsmanager:CreateSecret failed (InternalServiceError)")
    assert "Secret/made" not in state_of(directory)["resources"]
    inject.clear()
    plan = run("plan", directory)
    assert (f"rolled back interrupted write of Secret/made (operation {entry['operationId']}): nothing was "
            "stored") in " ".join(plan.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    recorded = state_of(directory)
    assert recorded["journal"] == [] and {"Secret/made", "Secret/other"} <= set(recorded["resources"])
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


KILL_AT_CREATE_KEY = textwrap.dedent("""\
    import os, signal, sys
    from reconciler import cli
    from reconciler.aws import session
    def die(**_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # CreateKey answered; the state write never happens
    session.register_hook("after-call.kms.CreateKey", die)
    sys.argv = ["reconciler", "apply", sys.argv[1], "--auto-approve"]
    cli.main()
    """)


def test_a_process_killed_between_create_key_and_the_state_write_leaves_no_orphan(aws, stack):
    directory = stack({"key.yaml": KEY})
    killed = subprocess.run([sys.executable, "-c", KILL_AT_CREATE_KEY, str(directory)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [key] = live_keys()
    [entry] = state_of(directory)["journal"]
    assert state_of(directory)["resources"] == {}
    plan = run("plan", directory)
    assert f"found key {key}" in " ".join(plan.output.split())
    applied = run("apply", directory, "--auto-approve")  # the OS released the dead process's lock
    assert applied.exit_code == 0, applied.output
    assert live_keys() == [key]
    recorded = state_of(directory)
    assert recorded["resources"]["KmsProvider/main"]["ids"]["keyId"] == key and recorded["journal"] == []
    tags = boto3.client("kms", region_name="us-east-1").list_resource_tags(KeyId=key)["Tags"]
    assert {"TagKey": "reconciler:operation", "TagValue": entry["operationId"]} in tags


def _two_vaults(provider: str, vault: str) -> str:
    """Two keys, two vaults (Secrets Manager, SSM) and one generated secret."""
    return docs(key_doc(), key_doc(name="new"),
                vault_doc(STORES["secretsmanager"], provider=provider),
                vault_doc(STORES["ssm"], name="other").replace("  default: true\n", ""),
                secret_doc("s", "generate: {length: 16}", vault=vault))


@pytest.mark.parametrize("change", ["re-wrap", "move"])
def test_killed_after_any_call_of_a_rewrap_or_move_the_next_apply_finishes_it(aws, stack, calls, tmp_path,
                                                                              kill_after, change):
    """A vault's provider change (journal ``copy``) and a secret's move to
    another vault (``move``), killed after each AWS call that changes
    something: the next apply finishes it, the value kept (never
    regenerated), the journal closed."""
    after = _two_vaults("new", "main") if change == "re-wrap" else _two_vaults("key", "other")
    rehearsal = stack({"main.yaml": _two_vaults("key", "main")})
    assert run("apply", rehearsal, "--auto-approve").exit_code == 0
    (rehearsal / "main.yaml").write_text(after)
    calls.clear()
    assert run("apply", rehearsal, "--auto-approve").exit_code == 0
    writes = [op for _s, op, _r in calls.calls if not op.startswith(READS)]
    assert ({"PutSecretValue"} if change == "re-wrap" else {"PutParameter", "DeleteSecret"}) <= set(writes)
    for k in range(1, len(writes) + 1):
        _reset(aws)
        directory = tmp_path / f"{change}-{k}"
        directory.mkdir()
        (directory / "stack.yaml").write_text((rehearsal / "stack.yaml").read_text())
        (directory / "main.yaml").write_text(_two_vaults("key", "main"))
        assert run("apply", directory, "--auto-approve").exit_code == 0
        value = get(directory, "main/s")
        (directory / "main.yaml").write_text(after)
        hook = kill_after(k, writes=True)
        with pytest.raises(Killed):
            run("apply", directory, "--auto-approve")
        session.unregister_hook("after-call", hook)
        assert hook.killed_at == writes[k - 1]
        finished = run("apply", directory, "--auto-approve")
        assert finished.exit_code == 0, (k, hook.killed_at, finished.output)
        assert state_of(directory)["journal"] == [], (k, hook.killed_at)
        where = "main/s" if change == "re-wrap" else "other/s"
        assert get(directory, where) == value, (k, hook.killed_at)  # moved or re-wrapped, never regenerated
        assert run("plan", directory, "--detailed-exitcode").exit_code == 0, (k, hook.killed_at)


def test_ownership_tags_survive_tag_changes_and_are_never_the_users_drift(aws, stack):
    directory = stack({"key.yaml": KEY})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    key = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    (directory / "key.yaml").write_text(KEY.replace("tags: {team: platform}", "tags: {team: infra, env: prod}"))
    plan = run("plan", directory)
    assert "reconciler:" not in plan.output  # only the user's tags are compared
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key)["Tags"]}
    assert {k: v for k, v in tags.items() if not k.startswith("reconciler:")} == {"team": "infra", "env": "prod"}
    assert (tags["reconciler:stack"], tags["reconciler:address"]) == ("test", "KmsProvider/main")
    assert "reconciler:operation" in tags  # kept: it names the operation that created the key
    assert state_of(directory)["resources"]["KmsProvider/main"]["attributes"]["tags"] == {
        "team": "infra", "env": "prod"}
    assert run("drift", directory).exit_code == 0
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_an_interrupted_move_whose_change_was_reverted_is_never_silent(aws, stack, kill_after):
    """A move killed half-way, then the manifest reverted: nothing continues
    the open entry any more. Plan and drift say so (a warning naming the
    operation) instead of 'No changes'."""
    directory = stack({"main.yaml": _two_vaults("key", "main")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "main.yaml").write_text(_two_vaults("key", "other"))
    hook = kill_after(1, operation="PutParameter")
    with pytest.raises(Killed):
        run("apply", directory, "--auto-approve")
    session.unregister_hook("after-call", hook)
    (entry,) = state_of(directory)["journal"]
    assert (entry["address"], entry["operation"]) == ("Secret/s", "move")
    (directory / "main.yaml").write_text(_two_vaults("key", "main"))  # the move is called off

    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "Secret/s [WARNING]" in plan.output
    assert (f"operation {entry['operationId']} (move, step {entry['step']}) is still open; nothing in this "
            "plan changes it any more") in " ".join(plan.output.split())
    drift = run("drift", directory)
    assert drift.exit_code == 0  # info: shown, but our own unfinished work never pages
    assert "Secret/s [INFO]" in drift.output
    assert f"operation {entry['operationId']} (move, step {entry['step']}) is still open; an apply of the " \
           "change that started it finishes it" in " ".join(drift.output.split())


@pytest.mark.parametrize("entry", [
    {"address": "KmsProvider/main", "operation": "create", "data": {}},
    {"address": "KmsProvider/main", "operation": "create", "data": {"connection": {}}},
    {"address": "Secret/s", "operation": "write", "data": {}},
])
def test_a_malformed_journal_entry_is_a_clear_error_never_an_internal_one(aws, stack, entry):
    import json

    directory = stack({"key.yaml": KEY})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    path = directory / ".reconciler" / "state.json"
    state = json.loads(path.read_text())
    state["journal"] = [{"operationId": "op-1", "step": "create-key", "startedAt": "2026-11-24T00:00:00+00:00",
                         "attempts": 0, "lastError": "", **entry}]
    path.write_text(json.dumps(state))
    for command in (["plan", directory], ["drift", directory], ["apply", directory, "--auto-approve"]):
        result = run(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "internal error" not in result.output
        assert (f"Error: {entry['address']}: journal entry op-1 ({entry['operation']}, step create-key) is "
                "malformed") in result.output


def test_a_bad_clock_refuses_a_saved_plan_before_its_first_write(aws, stack, tmp_path, monkeypatch, calls):
    """An update (no clock needed) planned before a create (journaled, dated):
    a bad clock must refuse the whole plan, not apply the update first."""
    directory = stack({"key.yaml": KEY})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    second = KEY.replace("name: main", "name: zz-second").replace("team/main", "team/second")
    (directory / "key.yaml").write_text(textwrap.dedent(KEY.replace("main key", "renamed")) + "---\n"
                                        + textwrap.dedent(second))
    planfile = tmp_path / "p.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    before = state_of(directory)
    monkeypatch.setenv("RECONCILER_NOW", "garbage")
    calls.clear()
    result = run("apply", planfile, "--auto-approve")
    assert result.exit_code == 1
    assert "RECONCILER_NOW='garbage': not an ISO-8601 time" in result.output
    assert calls.writes == []
    assert state_of(directory)["serial"] == before["serial"]


def test_a_replace_whose_create_failed_after_making_the_key_forgets_nothing(aws, stack, inject):
    """CreateKey made the key but its answer was lost, and the look-up by tag
    was denied too: the old key stays recorded (current and deposed), so
    nothing is orphaned and the alias is not 'held by a key we do not manage';
    once AWS answers again the next apply finds the new key and retires the old."""
    import botocore.exceptions

    directory = stack({"key.yaml": KEY})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    (directory / "key.yaml").write_text(textwrap.dedent(KEY) + "  multiRegion: true\n")

    def lost_answer(model, **_kwargs):
        if model.name == "CreateKey":
            raise botocore.exceptions.ClientError({"Error": {"Code": "InternalFailure", "Message": "lost"}},
                                                  "CreateKey")
    inject("after-call", lost_answer)
    inject("before-send.kms.ListKeys", json_error("AccessDeniedException", "not allowed"))
    failed = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert failed.exit_code == 1, failed.output
    assert len(live_keys()) == 2  # the new key exists, its answer was lost
    state = state_of(directory)
    assert state["resources"]["KmsProvider/main"]["ids"]["keyId"] == old
    assert [d["ids"]["keyId"] for d in state["deposed"]["KmsProvider/main"]] == [old]
    assert [j["operation"] for j in state["journal"]] == ["create"]

    inject.clear()
    done = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert done.exit_code == 0, done.output
    after = state_of(directory)
    new = after["resources"]["KmsProvider/main"]["ids"]["keyId"]
    assert new != old and new in live_keys()
    assert after["deposed"] == {} and after["journal"] == []
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert live_keys() == [new]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

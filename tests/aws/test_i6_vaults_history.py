"""Issue 6, vaults and stores: a vault's provider or store change and a
secret's move to another vault keep every kept version with its number and
date (items 2, 3, 8); a key kept versions still need is never destroyed or
replaced (item 2); reads follow state (item 20); a Secrets Manager entry
removed and declared again is restored (item 21); an S3 store that cannot
take writes fails at plan (item 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import boto3
import pytest

from tests.aws.test_vaults import STORES, docs, get, key_doc, secret_doc, vault_doc, versioned_bucket
from tests.conftest import ROOT, run, state_of


def history(directory, address: str) -> list[tuple[str, str, str]]:
    """(number, date, key ARN) of every kept version, newest first."""
    result = run("secret", "history", address, "--dir", directory)
    assert result.exit_code == 0, result.output
    return [tuple(line.split("  (current)")[0].split("\t")) for line in result.stdout.splitlines()]


def arn_of(directory, provider: str) -> str:
    return state_of(directory)["resources"][f"KmsProvider/{provider}"]["ids"]["arn"]


def write_versions(directory, monkeypatch, values: list[str], name: str = "s") -> None:
    """Apply the Secret ``name`` once per value (fromEnv), so the store keeps one version each."""
    for value in values:
        monkeypatch.setenv("I6_VALUE", value)
        (directory / "s.yaml").write_text(secret_doc(name, "fromEnv: I6_VALUE"))
        applied = run("apply", directory, "--auto-approve")
        assert applied.exit_code == 0, applied.output


def prepare(store: str) -> None:
    if store == "s3":
        versioned_bucket()


# -- item 2: a provider change re-wraps every kept version; the old key can then go -------------
@pytest.mark.parametrize("store", sorted(STORES))
def test_provider_change_rewraps_every_kept_version_so_the_old_key_can_be_destroyed(
        aws, stack, monkeypatch, store):
    prepare(store)
    directory = stack({"main.yaml": docs(key_doc(name="old"), key_doc(name="new"),
                                          vault_doc(STORES[store], provider="old"))})
    write_versions(directory, monkeypatch, ["first-value", "second-value"])
    before = history(directory, "main/s")
    assert [(n, arn) for n, _, arn in before] == [("2", arn_of(directory, "old")), ("1", arn_of(directory, "old"))]

    (directory / "main.yaml").write_text(docs(key_doc(name="new"), vault_doc(STORES[store], provider="new")))
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "re-wrap 1 secret under KmsProvider/new" in plan.output
    new_arn = arn_of(directory, "new")
    applied = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert applied.exit_code == 0, applied.output

    assert get(directory, "main/s", "--version", "1") == "first-value"  # the old key is pending deletion
    assert history(directory, "main/s") == [(n, date, new_arn) for n, date, _ in before]
    assert get(directory, "main/s") == "second-value"
    assert state_of(directory)["resources"]["Secret/s"]["ids"]["versionKeys"] == {new_arn: [1, 2]}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_replacing_a_key_that_kept_versions_still_need_is_refused_naming_the_count(
        aws, stack, monkeypatch, calls):
    directory = stack({"main.yaml": docs(key_doc(name="old"), key_doc(name="new"), vault_doc(provider="old"))})
    write_versions(directory, monkeypatch, ["one", "two", "three"])
    # the vault leaves the key and the key is replaced in the same plan: the replace would run first
    (directory / "main.yaml").write_text(docs(key_doc("RSA_2048", name="old"), key_doc(name="new"),
                                              vault_doc(provider="new")))
    calls.clear()
    refused = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert refused.exit_code == 1
    assert ("KmsProvider/old: the key still wraps 3 kept secret versions (Secret/s (3)); it cannot be "
            "replaced until they are re-wrapped under another key") in refused.output
    assert [w for w in calls.writes if w != "kms:Decrypt"] == []  # nothing written (a plan may unwrap)
    assert get(directory, "main/s", "--version", "1") == "one"


def test_destroying_a_key_that_kept_versions_still_need_is_refused_naming_the_count(
        aws, stack, monkeypatch):
    directory = stack({"main.yaml": docs(key_doc(name="old"), key_doc(name="new"), vault_doc(provider="old"))})
    write_versions(directory, monkeypatch, ["one", "two"])
    (directory / "main.yaml").write_text(docs(key_doc(name="new"), vault_doc(provider="new")))
    # targeting the key alone leaves the vault's re-wrap out of the plan: its versions still need the key
    refused = run("plan", directory, "--target", "KmsProvider/old")
    assert refused.exit_code == 1
    assert ("KmsProvider/old: the key still wraps 2 kept secret versions (Secret/s (2)); it cannot be "
            "destroyed until they are re-wrapped under another key") in refused.output
    # the whole plan re-wraps first, then destroys
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert get(directory, "main/s", "--version", "1") == "one"


# -- item 3: moving a secret to another vault keeps its value and history -----------------------
def two_vaults(store_a: str = STORES["local"], store_b: str = "local: {path: .reconciler/vault-b}") -> str:
    return docs(key_doc(name="ka"), key_doc(name="kb"), vault_doc(store_a, provider="ka", name="a"),
                vault_doc(store_b, provider="kb", name="b").replace("default: true", "default: false"))


def test_moving_a_generated_secret_to_another_vault_keeps_its_value_and_history(aws, stack):
    directory = stack({"main.yaml": two_vaults()})
    for generation in (1, 2):
        (directory / "s.yaml").write_text(secret_doc("tok", f"generate: {{length: 24, generation: {generation}}}",
                                                     vault="a"))
        assert run("apply", directory, "--auto-approve").exit_code == 0
    first, second = get(directory, "a/tok", "--version", "1"), get(directory, "a/tok")
    before = history(directory, "a/tok")

    (directory / "s.yaml").write_text(secret_doc("tok", "generate: {length: 24, generation: 2}", vault="b"))
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "move 2 versions from Vault/a to Vault/b" in plan.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output

    assert get(directory, "b/tok") == second
    assert get(directory, "b/tok", "--version", "1") == first
    kb = arn_of(directory, "kb")
    assert history(directory, "b/tok") == [(n, date, kb) for n, date, _ in before]
    assert not (directory / ".reconciler" / "vault" / "tok.json").exists()  # the old entry is gone
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


KILL = textwrap.dedent("""\
    import os, sys
    from reconciler import cli
    from reconciler.aws import session
    seen = []
    def stop(model, **kwargs):
        seen.append(1)
        if len(seen) == int(os.environ["KILL_AFTER"]):
            os._exit(9)  # the process dies mid-apply, no cleanup
    session.register_hook(os.environ["KILL_ON"], stop)
    sys.argv = ["reconciler", "apply", sys.argv[1], "--auto-approve"]
    cli.main()
    """)


@pytest.mark.parametrize("kill_on", ["after-call.s3.PutObject", "before-call.s3.DeleteObject"],
                         ids=["after-first-copied-version", "before-old-entry-deleted"])
def test_a_move_killed_midway_resumes_without_losing_or_regenerating(aws, stack, kill_on):
    versioned_bucket()
    directory = stack({"main.yaml": two_vaults("s3: {bucket: rcl-vault, prefix: a/}",
                                               "s3: {bucket: rcl-vault, prefix: b/}")})
    for generation in (1, 2):
        (directory / "s.yaml").write_text(secret_doc("tok", f"generate: {{generation: {generation}}}", vault="a"))
        assert run("apply", directory, "--auto-approve").exit_code == 0
    first, second = get(directory, "a/tok", "--version", "1"), get(directory, "a/tok")
    (directory / "s.yaml").write_text(secret_doc("tok", "generate: {generation: 2}", vault="b"))

    killed = subprocess.run([sys.executable, "-c", KILL, str(directory)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "KILL_ON": kill_on, "KILL_AFTER": "1"})
    assert killed.returncode == 9, killed.stderr
    assert state_of(directory)["resources"]["Secret/tok"]["attributes"]["vault"] == "a"
    assert get(directory, "a/tok") == second  # still readable where state has it
    assert run("drift", directory).exit_code == 0  # our own half-done move is not drift
    plan = run("plan", directory)
    assert "move 2 versions from Vault/a to Vault/b" in plan.output

    resumed = run("apply", directory, "--auto-approve")
    assert resumed.exit_code == 0, resumed.output
    assert get(directory, "b/tok") == second
    assert get(directory, "b/tok", "--version", "1") == first
    assert [n for n, _, _ in history(directory, "b/tok")] == ["2", "1"]
    s3 = boto3.client("s3", region_name="us-east-1")
    assert "Versions" not in s3.list_object_versions(Bucket="rcl-vault", Prefix="a/tok")
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


# -- item 8: a store change copies every kept version with its number and date -----------------
@pytest.mark.parametrize("source,target", [("local", "s3"), ("s3", "secretsmanager"),
                                           ("secretsmanager", "ssm"), ("ssm", "local")])
def test_store_change_copies_every_kept_version_with_its_number_and_date(
        aws, stack, monkeypatch, source, target):
    versioned_bucket()
    keep = "  keepVersions: 3\n"
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES[source], extra=keep))})
    write_versions(directory, monkeypatch, [f"value-{i}" for i in range(1, 5)])
    before = history(directory, "main/s")
    assert [n for n, _, _ in before] == ["4", "3", "2"]

    (directory / "main.yaml").write_text(docs(key_doc(), vault_doc(STORES[target], extra=keep)))
    plan = run("plan", directory)
    assert "copy 1 secret to the new store" in plan.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert state_of(directory)["resources"]["Vault/main"]["attributes"]["store"] == \
        vault_store(target)
    assert get(directory, "main/s", "--version", "2") == "value-2"
    assert history(directory, "main/s") == before
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0

    write_versions(directory, monkeypatch, ["value-5"])  # numbering goes on in the new store
    assert [n for n, _, _ in history(directory, "main/s")] == ["5", "4", "3"]
    assert get(directory, "main/s") == "value-5"


def vault_store(store: str) -> dict:
    return {"local": {"local": {"path": ".reconciler/vault"}},
            "s3": {"s3": {"bucket": "rcl-vault", "prefix": "team/"}},
            "secretsmanager": {"secretsmanager": {"prefix": "rcl/team/"}},
            "ssm": {"ssm": {"path": "/rcl/team"}}}[store]


# -- item 20: secret get/history read where state says the data is ----------------------------
def test_secret_get_and_history_read_the_store_recorded_in_state(aws, stack, monkeypatch):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    write_versions(directory, monkeypatch, ["one", "two"])
    # the store is edited in the manifests, not applied: the data is still in the old one
    (directory / "main.yaml").write_text(docs(key_doc(), vault_doc("local: {path: .reconciler/elsewhere}")))
    assert get(directory, "main/s") == "two"
    assert get(directory, "main/s", "--version", "1") == "one"
    assert [n for n, _, _ in history(directory, "main/s")] == ["2", "1"]


# -- item 21: a Secrets Manager entry removed and declared again is restored --------------------
def test_secretsmanager_secret_removed_and_added_back_is_restored(aws, stack, monkeypatch):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["secretsmanager"]))})
    write_versions(directory, monkeypatch, ["before-removal"])
    (directory / "s.yaml").unlink()
    removed = run("apply", directory, "--auto-approve", "--allow-destroy")
    assert removed.exit_code == 0, removed.output
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    assert "DeletedDate" in sm.describe_secret(SecretId="rcl/team/s")  # within its recovery window

    write_versions(directory, monkeypatch, ["after-removal"])
    assert "DeletedDate" not in sm.describe_secret(SecretId="rcl/team/s")
    assert get(directory, "main/s") == "after-removal"
    assert [n for n, _, _ in history(directory, "main/s")] == ["2", "1"]  # restored, then a new version
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


# -- item 13: an S3 store that cannot take writes fails at plan, before any write ---------------
@pytest.mark.parametrize("bucket,message", [
    ("unversioned", "s3://rcl-vault: bucket versioning is not enabled"),
    ("missing", "s3://rcl-vault: the bucket does not exist (NoSuchBucket)"),
])
def test_s3_store_without_a_versioned_bucket_fails_at_plan_before_any_write(aws, stack, calls, bucket, message):
    if bucket == "unversioned":
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-vault")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["s3"]), secret_doc("x", "generate: {}"))})
    plan = run("plan", directory)
    assert plan.exit_code == 1
    assert f"Error: {directory / 'main.yaml'}:12:18: Vault/main: {message}" in plan.output
    calls.clear()
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 1 and message in applied.output and "Traceback" not in applied.output
    assert calls.writes == []
    assert not (directory / ".reconciler" / "state.json").exists()


def test_moving_and_regenerating_in_one_plan_moves_the_history_then_adds_the_new_value(aws, stack):
    directory = stack({"main.yaml": two_vaults()})
    (directory / "s.yaml").write_text(secret_doc("tok", "generate: {generation: 1}", vault="a"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    first = get(directory, "a/tok")
    (directory / "s.yaml").write_text(secret_doc("tok", "generate: {generation: 2}", vault="b"))
    plan = run("plan", directory)
    assert "move 1 version from Vault/a to Vault/b" in plan.output
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert get(directory, "b/tok", "--version", "1") == first
    assert get(directory, "b/tok") != first
    assert [n for n, _, _ in history(directory, "b/tok")] == ["2", "1"]
    assert state_of(directory)["resources"]["Secret/tok"]["ids"]["versionKeys"] == {arn_of(directory, "kb"): [1, 2]}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_an_s3_rewrap_killed_between_versions_reads_the_newest_and_resumes(aws, stack, monkeypatch):
    versioned_bucket()
    directory = stack({"main.yaml": docs(key_doc(name="old"), key_doc(name="new"),
                                          vault_doc(STORES["s3"], provider="old"))})
    write_versions(directory, monkeypatch, ["one", "two", "three"])
    before = history(directory, "main/s")
    (directory / "main.yaml").write_text(docs(key_doc(name="old"), key_doc(name="new"),
                                              vault_doc(STORES["s3"], provider="new")))
    killed = subprocess.run([sys.executable, "-c", KILL, str(directory)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "KILL_ON": "after-call.s3.PutObject", "KILL_AFTER": "1"})
    assert killed.returncode == 9, killed.stderr
    # version 1 is re-wrapped and is the current S3 object: the newest is still version 3
    assert get(directory, "main/s") == "three"
    assert run("drift", directory).exit_code == 0
    resumed = run("apply", directory, "--auto-approve")
    assert resumed.exit_code == 0, resumed.output
    new_arn = arn_of(directory, "new")
    assert history(directory, "main/s") == [(n, date, new_arn) for n, date, _ in before]
    assert get(directory, "main/s", "--version", "1") == "one"
    s3 = boto3.client("s3", region_name="us-east-1")
    assert len(s3.list_object_versions(Bucket="rcl-vault", Prefix="team/s")["Versions"]) == 3  # replaced ones pruned
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_state_from_before_version_keys_still_protects_keys_older_versions_need(aws, stack, monkeypatch):
    """State written by reconciler before issue 6 has no versionKeys, and the old
    provider change re-wrapped only the newest version: plan reads the store to
    learn which key wraps each kept version instead of assuming the newest key."""
    import hashlib
    import json

    directory = stack({"main.yaml": docs(key_doc(name="old"), key_doc(name="new"), vault_doc(provider="old"))})
    write_versions(directory, monkeypatch, ["one", "two", "three"])
    # what the old reconciler left: version 4 alone under the new key, the rest still under the old one
    (directory / "main.yaml").write_text(docs(key_doc(name="old"), key_doc(name="new"), vault_doc(provider="new")))
    monkeypatch.setenv("I6_VALUE", "three")
    sealed = run("secret", "encrypt", "--vault", "main", "--name", "s", "--dir", directory, input="three")
    assert sealed.exit_code == 0, sealed.output
    envelope = sealed.stdout.strip()
    store_file = directory / ".reconciler" / "vault" / "s.json"
    entry = json.loads(store_file.read_text())
    entry["versions"].append({"version": 4, "createdAt": "2026-11-24T00:00:00+00:00", "envelope": envelope})
    store_file.write_text(json.dumps(entry))
    state_file = directory / ".reconciler" / "state.json"
    state = json.loads(state_file.read_text())
    state["resources"]["Vault/main"]["attributes"]["provider"] = "new"
    state["resources"]["Vault/main"]["ids"]["keyArn"] = arn_of(directory, "new")
    ids = state["resources"]["Secret/s"]["ids"]
    ids.pop("versionKeys")
    ids.update(version=4, keyArn=arn_of(directory, "new"), storedDigest=hashlib.sha256(envelope.encode()).hexdigest())
    state_file.write_text(json.dumps(state))
    assert [arn for _, _, arn in history(directory, "main/s")] == [arn_of(directory, "new")] + [arn_of(directory, "old")] * 3

    (directory / "main.yaml").write_text(docs(key_doc(name="new"), vault_doc(provider="new")))
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert ("KmsProvider/old: the key still wraps 3 kept secret versions (Secret/s (3)); it cannot be "
            "destroyed") in refused.output
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 1
    assert get(directory, "main/s", "--version", "1") == "one"  # the old key was not scheduled for deletion

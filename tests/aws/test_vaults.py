"""Vaults and secrets end to end against the sandbox: every store, both key
families, bindings, canaries, drift, re-wrap."""

from __future__ import annotations

import json
import textwrap

import boto3
import pytest

from tests.conftest import run, state_of

CANARY = "canary-7f3e9b1c-NEVER-LOG-ME"

STORES = {
    "local": "local: {path: .reconciler/vault}",
    "s3": "s3: {bucket: rcl-vault, prefix: team/}",
    "secretsmanager": "secretsmanager: {prefix: rcl/team/}",
    "ssm": "ssm: {path: /rcl/team}",
}


def key_doc(spec: str = "SYMMETRIC_DEFAULT", name: str = "key", extra: str = "") -> str:
    multi = "  multiRegion: true\n  replicaRegions: [us-west-2]\n" if "mrk" in extra else ""
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {{name: {name}}}
        spec:
          spec: {spec}
          alias: test/{name}
          protect: false
          deletionWindowDays: 7
        """) + multi


def vault_doc(store: str = STORES["local"], provider: str = "key", name: str = "main",
              extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Vault
        metadata: {{name: {name}}}
        spec:
          provider: {provider}
          default: true
          store: {{{store}}}
        """) + extra


def secret_doc(name: str, source: str, vault: str | None = None) -> str:
    vault_line = f"  vault: {vault}\n" if vault else ""
    return f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: {name}}}\nspec:\n{vault_line}  {source}\n"


def docs(*parts: str) -> str:
    return "---\n".join(parts)


def versioned_bucket(name: str = "rcl-vault") -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture()
def canary_env(monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", CANARY)


def encrypt(directory, vault: str, name: str, value: str) -> str:
    result = run("secret", "encrypt", "--vault", vault, "--name", name, "--dir", directory, input=value + "\n")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def get(directory, address: str, *extra: str) -> str:
    result = run("secret", "get", address, "--dir", directory, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("spec", ["SYMMETRIC_DEFAULT", "RSA_2048"])
@pytest.mark.parametrize("store", sorted(STORES))
def test_round_trip_every_store_and_key_family(aws, stack, canary_env, store, spec):
    if store == "s3":
        versioned_bucket()
    directory = stack({"main.yaml": docs(key_doc(spec), vault_doc(STORES[store]),
                                          secret_doc("from-env", "fromEnv: APP_PASSWORD"),
                                          secret_doc("made", "generate: {length: 24, charset: hex}"))})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert get(directory, "main/from-env") == CANARY
    made = get(directory, "main/made")
    assert len(made) == 24 and set(made) <= set("0123456789abcdef")

    envelope = encrypt(directory, "main", "pasted", "pasted-value")
    assert envelope.startswith("rcl:v1:") and "\n" not in envelope
    (directory / "pasted.yaml").write_text(secret_doc("pasted", f"encrypted: {envelope}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/pasted") == "pasted-value"
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


@pytest.mark.parametrize("spec", ["RSA_4096", "SYMMETRIC_DEFAULT"])
def test_multi_region_replica_decrypts_what_the_primary_wrapped(aws, stack, canary_env, spec):
    directory = stack({"main.yaml": docs(key_doc(spec, extra="mrk"), vault_doc(),
                                          secret_doc("from-env", "fromEnv: APP_PASSWORD"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/from-env", "--region", "us-west-2") == CANARY
    assert get(directory, "main/from-env") == CANARY


def test_envelope_pasted_under_another_name_or_vault_is_rejected(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(),
                                          vault_doc(name="other", extra="").replace("default: true", "default: false")
                                          .replace(".reconciler/vault", ".reconciler/other"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    envelope = encrypt(directory, "main", "db-password", "s3cret")
    (directory / "s.yaml").write_text(secret_doc("api-token", f"encrypted: {envelope}"))
    result = run("validate", directory)
    assert result.exit_code == 1
    assert "s.yaml:5:" in result.output
    assert "bound to stack test, vault main, secret db-password, not to stack test, vault main, secret api-token" \
        in result.output
    (directory / "s.yaml").write_text(secret_doc("db-password", f"encrypted: {envelope}", vault="other"))
    result = run("plan", directory)
    assert result.exit_code == 1 and "vault other" in result.output and "Traceback" not in result.output


def test_tampered_envelope_fails_clearly(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    envelope = encrypt(directory, "main", "x", "value")
    head, last = envelope.rsplit(":", 1)
    flipped = head + ":" + ("A" if last[0] != "A" else "B") + last[1:]
    (directory / "s.yaml").write_text(secret_doc("x", f"encrypted: {flipped}"))
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    assert "does not decrypt" in result.output and "Traceback" not in result.output


def test_canary_never_reaches_state_plans_logs_or_errors(aws, stack, canary_env, tmp_path):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("pw", "fromEnv: APP_PASSWORD"))})
    outputs = []
    for fmt in ("text", "json", "markdown"):
        outputs.append(run("plan", directory, "--format", fmt).output)
    planfile = tmp_path / "p.plan"
    outputs.append(run("plan", directory, "--out", planfile).output)
    outputs.append(run("apply", planfile, "--auto-approve").output)
    outputs.append(run("drift", directory).output)
    outputs.append(run("secret", "history", "main/pw", "--dir", directory).output)
    outputs.append(run("state", "show", "--dir", directory).output)
    # an error about the secret names it, not its value
    store_file = directory / ".reconciler" / "vault" / "pw.json"
    store_file.write_text(store_file.read_text().replace("rcl:v1:", "rcl:v1:X"))
    outputs.append(run("secret", "get", "main/pw", "--dir", directory).output)
    outputs.append(run("plan", directory).output)
    files = [p.read_text() for p in directory.rglob("*") if p.is_file()] + [planfile.read_text()]
    for text in outputs + files:
        assert CANARY not in text
    damaged = run("secret", "get", "main/pw", "--dir", directory)
    assert damaged.exit_code == 1
    assert damaged.output.startswith("Error: main/pw: malformed envelope")
    assert len(damaged.output.strip().splitlines()) == 1
    assert "Traceback" not in damaged.output


def test_plan_shows_sensitive_version_change_and_generation_bump_regenerates(aws, stack):
    base = docs(key_doc(), vault_doc())
    directory = stack({"main.yaml": base + "---\n" + secret_doc("tok", "generate: {length: 20}")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    first = get(directory, "main/tok")
    (directory / "main.yaml").write_text(base + "---\n" + secret_doc("tok", "generate: {length: 30}"))
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0  # only a bump regenerates
    (directory / "main.yaml").write_text(base + "---\n" + secret_doc("tok", "generate: {length: 30, generation: 2}"))
    plan = run("plan", directory)
    assert "~ value = (sensitive, will change)" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    second = get(directory, "main/tok")
    assert second != first and len(second) == 30
    history = run("secret", "history", "main/tok", "--dir", directory).output.splitlines()
    assert [line.split("\t")[0] for line in history] == ["2", "1"]
    assert first not in "\n".join(history) and second not in "\n".join(history)
    assert get(directory, "main/tok", "--version", "1") == first


@pytest.mark.parametrize("store", sorted(STORES))
def test_store_keeps_only_the_last_versions(aws, stack, monkeypatch, store):
    if store == "s3":
        versioned_bucket()
    base = docs(key_doc(), vault_doc(STORES[store], extra="  keepVersions: 3\n"))
    directory = stack({"main.yaml": base})
    for value in range(5):
        monkeypatch.setenv("ROTATING", f"value-{value}")
        (directory / "s.yaml").write_text(secret_doc("r", "fromEnv: ROTATING"))
        assert run("apply", directory, "--auto-approve").exit_code == 0
    history = run("secret", "history", "main/r", "--dir", directory).output.splitlines()
    assert [line.split("\t")[0] for line in history] == ["5", "4", "3"]
    missing = run("secret", "get", "main/r", "--version", "1", "--dir", directory)
    assert missing.exit_code == 1 and "version 1 is not kept" in missing.output


def test_missing_env_var_is_an_error_before_anything_changes(aws, stack, monkeypatch, calls):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("x", "fromEnv: NOT_SET_ANYWHERE"))})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1
    assert "Secret/x: environment variable NOT_SET_ANYWHERE (fromEnv) is not set" in result.output
    assert calls.writes == [] and not (directory / ".reconciler" / "state.json").exists()


def test_store_drift_and_unreadable_key_are_reported(aws, stack, canary_env):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("a", "fromEnv: APP_PASSWORD"),
                                          secret_doc("b", "generate: {length: 10}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    store = directory / ".reconciler" / "vault"
    (store / "b.json").unlink()
    other = encrypt(directory, "main", "a", "swapped")
    data = json.loads((store / "a.json").read_text())
    data["versions"].append({"version": 2, "createdAt": "x", "envelope": other})
    (store / "a.json").write_text(json.dumps(data))
    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2
    report = {d["address"]: d for d in json.loads(drift.output)["drift"]}
    assert report["Secret/a"]["note"] == "the stored entry was changed outside reconciler"
    assert report["Secret/a"]["changes"] == [{"path": "value", "op": "change", "sensitive": True}]
    assert report["Secret/b"]["gone"] and report["Secret/b"]["severity"] == "critical"
    refused = run("apply", directory, "--auto-approve")  # b's generated value is lost: never silently new
    assert refused.exit_code == 1 and "re-run apply with --allow-destroy" in refused.output
    assert get(directory, "main/a") == "swapped"  # nothing was applied
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert get(directory, "main/a") == CANARY
    assert run("drift", directory).exit_code == 0

    kid = state_of(directory)["resources"]["KmsProvider/key"]["ids"]["keyId"]
    boto3.client("kms", region_name="us-east-1").disable_key(KeyId=kid)
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "Secret/a [CRITICAL]: its envelope no longer decrypts: key arn:aws:kms:us-east-1:123456789012:key/" \
        in drift.output and "re-enable it" in drift.output
    failed = run("secret", "get", "main/a", "--dir", directory)
    assert failed.exit_code == 1 and "is disabled" in failed.output and "enable-key" in failed.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/a") == CANARY


def test_vault_with_secrets_and_its_key_are_protected(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc()),
                       "s.yaml": secret_doc("s", "generate: {}")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "main.yaml").write_text(vault_doc())
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert "provider refers to KmsProvider/key, which does not exist" in refused.output
    (directory / "main.yaml").write_text(key_doc())
    (directory / "s.yaml").unlink()
    plan = run("plan", directory)
    assert "the vault still holds 1 secret" in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 1  # needs --allow-destroy
    assert (directory / ".reconciler" / "vault" / "s.json").exists()
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert not (directory / ".reconciler" / "vault" / "s.json").exists()


def test_key_used_by_a_vault_cannot_be_replaced(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "main.yaml").write_text(docs(key_doc("RSA_2048"), vault_doc()))
    refused = run("plan", directory)
    assert refused.exit_code == 1 and "wraps the data of Vault/main" in refused.output


def test_drift_and_secret_commands_need_no_fromenv_values(aws, stack, monkeypatch):
    monkeypatch.setenv("ONLY_AT_DEPLOY", "deploy-time-value")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("d", "fromEnv: ONLY_AT_DEPLOY"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    monkeypatch.delenv("ONLY_AT_DEPLOY")
    assert run("drift", directory).exit_code == 0
    assert get(directory, "main/d") == "deploy-time-value"
    assert run("plan", directory).exit_code == 1  # plan must know the value it would write


def test_missing_or_unversioned_s3_bucket_is_an_error(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["s3"]), secret_doc("x", "generate: {}"))})
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1 and "NoSuchBucket" in result.output and "Traceback" not in result.output
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-vault")
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 1 and "bucket versioning is not enabled" in result.output


def test_s3_entries_are_object_versions_and_removal_erases_them(aws, stack, monkeypatch):
    versioned_bucket()
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["s3"]))})
    for value in ("one", "two"):
        monkeypatch.setenv("V", value)
        (directory / "s.yaml").write_text(secret_doc("x", "fromEnv: V"))
        assert run("apply", directory, "--auto-approve").exit_code == 0
    s3 = boto3.client("s3", region_name="us-east-1")
    versions = s3.list_object_versions(Bucket="rcl-vault", Prefix="team/x")["Versions"]
    assert len(versions) == 2
    assert get(directory, "main/x", "--version", "1") == "one"
    (directory / "s.yaml").unlink()
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert "Versions" not in s3.list_object_versions(Bucket="rcl-vault", Prefix="team/x")

"""Issue 6 items 10, 11 and 13 (fromEnv): the fingerprint in state and plans
is keyed by a KMS-wrapped key (no offline guessing), older scrypt tokens are
migrated without rewriting the secret, an empty variable is refused at its
field, and a saved plan whose fromEnv value changed is refused before any write."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import boto3
import pytest

from reconciler.crypto import envelope as env
from tests.aws.test_vault_scale import kms_calls
from tests.aws.test_vaults import docs, get, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

VALUE = "hunter2-canary-value"


def fromenv_stack(stack, names=("pw",)):
    return stack({"main.yaml": docs(key_doc(), vault_doc()),
                  "s.yaml": docs(*(secret_doc(n, "fromEnv: APP_PASSWORD") for n in names))})


def unwrap(sealed: str) -> bytes:
    """The fingerprint key, as only someone with kms:Decrypt on the vault key gets it."""
    envelope = env.Envelope.parse(sealed)
    wrapped = boto3.client("kms", region_name="us-east-1").decrypt(
        CiphertextBlob=envelope.wrapped_key, KeyId=envelope.key_arn,
        EncryptionContext=envelope.binding.context())["Plaintext"]
    return env.unseal(envelope, wrapped)


def test_state_fingerprint_is_an_hmac_under_a_kms_wrapped_vault_key(aws, stack, monkeypatch, tmp_path):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack, ("a", "b"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    resources = state_of(directory)["resources"]
    a, b = resources["Secret/a"], resources["Secret/b"]
    key_arn = resources["KmsProvider/key"]["ids"]["arn"]
    assert a["attributes"]["fingerprint"] == "hmac-sha256"
    assert a["ids"]["fingerprintKey"] == b["ids"]["fingerprintKey"]  # one key per vault
    sealed = env.Envelope.parse(a["ids"]["fingerprintKey"])
    assert sealed.key_arn == key_arn
    assert sealed.binding == env.Binding("test", "main", "reconciler:fingerprint-key")
    key = unwrap(a["ids"]["fingerprintKey"])
    for name, entry in (("a", a), ("b", b)):
        mac = hmac.new(key, b"\0".join([b"reconciler/fromEnv/h1", b"test", name.encode(), VALUE.encode()]),
                       hashlib.sha256).digest()
        assert entry["attributes"]["value"] == "env:h1:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert a["attributes"]["value"] != b["attributes"]["value"]  # same value, different names
    # what an offline guesser could compute from public names alone is nowhere
    legacy = scrypt_token(VALUE, "a")
    planfile = tmp_path / "x.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    for text in ((directory / ".reconciler" / "state.json").read_text(), planfile.read_text()):
        assert legacy.split(":", 1)[1] not in text
        assert hashlib.sha256(VALUE.encode()).hexdigest() not in text


def test_a_plan_unwraps_one_fingerprint_key_per_vault(aws, stack, monkeypatch, calls):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack, tuple(f"s{i:02d}" for i in range(20)))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    calls.clear()
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    crypto = [op for op in kms_calls(calls) if op in {"Decrypt", "Encrypt", "GenerateDataKey"}]
    assert crypto == ["Decrypt"]
    monkeypatch.setenv("APP_PASSWORD", "another-value")
    changed = run("plan", directory, "--detailed-exitcode")
    assert changed.exit_code == 2
    assert changed.stdout.count("~ value = (sensitive, will change)") == 20


def scrypt_token(value: str, name: str) -> str:
    """The token reconciler recorded before issue 6 (salt from public names)."""
    salt = hashlib.sha256(f"reconciler/fromEnv/test/main/{name}".encode()).digest()
    derived = hashlib.scrypt(value.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return "env:" + base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def make_legacy(directory, names, value: str) -> None:
    """State as an older reconciler wrote it: an scrypt token, no fingerprint key."""
    path = directory / ".reconciler" / "state.json"
    data = json.loads(path.read_text())
    for name in names:
        entry = data["resources"][f"Secret/{name}"]
        entry["attributes"]["value"] = scrypt_token(value, name)
        entry["attributes"].pop("fingerprint", None)
        entry["ids"].pop("fingerprintKey", None)
    path.write_text(json.dumps(data))


def test_legacy_scrypt_token_is_migrated_without_rewriting_the_secret(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    make_legacy(directory, ["pw"], VALUE)
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert '+ fingerprint = "hmac-sha256"' in plan.stdout
    assert "value" not in plan.stdout.split("~ Secret/pw", 1)[1]
    assert "Plan: 0 to create, 1 to update" in plan.stdout
    assert run("apply", directory, "--auto-approve").exit_code == 0
    entry = state_of(directory)["resources"]["Secret/pw"]
    assert entry["attributes"]["value"].startswith("env:h1:")
    assert entry["ids"]["version"] == 1 and entry["ids"]["fingerprintKey"].startswith("rcl:v1:")
    history = run("secret", "history", "main/pw", "--dir", directory).output.splitlines()
    assert [line.split("\t")[0] for line in history] == ["1"]  # not rewritten
    assert get(directory, "main/pw") == VALUE
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_legacy_token_of_another_value_plans_a_value_change(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    make_legacy(directory, ["pw"], VALUE)
    monkeypatch.setenv("APP_PASSWORD", "a-new-value")
    plan = run("plan", directory)
    assert "~ value       = (sensitive, will change)" in plan.stdout
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/pw") == "a-new-value"
    assert state_of(directory)["resources"]["Secret/pw"]["ids"]["version"] == 2


# -- item 11 and the fromEnv part of item 13 -------------------------------------------------
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_empty_env_var_is_refused_at_the_fromenv_field(aws, stack, monkeypatch, calls, command):
    monkeypatch.setenv("APP_PASSWORD", "")
    directory = fromenv_stack(stack)
    result = run(command, directory, *(["--auto-approve"] if command == "apply" else []))
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {directory / 's.yaml'}:5:12: Secret/pw: environment variable APP_PASSWORD "
                             "(fromEnv) is empty; an empty value is treated as unset: set it to the secret's "
                             "value\n")
    assert calls.writes == [] and not (directory / ".reconciler" / "state.json").exists()


def saved_plan_changing_the_key_and_the_secret(stack, monkeypatch, tmp_path):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "main.yaml").write_text(docs(key_doc().replace("deletionWindowDays: 7",
                                                                "deletionWindowDays: 7\n  description: new"),
                                              vault_doc()))
    monkeypatch.setenv("APP_PASSWORD", "value-two")
    planfile = tmp_path / "x.plan"
    plan = run("plan", directory, "--out", planfile)
    assert plan.exit_code == 0 and "~ KmsProvider/key" in plan.stdout and "~ Secret/pw" in plan.stdout
    return directory, planfile


@pytest.mark.parametrize("now, message", [
    ("value-three", "the value of APP_PASSWORD (fromEnv) changed since the plan was made; run plan again"),
    ("", "environment variable APP_PASSWORD (fromEnv) is empty; an empty value is treated as unset: set it "
         "to the secret's value"),
    (None, "environment variable APP_PASSWORD (fromEnv) is not set"),
])
def test_saved_plan_with_changed_or_missing_fromenv_is_refused_before_any_write(
        aws, stack, monkeypatch, tmp_path, calls, now, message):
    directory, planfile = saved_plan_changing_the_key_and_the_secret(stack, monkeypatch, tmp_path)
    before = state_of(directory)
    if now is None:
        monkeypatch.delenv("APP_PASSWORD")
    else:
        monkeypatch.setenv("APP_PASSWORD", now)
    calls.clear()
    result = run("apply", planfile, "--auto-approve")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {directory / 's.yaml'}:5:12: Secret/pw: {message}\n"
    assert [w for w in calls.writes if w != "kms:Decrypt"] == []
    assert state_of(directory) == before
    key_id = before["resources"]["KmsProvider/key"]["ids"]["keyId"]
    assert boto3.client("kms", region_name="us-east-1").describe_key(KeyId=key_id)["KeyMetadata"][
        "Description"] == ""
    monkeypatch.setenv("APP_PASSWORD", "value-two")
    assert run("apply", planfile, "--auto-approve").exit_code == 0
    assert get(directory, "main/pw") == "value-two"


def test_no_refresh_plan_compares_fromenv_values_too(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", VALUE)
    directory = fromenv_stack(stack)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert run("plan", directory, "--no-refresh", "--detailed-exitcode").exit_code == 0
    monkeypatch.setenv("APP_PASSWORD", "changed")
    plan = run("plan", directory, "--no-refresh", "--detailed-exitcode")
    assert plan.exit_code == 2 and "~ value = (sensitive, will change)" in plan.stdout


def test_a_plan_that_makes_the_vault_key_says_the_value_is_read_at_apply(aws, stack, monkeypatch, tmp_path):
    """No KMS key exists yet to fingerprint the value under: the plan says so
    instead of pretending a saved plan could catch a change."""
    monkeypatch.setenv("APP_PASSWORD", "planned-value")
    directory = fromenv_stack(stack)
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert ("the value of APP_PASSWORD is read again at apply: the vault's key is made by this plan, "
            "so nothing can fingerprint the value now") in " ".join(plan.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    monkeypatch.setenv("APP_PASSWORD", "another-value")
    again = run("plan", directory)
    assert "read again at apply" not in again.output  # the key exists now: the value is fingerprinted
    assert "~ Secret/pw" in again.output

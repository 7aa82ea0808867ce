"""Issue 12, state for teams: `encryptWith` envelope-encrypts the S3 state
object and its backup (KMS GenerateDataKey + AES-GCM) under an encryption
context naming the stack and the state key: the stored bytes hold no
resource name or id, and an object moved to another stack's state key is
refused by KMS with a clear error."""

from __future__ import annotations

import base64
import json
import textwrap

import boto3
import pytest

from tests.conftest import run

BUCKET = "rcl-state"


def stack_yaml(name: str, encrypt_with: str | None) -> str:
    extra = f", encryptWith: {encrypt_with}" if encrypt_with else ""
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Stack
        metadata: {{name: {name}}}
        spec:
          region: us-east-1
          backend:
            s3: {{bucket: {BUCKET}, key: stacks/{name}.json{extra}}}
        """)


KEYS = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: payments}
    spec: {alias: team/payments-ledger, description: ledger key, protect: false, deletionWindowDays: 7}
    ---
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {name: statekey}
    spec: {description: state key, protect: __PROTECT__}
    """)


def s3():
    return boto3.client("s3", region_name="us-east-1")


def raw(key: str) -> bytes:
    return s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.fixture()
def outside_key(aws) -> str:
    """A key no stack manages (the simplest choice: its ARN in encryptWith)."""
    s3().create_bucket(Bucket=BUCKET)
    return boto3.client("kms", region_name="us-east-1").create_key(Description="state")["KeyMetadata"]["Arn"]


def make(tmp_path, name: str, encrypt_with: str | None, *, protect: str = "true"):
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    (directory / "stack.yaml").write_text(stack_yaml(name, encrypt_with))
    (directory / "keys.yaml").write_text(KEYS.replace("__PROTECT__", protect))
    return directory


def readable_names(state: dict) -> list[str]:
    """Every address, AWS id and alias the state records."""
    names = []
    for address, entry in state["resources"].items():
        names += [address, entry["name"], *(str(v) for v in entry["ids"].values()),
                  str(entry["attributes"].get("alias", ""))]
    return [n for n in names if n]


def test_encrypted_state_object_and_backup_hold_no_resource_name(outside_key, tmp_path, calls):
    directory = make(tmp_path, "ledger", outside_key)
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert calls.count("GenerateDataKey") == 1  # one data key for the whole apply, not one per write

    pulled = run("state", "pull", directory)
    assert pulled.exit_code == 0, pulled.output
    state = json.loads(pulled.output)
    names = readable_names(state)
    assert {"KmsProvider/payments", "KmsProvider/statekey", "alias/team/payments-ledger"} <= set(names)
    for key in ("stacks/ledger.json", "stacks/ledger.json.backup"):
        stored = raw(key)
        envelope = json.loads(stored)
        assert envelope["reconcilerState"] == "encrypted-v1" and envelope["keyArn"] == outside_key
        assert envelope["context"] == {"reconciler:stack": "ledger", "reconciler:state-key": "stacks/ledger.json"}
        decoded = stored + b"".join(base64.b64decode(envelope[f]) for f in ("wrappedKey", "nonce", "ciphertext"))
        for name in names + ["payments", "ledger key", "lineage", "resources"]:
            assert name.encode() not in decoded, (key, name)

    # a pushed state is encrypted too, and so is the backup of the one it replaced
    before = raw("stacks/ledger.json")
    edited = {**state, "serial": state["serial"] + 1}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    pushed = run("state", "push", tmp_path / "edited.json", "--dir", directory)
    assert pushed.exit_code == 0, pushed.output
    assert raw("stacks/ledger.json.backup") == before
    assert json.loads(run("state", "pull", directory).output)["serial"] == edited["serial"] + 1
    assert b"KmsProvider/payments" not in raw("stacks/ledger.json")

    # without encryptWith the object is refused, not read as garbage
    (directory / "stack.yaml").write_text(stack_yaml("ledger", None))
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert (f"Error: s3://{BUCKET}/stacks/ledger.json: the state is encrypted (with {outside_key}) but this "
            "stack's backend has no encryptWith; set backend.s3.encryptWith to read it") in refused.output


def test_an_object_moved_to_another_stacks_state_key_fails_decryption(outside_key, tmp_path):
    ledger = make(tmp_path, "ledger", outside_key)
    state = {"version": 1, "lineage": "lineage-ledger", "serial": 1, "resources": {}, "leases": {}}
    (tmp_path / "ledger.json").write_text(json.dumps(state))
    assert run("state", "push", tmp_path / "ledger.json", "--dir", ledger).exit_code == 0  # written encrypted
    other = make(tmp_path, "billing", outside_key)
    stolen = raw("stacks/ledger.json")
    s3().put_object(Bucket=BUCKET, Key="stacks/billing.json", Body=stolen)
    copied = run("state", "pull", other)
    assert copied.exit_code == 1
    (line,) = copied.output.splitlines()
    assert line == (f"Error: s3://{BUCKET}/stacks/billing.json: cannot decrypt the state: the object was encrypted "
                    "for stack ledger (state key stacks/ledger.json), not for stack billing (state key "
                    "stacks/billing.json), and KMS refuses its data key under this stack's encryption context; "
                    "it was copied from another stack's state: restore this stack's own object (its .backup, "
                    "or an earlier S3 version)")

    # the header rewritten to claim the other stack: KMS still refuses (it binds the data key)
    envelope = json.loads(stolen)
    envelope["context"] = {"reconciler:stack": "billing", "reconciler:state-key": "stacks/billing.json"}
    s3().put_object(Bucket=BUCKET, Key="stacks/billing.json", Body=json.dumps(envelope).encode())
    forged = run("apply", other, "--auto-approve")
    assert forged.exit_code == 1
    assert ("cannot decrypt the state: KMS refused its data key under this stack's encryption context (stack "
            f"billing, state key stacks/billing.json) with key {outside_key}") in forged.output
    assert "Traceback" not in forged.output
    assert raw("stacks/billing.json") == json.dumps(envelope).encode()  # nothing was written over it


def test_a_kms_provider_of_the_stack_must_be_in_state_and_protected(outside_key, tmp_path):
    unprotected = make(tmp_path, "ledger", "statekey", protect="false")
    refused = run("plan", unprotected)
    assert refused.exit_code == 1
    assert (f"Error: {unprotected / 'stack.yaml'}:7:" in refused.output
            and "encryptWith names KmsProvider/statekey, which has protect: false" in refused.output)

    directory = make(tmp_path, "ledger", "statekey")
    first = run("apply", directory, "--auto-approve")
    assert first.exit_code == 1
    assert ("backend.s3.encryptWith names KmsProvider/statekey, which is not in state yet, so there is no key "
            "to encrypt the state with") in first.output
    assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == [
        {"KeyId": outside_key.rsplit("/", 1)[1], "KeyArn": outside_key}]  # nothing was created

    # the documented way: apply the key first, then encrypt the state with it
    (directory / "stack.yaml").write_text(stack_yaml("ledger", None))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    plaintext = raw("stacks/ledger.json")
    assert b"KmsProvider/statekey" in plaintext
    (directory / "stack.yaml").write_text(stack_yaml("ledger", "statekey"))
    (directory / "keys.yaml").write_text(KEYS.replace("__PROTECT__", "true").replace("ledger key", "ledger"))
    assert run("apply", directory, "--auto-approve").exit_code == 0  # a change: the state is written, encrypted
    state = json.loads(run("state", "pull", directory).output)
    statekey = state["resources"]["KmsProvider/statekey"]["ids"]
    for key in ("stacks/ledger.json", "stacks/ledger.json.backup"):  # the plaintext predecessor's backup too
        stored = raw(key)
        assert json.loads(stored)["keyArn"] == statekey["arn"]  # the header names the key (its ARN, only)
        for name in readable_names(state):
            if name not in statekey.values():
                assert name.encode() not in stored, (key, name)


def test_policy_grants_the_state_key_bound_to_this_stacks_state(outside_key, tmp_path):
    result = run("policy", make(tmp_path, "ledger", outside_key))
    assert result.exit_code == 0, result.output
    (grant,) = [s for s in json.loads(result.stdout)["Statement"] if s["Resource"] == [outside_key]]
    assert grant == {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [outside_key],
                     "Condition": {"StringEquals": {"kms:EncryptionContext:reconciler:stack": "ledger",
                                                    "kms:EncryptionContext:reconciler:state-key": "stacks/ledger.json"}}}

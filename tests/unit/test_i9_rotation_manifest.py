"""Issue 9: AccessKeyRotation manifests. The secrets a rotation writes are its
own (a Secret document naming one is an error at both positions); schedule
durations and unknown fields are checked before any AWS call."""

from __future__ import annotations

from tests.conftest import run
from tests.unit.test_i6_manifest_shared import STACK, errors_of

BASE = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: k}
spec: {alias: t/k}
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: main}
spec: {provider: k, default: true, store: {local: {path: v}}}
"""


def rotation(name: str = "r", extra: str = "", key_id: str = "key-id", secret: str = "key-secret",
             interval: str = "30d") -> str:
    return (f"apiVersion: reconciler/v1\nkind: AccessKeyRotation\nmetadata: {{name: {name}}}\nspec:\n"
            f"  userName: app-user\n  interval: {interval}\n{extra}"
            f"  outputs:\n    accessKeyId: {{secret: {key_id}}}\n    secretAccessKey: {{secret: {secret}}}\n")


SECRET = "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: key-id}\nspec: {generate: {length: 20}}\n"


def validate(tmp_path, *documents: str):
    directory = tmp_path / "stack"
    directory.mkdir(exist_ok=True)
    (directory / "stack.yaml").write_text(STACK)
    (directory / "all.yaml").write_text("---\n".join([BASE, *documents]))
    result = run("validate", directory)
    assert "Traceback" not in result.output
    return str(directory / "all.yaml"), result


def test_a_valid_rotation_validates(tmp_path):
    _file, result = validate(tmp_path, rotation(extra="  gracePeriod: 2h\n  evictUnknownKeys: true\n"))
    assert result.exit_code == 0, result.output


def test_an_output_declared_again_as_a_secret_is_an_error_at_both_positions(tmp_path):
    file, result = validate(tmp_path, rotation(), SECRET)
    assert result.exit_code == 1
    found = errors_of(result)
    # the rotation's outputs.accessKeyId.secret (line 18 of the file) and the Secret's metadata.name (line 23)
    assert found[0].startswith(f"{file}:18:27: AccessKeyRotation/r: secret main/key-id is also declared by "
                               f"Secret/key-id at {file}:23:18;")
    assert found[1].startswith(f"{file}:23:18: Secret/key-id: secret main/key-id is also declared by "
                               f"AccessKeyRotation/r (accessKeyId.secret) at {file}:18:27;")
    assert "the secrets an AccessKeyRotation writes are its own" in found[0]
    assert len(found) == 2


def test_two_rotations_writing_one_secret_and_one_rotation_writing_both_outputs_to_one_name(tmp_path):
    _file, result = validate(tmp_path, rotation("a"), rotation("b", key_id="other-id", secret="other-secret"),
                             rotation("c", key_id="key-secret", secret="x-secret"))
    found = errors_of(result)
    assert result.exit_code == 1
    assert sum("secret main/key-secret is also declared by" in line for line in found) == 2
    _file, result = validate(tmp_path, rotation("d", key_id="same", secret="same"))
    assert result.exit_code == 1
    assert sum("secret main/same is also declared by AccessKeyRotation/d" in line for line in errors_of(result)) == 2


def test_grace_must_be_shorter_than_the_interval_and_both_positive(tmp_path):
    file, result = validate(tmp_path, rotation(interval="1h"))  # the default grace, 1h, is not shorter
    assert result.exit_code == 1
    [line] = errors_of(result)
    assert line.startswith(f"{file}:16:") and "gracePeriod (1h) must be shorter than interval (1h)" in line
    _file, result = validate(tmp_path, rotation(interval="0d"))
    assert "interval must be longer than 0" in result.output
    _file, result = validate(tmp_path, rotation(extra="  gracePeriod: 0s\n"))
    assert "gracePeriod must be longer than 0" in result.output


def test_unknown_fields_and_inline_keys_are_refused(tmp_path):
    _file, result = validate(tmp_path, rotation(extra="  evictUnknownKey: true\n"))
    assert result.exit_code == 1 and "evictUnknownKey" in result.output
    inline = "  auth: {accessKey: {accessKeyId: example-inline-key-id, secretAccessKey: example-inline-secret}}\n"
    _file, result = validate(tmp_path, rotation(extra=inline))
    assert result.exit_code == 1 and "auth.accessKey.accessKeyId" in result.output.replace("/", ".")


def test_outputs_vault_must_exist(tmp_path):
    text = rotation().replace("  outputs:\n", "  outputs:\n    vault: nope\n")
    _file, result = validate(tmp_path, text)
    assert result.exit_code == 1
    assert "vault refers to Vault/nope, which does not exist; known: main" in result.output


def test_a_secret_of_the_same_name_in_another_vault_is_no_conflict(tmp_path):
    other = ("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: other}\n"
             "spec: {provider: k, store: {local: {path: w}}}\n")
    secret = SECRET.replace("spec: {generate", "spec: {vault: other, generate")
    _file, result = validate(tmp_path, rotation(), other, secret)
    assert result.exit_code == 0, result.output

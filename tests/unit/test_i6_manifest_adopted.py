"""Issue 6, item 17: a field on a read-only adopted key (keyId without
manage: true) was silently ignored; it is an error at that field, naming
manage: true. Fields that only make sense when creating a key, and protect
(adopted keys are never deleted), are refused on any adopted key."""

from __future__ import annotations

import pytest

from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
HEAD = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: legacy}\nspec:\n  keyId: alias/legacy\n"


def validate(tmp_path, text: str):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "key.yaml").write_text(HEAD + text)
    result = run("validate", directory)
    return directory / "key.yaml", result


def errors_of(result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize("field,text,column", [
    ("description", "  description: do not ignore me\n", 16),
    ("tags", "  tags: {team: platform}\n", 9),
    ("alias", "  alias: team/legacy\n", 10),
    ("rotation", "  rotation: {enabled: true}\n", 13),
    ("policy", "  policy: {Statement: [{Effect: Allow}]}\n", 11),
    ("grants", "  grants: [{name: g, granteePrincipal: 'arn:aws:iam::123456789012:role/r', "
               "operations: [Decrypt]}]\n", 11),
])
def test_a_field_on_a_read_only_adopted_key_is_an_error_naming_manage(tmp_path, field, text, column):
    path, result = validate(tmp_path, text)
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"Error: {path}:6:{column}: KmsProvider/legacy: {field} would be ignored: this adopted key (keyId) "
        f"is read-only; add manage: true to reconcile {field}, or remove it"]


def test_manage_false_is_read_only_too(tmp_path):
    path, result = validate(tmp_path, "  manage: false\n  description: x\n")
    assert errors_of(result) == [
        f"Error: {path}:7:16: KmsProvider/legacy: description would be ignored: this adopted key (keyId) "
        "is read-only; add manage: true to reconcile description, or remove it"]


def test_every_ignored_field_is_reported(tmp_path):
    path, result = validate(tmp_path, "  description: x\n  tags: {a: b}\n")
    assert [line.split(": ", 3)[1] for line in errors_of(result)] == [f"{path}:6:16", f"{path}:7:9"]
    assert "2 errors found." in result.output


def test_read_only_adoption_takes_region_and_auth(tmp_path):
    _path, result = validate(tmp_path, "  region: us-west-2\n  auth: {defaultChain: {profile: p}}\n")
    assert result.exit_code == 0, result.output


def test_with_manage_true_the_fields_are_reconciled_and_accepted(tmp_path):
    _path, result = validate(tmp_path, "  manage: true\n  description: x\n  tags: {a: b}\n"
                                       "  rotation: {enabled: true}\n  alias: team/legacy\n")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("manage", ["", "  manage: true\n"])
def test_protect_on_an_adopted_key_is_an_error(tmp_path, manage):
    path, result = validate(tmp_path, manage + "  protect: false\n")
    line = 7 if manage else 6
    assert errors_of(result) == [
        f"Error: {path}:{line}:12: KmsProvider/legacy: protect has no effect on an adopted key (keyId): "
        "reconciler never deletes a key it adopted, it only forgets it; remove protect"]

"""Issue 6, items 19 and 26: the default vault is decided once (one error for
two defaults, not contradictory ones) and loading does work linear in the
number of resources (counted in executed lines of our own code, not timed)."""

from __future__ import annotations

import pathlib
import sys

from reconciler import kinds
from reconciler.crypto import envelope
from reconciler.manifest import model
from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
KEY = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: k}\nspec: {alias: team/k}\n"


def vault(name: str, default: bool) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Vault\nmetadata: {{name: {name}}}\nspec:\n  provider: k\n"
            f"  default: {str(default).lower()}\n  store: {{local: {{path: vaults/{name}}}}}\n")


def sealed_for(vault_name: str, secret: str) -> str:
    """A well-formed envelope bound to stack test, ``vault_name`` and ``secret`` (pure: no KMS)."""
    binding = envelope.Binding("test", vault_name, secret)
    return envelope.seal(b"value", b"k" * 32, key_arn="arn:aws:kms:us-east-1:123456789012:key/x",
                         algorithm="SYMMETRIC_DEFAULT", binding=binding, wrapped_key=b"w").to_string()


def test_two_default_vaults_and_a_vaultless_secret_give_one_error(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK + "---\n" + KEY)
    (directory / "vaults.yaml").write_text(vault("a", True) + "---\n" + vault("b", True))
    (directory / "secrets.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s}\nspec: {generate: {}}\n---\n"
        "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: t}\n"
        f"spec: {{encrypted: '{sealed_for('a', 't')}'}}\n")
    result = run("validate", directory)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {directory / 'vaults.yaml'}:14:12: Vault/b: a second default vault "
                      "(Vault/a is already default); mark at most one Vault default: true"], result.output
    assert "1 error found." in result.output


def test_no_default_vault_still_names_each_vaultless_secret(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK + "---\n" + KEY + "---\n" + vault("a", False))
    (directory / "s.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s}\nspec: {generate: {}}\n")
    result = run("validate", directory)
    assert result.exit_code == 1
    assert f"Error: {directory / 's.yaml'}:1:1: Secret/s: no vault given and no Vault is marked default: " \
           "true" in result.output
    assert "1 error found." in result.output


def test_a_malformed_envelope_is_still_reported_without_a_vault(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK + "---\n" + KEY)
    (directory / "vaults.yaml").write_text(vault("a", True) + "---\n" + vault("b", True))
    (directory / "s.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s}\nspec: {encrypted: 'rcl:v1:abc:def'}\n")
    result = run("validate", directory)
    assert f"{directory / 's.yaml'}:4:19: Secret/s: encrypted: malformed envelope: expected 4 parts" \
        in result.output
    assert "2 errors found." in result.output


# -- item 26: linear loading ----------------------------------------------------
PACKAGE = str(pathlib.Path(model.__file__).resolve().parents[1])


def _write(directory: pathlib.Path, secrets: int) -> None:
    docs = [STACK, KEY, vault("main", True), vault("other", False)]
    docs += [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\n"
             f"spec:\n{'  vault: other' + chr(10) if i % 3 == 0 else ''}  generate: {{length: 20}}\n"
             for i in range(secrets)]
    for start in range(0, len(docs), 50):
        (directory / f"part-{start:05d}.yaml").write_text("---\n".join(docs[start:start + 50]))


def _lines_executed(directory: pathlib.Path) -> int:
    """Lines of reconciler's own code (and of the dataclass methods it calls)
    executed to load, validate, order and desire every resource: a measure of
    work that, unlike time, is the same on every run and machine."""
    count = 0

    def local(frame, event, _arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame, event, _arg):
        name = frame.f_code.co_filename
        return local if name.startswith(PACKAGE) or name == "<string>" else None

    sys.settrace(calls)
    try:
        config, diagnostics = model.load(str(directory))
        config.dependency_graph().topological_order()
        for resource in config.resources.values():
            kinds.handler_for(resource.kind).desired(resource, config, resolve_values=False)
    finally:
        sys.settrace(None)
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert len(config.resources) == 3 + len([r for r in config.resources if r.startswith("Secret/")])
    return count


def test_loading_does_linear_work_in_the_number_of_resources(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir(), large.mkdir()
    _write(small, 150)
    _write(large, 600)
    ratio = _lines_executed(large) / _lines_executed(small)
    # 4x the resources: linear work is about 4x; the old quadratic loader did over 9x
    assert ratio < 4.6, ratio

"""Bad manifests: each mistake gives the expected message at the right
file:line:col, through the real CLI, exit 1, and never a traceback."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.conftest import run

STACK = """\
apiVersion: reconciler/v1
kind: Stack
metadata: {name: test}
spec:
  region: us-east-1
"""

KEY = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata:
  name: main
spec:
  alias: main
"""

# (case id, file contents, expected line, expected column, expected message fragment)
CASES = [
    ("invalid-yaml", "apiVersion: reconciler/v1\nkind: [unclosed\n", 3, 1, "invalid YAML"),
    ("tab-indent", "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata:\n\tname: x\n", 4, 1, "invalid YAML"),
    ("unknown-kind", "apiVersion: reconciler/v1\nkind: KmsKey\nmetadata: {name: a}\nspec: {}\n", 2, 7,
     "unknown kind \"KmsKey\"; expected one of Stack, KmsProvider"),
    ("wrong-api-version", KEY.replace("reconciler/v1", "reconciler/v2"), 1, 13,
     'apiVersion: expected "reconciler/v1"'),
    ("unknown-field-typo", KEY + "  descripton: x\n", 7, 3, "unknown field 'descripton' in spec (did you mean 'description'?)"),
    ("unknown-top-field", KEY + "status: {}\n", 7, 1, "unknown field 'status'"),
    ("bad-key-spec", KEY + "  spec: RSA_1024\n", 7, 9,
     'spec.spec: "RSA_1024" is not allowed; expected one of "SYMMETRIC_DEFAULT", "RSA_2048", "RSA_3072", "RSA_4096"'),
    ("bad-name", KEY.replace("name: main", "name: Main_Key"), 4, 9, "metadata.name: \"Main_Key\" is not valid"),
    ("missing-name", "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {}\nspec: {}\n", 3, 11,
     "missing required field 'name'"),
    ("window-out-of-range", KEY + "  deletionWindowDays: 3\n", 7, 23, "between 7 and 30"),
    ("rotation-on-rsa", KEY + "  spec: RSA_4096\n  rotation: {enabled: true}\n", 8, 13,
     "automatic rotation is for symmetric keys only"),
    ("replicas-without-multiregion", KEY + "  replicaRegions: [us-west-2]\n", 7, 19, "replicaRegions needs multiRegion: true"),
    ("two-auth-modes", KEY + "  auth:\n    defaultChain: {}\n    assumeRole: {roleArn: 'arn:aws:iam::123456789012:role/x'}\n",
     8, 5, "exactly one of defaultChain, accessKey, assumeRole, webIdentity"),
    ("bad-role-arn", KEY + "  auth:\n    assumeRole: {roleArn: not-an-arn}\n", 8, 27, "roleArn: \"not-an-arn\" is not valid"),
    ("wrong-type", KEY + "  multiRegion: 'yes'\n", 7, 16, "multiRegion: expected boolean, got str"),
    ("duplicate-key", KEY + "  alias: again\n", 7, 3, "duplicate key 'alias' (first at line 6)"),
    ("missing-reference",
     "apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\nspec:\n  provider: nope\n  store: {local: {path: x}}\n",
     5, 13, "provider refers to KmsProvider/nope, which does not exist; known: main"),
    ("adopted-with-spec", KEY + "  keyId: alias/x\n  spec: RSA_2048\n", 8, 9, "spec cannot be set on an adopted key"),
    ("ttl-order",
     "apiVersion: reconciler/v1\nkind: DynamicIamTemplate\nmetadata: {name: t}\nspec:\n  defaultTtl: 2h\n  maxTtl: 1h\n",
     6, 11, "maxTtl (1h) is shorter than defaultTtl (2h)"),
    ("missing-external-id",
     "apiVersion: reconciler/v1\nkind: IamRole\nmetadata: {name: r}\nspec:\n  trust:\n    awsAccount: {accountId: '123456789012'}\n",
     6, 17, "missing required field 'externalId'"),
    ("bad-duration",
     "apiVersion: reconciler/v1\nkind: AccessKeyRotation\nmetadata: {name: r}\nspec:\n  userName: bob\n  interval: 30 days\n"
     "  outputs:\n    accessKeyId: {secret: id}\n    secretAccessKey: {secret: key}\n",
     6, 13, "interval: \"30 days\" is not valid; expected a duration such as 90s, 15m, 12h or 30d"),
    ("replica-in-own-region", KEY + "  multiRegion: true\n  replicaRegions: [us-west-2, us-east-1]\n", 8, 31,
     "replica region us-east-1 is the key's own region"),
    ("merge-key", KEY + "  <<: {description: x}\n", 7, 3, "merge keys"),
    # issue 6
    ("adopted-read-only-field", KEY.replace("  alias: main\n", "  keyId: alias/x\n") + "  description: d\n", 7, 16,
     "description would be ignored: this adopted key (keyId) is read-only; add manage: true"),
    ("shared-alias", KEY + "---\n" + KEY.replace("name: main", "name: other"), 13, 10,
     "KmsProvider/other: alias alias/main is also declared by KmsProvider/main"),
    ("shared-store", "".join(
        f"apiVersion: reconciler/v1\nkind: Vault\nmetadata: {{name: {n}}}\nspec:\n  provider: main\n"
        f"  store: {{local: {{path: {p}}}}}\n---\n" for n, p in (("a", "data"), ("b", "data/b"))),
     13, 25, "Vault/b: store local path data/b overlaps the store of Vault/a"),
    ("recursive-yaml-alias", KEY + "  tags: &t {a: *t}\n", 7, 16, "recursive alias"),
]


@pytest.mark.parametrize("name,text,line,column,message", CASES, ids=[c[0] for c in CASES])
def test_bad_manifest(tmp_path, name, text, line, column, message):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    if name in ("missing-reference", "shared-store"):
        (directory / "key.yaml").write_text(KEY)
    path = directory / "bad.yaml"
    path.write_text(text)
    result = run("validate", directory)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    expected = f"{path}:{line}:{column}: "
    matching = [l for l in result.output.splitlines() if l.startswith(f"Error: {expected}")]
    assert matching, f"no error at {expected}\n{result.output}"
    assert any(message in l for l in matching), f"{message!r} not in\n{result.output}"
    # the plan command refuses the same manifests the same way, before any AWS call
    plan = run("plan", directory)
    assert plan.exit_code == 1 and expected in plan.output


def test_every_error_is_listed_not_just_the_first(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "a.yaml").write_text(KEY + "  spec: RSA_1\n  colour: blue\n")
    (directory / "b.yaml").write_text(KEY.replace("main", "other") + "  deletionWindowDays: 99\n")
    result = run("validate", directory)
    errors = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert len(errors) == 3, result.output
    assert "3 errors found." in result.output


def test_missing_stack_document_and_duplicates(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "a.yaml").write_text(KEY + "---\n" + KEY)
    result = run("validate", directory)
    assert result.exit_code == 1
    assert "no Stack document" in result.output
    assert re.search(r"a\.yaml:11:9: KmsProvider/main: duplicate resource KmsProvider/main "
                     r"\(first declared at .*a\.yaml:4:9\)", result.output), result.output


def test_empty_directory_and_missing_directory(tmp_path):
    assert "no *.yaml or *.yml manifests" in run("validate", tmp_path).output
    (tmp_path / "a.yaml").write_text("# only a comment\n---\n")
    empty = run("validate", tmp_path)
    assert empty.exit_code == 1 and "hold no YAML documents" in empty.output and "1 error found." in empty.output
    missing = run("validate", tmp_path / "nope")
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_valid_stack_validates(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "key.yml").write_text(textwrap.dedent(KEY))
    result = run("validate", directory)
    assert result.exit_code == 0 and "Valid: stack test, 1 resource(s)." in result.output

"""Issue 6, item 16: YAML aliases and nesting are bounded. A recursive alias,
an alias bomb ("billion laughs") and absurd nesting each give one positioned
error through `reconciler validate`, at once, instead of a RecursionError or
gigabytes of expansion. (Time and memory figures: bench/yaml_limits.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from reconciler.manifest import loader
from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
HEAD = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: main}\nspec:\n"


def laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` strings from a few hundred bytes."""
    lines = ["  policy:", "    a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"    a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * width) + "]")
    lines.append(f"    Statement: [*a{levels - 1}]")
    return HEAD + "\n".join(lines) + "\n"


def write(tmp_path, text: str):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "bad.yaml").write_text(text)
    return directory


def errors_of(result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def test_a_recursive_alias_is_one_positioned_error(tmp_path):
    directory = write(tmp_path, HEAD + "  tags: &t {a: *t}\n")
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:5:16: YAML alias *t refers to a node that contains it "
        "(a recursive alias)"]


def test_a_recursive_alias_through_a_list_is_refused(tmp_path):
    directory = write(tmp_path, HEAD + "  policy: &p\n    Statement: [{x: [*p]}]\n")
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:6:22: YAML alias *p refers to a node that contains it "
        "(a recursive alias)"]


def test_the_billion_laughs_bomb_is_refused_at_once(tmp_path):
    """387 million strings if expanded; a separate process with a deadline, so
    that a loader without limits fails this test instead of hanging the suite."""
    text = laughs()
    assert len(text.encode()) < 600
    directory = write(tmp_path, text)
    done = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", str(directory)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: {directory / 'bad.yaml'}:9:14: more than {loader.MAX_ALIASES} YAML alias expansions "
        "in one document", "1 error found."]


def test_deep_nesting_is_one_positioned_error(tmp_path):
    directory = write(tmp_path, HEAD + "  tags: " + "[" * 500 + "]" * 500 + "\n")
    column = len("  tags: ") + loader.MAX_DEPTH - 1  # the document and spec are two levels already
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:5:{column}: invalid YAML: nested more than "
        f"{loader.MAX_DEPTH} levels deep"]


def test_absurd_nesting_is_one_positioned_error_too(tmp_path):
    """50,000 levels: libyaml's scanner stops at its own limit (1,000) before
    the composer sees them; either way one error on that line, no RecursionError."""
    directory = write(tmp_path, HEAD + "  tags: " + "[" * 50_000 + "]" * 50_000 + "\n")
    errors = errors_of(run("validate", directory))
    assert len(errors) == 1
    assert errors[0].startswith(f"Error: {directory / 'bad.yaml'}:5:")
    assert ": invalid YAML: " in errors[0]


def test_deep_block_nesting_is_refused_too(tmp_path):
    body = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(2000))
    directory = write(tmp_path, HEAD.replace("spec:\n", "") + "spec:\n" + body)
    errors = errors_of(run("validate", directory))
    assert errors == [f"Error: {directory / 'bad.yaml'}:{4 + loader.MAX_DEPTH - 1}:{2 * loader.MAX_DEPTH - 1}: "
                      f"invalid YAML: nested more than {loader.MAX_DEPTH} levels deep"]


def test_nesting_built_from_aliases_is_bounded(tmp_path):
    """Each level is within MAX_DEPTH as written, but not once the aliases are expanded."""
    deep = "[" * 40 + "x" + "]" * 40
    text = HEAD + f"  policy:\n    a: &a {deep}\n    b: &b {'[' * 30}*a{']' * 30}\n    Statement: [*b]\n"
    directory = write(tmp_path, text)
    errors = errors_of(run("validate", directory))
    assert len(errors) == 1
    assert errors[0].startswith(f"Error: {directory / 'bad.yaml'}:6:")
    assert errors[0].endswith(f"nested more than {loader.MAX_DEPTH} levels deep (YAML aliases expanded)")


def test_aliases_nested_too_deep_are_refused(tmp_path):
    chain = "".join(f"    a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, loader.MAX_ALIAS_DEPTH + 2))
    text = HEAD + "  policy:\n    a0: &a0 [x]\n" + chain + f"    Statement: [*a{loader.MAX_ALIAS_DEPTH + 1}]\n"
    directory = write(tmp_path, text)
    line = 6 + loader.MAX_ALIAS_DEPTH + 1  # a9's own alias is the ninth one deep
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:{line}:14: YAML aliases nested more than "
        f"{loader.MAX_ALIAS_DEPTH} deep"]


def test_a_wide_alias_is_bounded_by_expanded_size(tmp_path):
    items = ",".join(str(i) for i in range(4000))
    text = HEAD + f"  policy:\n    a: &a [{items}]\n    Statement: [*a, *a, *a]\n"
    directory = write(tmp_path, text)
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:7:25: YAML aliases expand to more than "
        f"{loader.MAX_EXPANDED_NODES} nodes"]


def test_ordinary_aliases_still_work_and_point_at_the_alias(tmp_path):
    text = textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {name: main}
        spec:
          tags: &common {team: platform, cost: shared}
          policy:
            Statement:
              - {Sid: a, Effect: Allow, Principal: &root {AWS: "arn:aws:iam::123456789012:root"}, Action: "kms:*"}
              - {Sid: b, Effect: Allow, Principal: *root, Action: "kms:Decrypt"}
          multiRegion: *common
        """)
    directory = write(tmp_path, text)
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:10:16: KmsProvider/main: spec.multiRegion: expected boolean, got dict"]
    (directory / "bad.yaml").write_text(text.replace("  multiRegion: *common\n", ""))
    result = run("validate", directory)
    assert result.exit_code == 0, result.output


def test_anchors_are_per_document(tmp_path):
    """An alias to an anchor of another document is undefined (as YAML says)."""
    text = HEAD + "  description: &x0 a\n---\n" + HEAD.replace("main", "second") + "  description: *x0\n"
    directory = write(tmp_path, text)
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'bad.yaml'}:11:16: invalid YAML: found undefined alias 'x0'"]

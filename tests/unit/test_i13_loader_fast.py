"""The one-pass YAML builder gives what composing and walking gave (issue 13 item 3).

``loader.parse_text`` builds documents straight from libyaml's events;
``loader.parse_composed`` is the careful way (a node tree, then a walk), still
used for files with anchors or aliases. For every input, generated or written
out at each limit, the two must give the same documents (data, positions, key
positions) and the same diagnostics, in the same order.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from reconciler.manifest import loader
from tests.unit.test_i11_fuzz import SETTINGS, YAMLISH, streams


def _same(text: str) -> None:
    fast_documents, fast_problems = loader.parse_text(text, "f.yaml")
    slow_documents, slow_problems = loader.parse_composed(text, "f.yaml")
    assert [str(p) for p in fast_problems] == [str(p) for p in slow_problems]
    assert fast_documents == slow_documents  # file, index and data (positions are not compared by ==)
    assert [(d.positions, d.key_positions) for d in fast_documents] == \
        [(d.positions, d.key_positions) for d in slow_documents]


@SETTINGS
@given(YAMLISH)
def test_yaml_ish_text_is_parsed_the_same_both_ways(text):
    _same(text)


@SETTINGS
@given(streams())
def test_generated_documents_are_parsed_the_same_both_ways(text):
    _same(text)


N = loader.MAX_ENTRIES
CASES = {
    "plain": "apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s, labels: {a: b}}\n"
             "spec:\n  generate: {length: 32}\n  list: [1, 2.5, true, null, ~, '3', 2024-01-02, 0x1F]\n",
    "documents": "a: 1\n---\n---\nb: [x, {c: d}]\n...\n---\n# only a comment\n",
    "tags": "a: !!str 3\nb: !!int '4'\nc: !!float 1\nd: !!binary aGk=\ne: !!timestamp 2024-01-02\n",
    "bad tag": "a: !nope x\nb: 1\n",
    "bad int": "a: !!int xyz\n",
    "bad bool": "a: !!bool maybe\nb: 1\n",
    "bad timestamp": "a: !!timestamp foo\n",
    "huge int": "a: " + "9" * 5000 + "\n",
    "non-scalar keys": "? [a, b]\n: 1\n? {c: d}\n: [2]\nok: 3\n",
    "merge key": "a: 1\n<<: {b: 2}\n'<<': 3\nc: 4\n",
    "duplicate key": "a: 1\nb: 2\na: {x: [1, 2]}\nc: 3\n",
    "int and bool keys": "1: a\ntrue: b\n~: c\n2024-01-02: d\n",
    "control character": 'a: "\\e[31m"\nb: {c: "\\x07"}\n',
    "control character in a key": '"\\x01k": 1\nb: 2\n',
    "stopped then a duplicate": 'a: "\\x07"\na: 2\n? [x]\n: 1\n',
    "syntax error": "a: 1\nb: [2\nc: 3\n",
    "syntax error in the second document": "a: 1\n---\nb: {\n",
    "deep": "a: " + "[" * (loader.MAX_DEPTH + 2) + "]" * (loader.MAX_DEPTH + 2) + "\n",
    "deep mapping": "".join("  " * i + f"k{i}:\n" for i in range(loader.MAX_DEPTH + 1)) + "  " * 66 + "v: 1\n",
    "just deep enough": "a: " + "[" * (loader.MAX_DEPTH - 1) + "]" * (loader.MAX_DEPTH - 1) + "\n",
    "long list": "a: [" + ", ".join(["1"] * (N + 1)) + "]\n",
    "wide mapping": "".join(f"k{i}: 1\n" for i in range(N + 1)),
    "list at the limit": "a: [" + ", ".join(["1"] * N) + "]\n",
    "many nodes": "".join(f"k{i}: [{', '.join(['1'] * 99)}]\n---\n" for i in range(loader.MAX_NODES // 100 + 1)),
    "many documents": "a: 1\n---\n" * (loader.MAX_DOCUMENTS + 1),
    "problem then a limit": 'a: "\\x07"\n' + "b: [" + ", ".join(["1"] * (N + 1)) + "]\n",
    "anchors": "a: &x {b: [1, 2]}\nc: *x\nd: *x\n",
    "anchor in the second document": "a: 1\n---\nb: &y 2\nc: *y\n",
    "recursive alias": "a: &x [*x]\n",
    "undefined alias": "a: *nope\n",
    "empty": "",
    "only comments": "# a\n# b\n",
    "null document": "~\n",
    "scalar document": "just text\n",
    "unprintable": "a: \x07\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_written_cases_are_parsed_the_same_both_ways(name):
    _same(CASES[name])


def test_the_cases_reach_the_limits():
    """The cases above are not vacuous: the limits, stops and key problems are hit."""
    expected = {"deep": "nested more than", "long list": "a list of more than",
                "wide mapping": "a mapping of more than", "many nodes": "YAML nodes in one file",
                "many documents": "YAML documents in one file", "duplicate key": "duplicate key 'a'",
                "merge key": "merge keys", "non-scalar keys": "mapping keys must be plain strings",
                "control character": "control character U+001B", "huge int": "is too large",
                "problem then a limit": "a list of more than", "bad tag": "could not determine a constructor",
                "bad bool": 'invalid bool value "maybe"', "bad int": 'invalid int value "xyz"'}
    for name, wanted in expected.items():
        _documents, problems = loader.parse_text(CASES[name], "f.yaml")
        assert any(wanted in p.message for p in problems), (name, [p.message for p in problems])
    _documents, problems = loader.parse_text(CASES["problem then a limit"], "f.yaml")
    assert len(problems) == 1  # the composer reads a document whole before any value is looked at


def test_a_clean_file_finds_its_positions_only_when_one_is_asked_for():
    text = "a: 1\n---\nb:\n  c: [x, y]\n"
    first, second = loader.parse_text(text, "f.yaml")[0]
    assert first._positions is None and second._positions is None  # not found yet
    assert str(second.position(("b", "c", 1))) == "f.yaml:4:10"
    assert second.key_positions == {("b",): (3, 1), ("b", "c"): (4, 3)}
    assert str(first.position(("a",), key=True)) == "f.yaml:1:1"
    with_problem = loader.parse_text("a: 1\na: 2\n", "f.yaml")
    assert [p.message for p in with_problem[1]] == ["duplicate key 'a' (first at line 1)"]


def test_positions_point_at_values_and_keys():
    [document], problems = loader.parse_text("a:\n  b: [x, {c: d}]\n", "f.yaml")
    assert problems == []
    assert str(document.position(("a", "b", 1, "c"))) == "f.yaml:2:14"
    assert str(document.position(("a", "b", 1, "c"), key=True)) == "f.yaml:2:11"
    assert str(document.position(("a", "missing"))) == "f.yaml:2:3"


def test_commands_that_call_no_aws_never_import_boto3(tmp_path):
    """validate and plan --no-refresh make no session or client: botocore (~0.15 s
    to import) stays unloaded, as does the Python schema validator (the gate took it)."""
    import subprocess
    import sys

    (tmp_path / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: s}\n"
                                         "spec: {region: us-east-1}\n---\napiVersion: reconciler/v1\n"
                                         "kind: KmsProvider\nmetadata: {name: k}\nspec: {alias: s/k}\n")
    code = ("import sys\nfrom click.testing import CliRunner\nfrom reconciler import cli\n"
            f"for args in (['validate', {str(tmp_path)!r}], ['plan', '--no-refresh', {str(tmp_path)!r}]):\n"
            "    result = CliRunner().invoke(cli.main, args)\n"
            "    assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in ('boto3', 'botocore', 'jsonschema') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.stdout.strip() == "[]", done.stdout + done.stderr

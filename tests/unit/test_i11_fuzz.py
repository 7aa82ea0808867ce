"""Issue 11, item 6: a generated fuzz test of the loader and the validator.

Hypothesis writes YAML-ish text (punctuation, indentation, anchors and aliases,
tags, unicode, control characters) and structured documents (every kind, its
real field names, random values and nesting, aliases spliced in), and each is
loaded and validated. Whatever the input, the only outcome is a list of
diagnostics (or a valid stack): no exception but the project's own, every
diagnostic one printable line of bounded length, and each example within
the hypothesis deadline. A sample also goes through the real CLI
(`reconciler validate`), which must never print "internal error" or a
traceback. derandomize=True: CI runs the same examples every time.
"""

from __future__ import annotations

import json
import pathlib
import re
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors
from reconciler.manifest import loader, model, schema
from tests.conftest import run

SETTINGS = settings(max_examples=100, deadline=2000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
LONGEST = 2_000  # characters in one diagnostic: a position, an address and a message quoting ~200


def _fields() -> dict[str, list[str]]:
    """Each kind's spec field names, from its schema (so documents get far enough to be checked)."""
    names = {}
    for kind in schema.KINDS:
        spec = json.loads(schema.schema_text(f"{kind.lower()}.schema.json"))["properties"]["spec"]
        names[kind] = sorted(spec.get("properties", {}))
    return names


FIELDS = _fields()
SOME_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
NAMES = st.one_of(st.sampled_from(["main", "app", "v", "key-1", "alias/", "alias/aws/x", "aws:x", "Main_Key",
                                   "/a b/", "../x", "x" * 300]), SOME_TEXT)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), NAMES,
                    st.sampled_from(["30d", "1h", "0s", "us-east-1", "rcl:v1:e30:YQ:YQ:YQ", "{$ref: x}",
                                     "2024-13-45", "1e999", "0x1F", "~", "-", "arn:aws:iam::123456789012:role/x"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5),
    st.dictionaries(st.one_of(NAMES, st.sampled_from(["$ref", "Statement", "Effect", "env", "vault"])),
                    inner, max_size=5)), max_leaves=30)


@st.composite
def documents(draw: st.DrawFn) -> dict:
    kind = draw(st.one_of(st.sampled_from(schema.KINDS), NAMES))
    fields = FIELDS.get(kind) or ["alias"]
    spec = draw(st.dictionaries(st.one_of(st.sampled_from(fields), NAMES), VALUES, max_size=6))
    document: dict = {"apiVersion": draw(st.sampled_from(["reconciler/v1", "v2", 1])), "kind": kind,
                      "metadata": {"name": draw(NAMES)}, "spec": spec}
    for field in draw(st.lists(st.sampled_from(list(document)), max_size=2, unique=True)):
        if draw(st.booleans()):
            document[field] = draw(VALUES)
        else:
            del document[field]
    return document


@st.composite
def streams(draw: st.DrawFn) -> str:
    """One file: a Stack and a few documents, in block or flow style, with
    anchors and aliases (recursive ones too) and raw fragments spliced in."""
    docs = [{"apiVersion": "reconciler/v1", "kind": "Stack", "metadata": {"name": "test"},
             "spec": {"region": "us-east-1"}}] + draw(st.lists(documents(), max_size=4))
    parts = [yaml.safe_dump(d, default_flow_style=draw(st.booleans()), allow_unicode=draw(st.booleans()),
                            sort_keys=False) for d in docs]
    text = "---\n".join(parts)
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        fragment = draw(st.sampled_from([
            "  x: &a [1, 2]", "  y: *a", "  z: &b {k: *b}", "  <<: {a: 1}", "  !!binary x: y", "  t: !custom 1",
            "  d: 2024-13-45", "  n: " + "9" * 5000, "  e: \"\\e[31m\"", "  b: \x07", "\t- x", "%YAML 1.1",
            "? [a, b]\n: c", "  deep: " + "[" * 200 + "]" * 200, "...", "--- |", "  - &x a\n  - *y"]))
        lines.insert(at, fragment)
    return "\n".join(lines) + "\n"


YAMLISH = st.lists(st.one_of(
    st.sampled_from(list(":-?[]{},&*!|>'\"%@`#\n\t ") + ["---\n", "...\n", "  ", "\\u", "\\e", "\\x7f", "<<",
                                                         "kind: ", "spec:\n", "metadata: {name: a}\n",
                                                         "apiVersion: reconciler/v1\n", "KmsProvider", "Secret"]),
    st.characters(codec="utf-8", exclude_categories=["Cs"])), max_size=120).map("".join)


def check(text: str) -> None:
    """Load and validate one file's text; only diagnostics may come out."""
    with tempfile.TemporaryDirectory() as scratch:
        source_dir = pathlib.Path(scratch)
        docs, diagnostics = loader.parse_text(text, "fuzz.yaml")
        try:
            _config, more = model.build(loader.Source(source_dir, tuple(docs), "0"))
        except errors.ReconcilerError:
            return
    for diagnostic in diagnostics + more:
        shown = str(diagnostic)
        assert "\n" not in shown and not UNPRINTABLE.search(shown), shown
        assert len(shown) < LONGEST, shown[:300]


@SETTINGS
@given(YAMLISH)
def test_yaml_ish_text_gives_diagnostics_only(text):
    check(text)


@SETTINGS
@given(streams())
def test_generated_documents_give_diagnostics_only(text):
    check(text)


@settings(max_examples=25, deadline=5000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(streams(), YAMLISH))
def test_validate_never_prints_an_internal_error(tmp_path, text):
    path = tmp_path / "stack.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = run("validate", tmp_path)
    assert result.exit_code in (0, 1), result.output
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    assert not UNPRINTABLE.search(result.output), repr(result.output[:500])

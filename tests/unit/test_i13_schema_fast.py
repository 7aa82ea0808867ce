"""The jsonschema-rs gate agrees with the Python validator (issue 13 item 3).

``schema.validate_document`` trusts jsonschema-rs's "valid" and asks the
Python validator only about documents it refuses. That is sound only if the
two never disagree on a document the gate accepts: here every document of the
examples and golden plans, and many thousands of mutations of them (a field
removed, a value of another type or shape, an unknown field, strings that
patterns, lengths and enums refuse), get the same verdict from both.
"""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconciler.manifest import loader, schema

ROOT = pathlib.Path(__file__).resolve().parents[2]

STRINGS = ["", "x", "main\n", "a" * 300, "UPPER case", "ünïcode", "with space", "-lead", "1",
           "alias/aws/reserved", "arn:aws:kms:us-east-1:123456789012:key/abc", "reconciler:stack",
           "aws:tag", "https://token.actions.githubusercontent.com", "30d", "90", "${X}",
           # where Python's \s and ECMA-262's differ (FS..US and NEL are Python's only, BOM ECMA's)
           "https://x\x1cy", "https://x\x1fy", "https://x\x85y", "https://x\ufeffy", "https://x y"]
OTHERS: list[Any] = [None, True, 0, -1, 7, 100000, 2.5, [], ["x"], {}, {"x": 1}]


def _documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/golden/**/*.yaml")]):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") in schema.KINDS:
                found.append(document)
    return found


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    holder: Any = changed
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    return changed


def _delete(document: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    holder: Any = changed
    for part in path[:-1]:
        holder = holder[part]
    del holder[path[-1]]
    return changed


def _mutations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield document
    for path in _paths(document):
        if not path:
            continue
        yield _delete(document, path)
        for value in OTHERS + STRINGS:
            yield _set(document, path, value)
        target: Any = document
        for part in path:
            target = target[part]
        if isinstance(target, dict):
            yield _set(document, path + ("unknownField",), 1)
        if isinstance(target, list) and target:
            yield _set(document, path, target + target[:1])  # a duplicate item (uniqueItems)


def _python_valid(kind: str, data: Any) -> bool:
    return not any(True for _ in schema.validator_for(kind).iter_errors(data))


def test_the_corpus_is_not_empty() -> None:
    kinds = {d["kind"] for d in _documents()}
    assert {"Stack", "KmsProvider", "Secret", "Vault", "IamRole"} <= kinds


@pytest.mark.parametrize("kind", schema.KINDS)
def test_both_validators_agree_on_every_mutation(kind: str) -> None:
    documents = [d for d in _documents() if d["kind"] == kind]
    if not documents:
        pytest.skip(f"no {kind} document in examples/ or tests/golden/")
    checked = refused = ascii_only_gate = 0
    for original in documents:
        for mutated in _mutations(original):
            fast = schema._fast_valid(kind, mutated)
            slow = _python_valid(kind, mutated)
            assert not (fast and not slow), ("the gate accepts what the schema refuses", kind, mutated)
            # The one known difference is the safe way round: ECMA-262's \w is ASCII, Python's
            # Unicode, so a non-ASCII tag value is refused by the gate and accepted by Python.
            if fast != slow:
                assert not fast and slow and not repr(mutated).isascii(), (kind, mutated)
                ascii_only_gate += 1
            checked += 1
            refused += not slow
    assert refused > checked // 4  # the mutations really exercise refusals
    assert ascii_only_gate < checked // 20  # the known difference is rare: the gate does the work


def test_a_refused_document_still_gets_positioned_python_errors() -> None:
    text = ("apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s}\n"
            "spec:\n  generate: {}\n  descripton: typo\n")
    [document], problems = loader.parse_text(text, "s.yaml")
    assert problems == []
    assert not schema._fast_valid("Secret", document.data)
    [diagnostic] = schema.validate_document(document)
    assert "unknown field 'descripton'" in diagnostic.message
    assert (diagnostic.position.line, diagnostic.position.column) == (6, 3)


def test_values_json_cannot_hold_fall_back_to_python() -> None:
    document = {"apiVersion": "reconciler/v1", "kind": "Secret", "metadata": {"name": "s"},
                "spec": {"generate": {"length": float("inf")}}}
    assert schema._fast_valid("Secret", document) is False
    assert not _python_valid("Secret", document)

"""JSON Schema validation of documents, with errors placed at file:line:col."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from reconciler import errors
from reconciler.manifest import loader

if TYPE_CHECKING:  # imported when first needed: a valid stack never needs the Python validator
    import jsonschema
    import referencing

BASE = "https://reconciler.dev/schemas/"
KINDS = ("Stack", "KmsProvider", "IamRole", "OidcProvider", "Vault", "Secret",
         "AccessKeyRotation", "DynamicIamTemplate")


def schema_text(name: str) -> str:
    return importlib.resources.files("reconciler").joinpath("schemas").joinpath(name).read_text()


@functools.cache
def _schemas() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every schema the package holds, by its ``$id`` (what both validators resolve ``$ref`` against)."""
    found = []
    for entry in importlib.resources.files("reconciler").joinpath("schemas").iterdir():
        if entry.name.endswith(".schema.json"):
            contents = json.loads(entry.read_text())
            found.append((str(contents["$id"]), contents))
    return tuple(found)


@functools.cache
def _registry() -> referencing.Registry:
    import referencing
    import referencing.jsonschema
    return referencing.Registry().with_resources(
        [(uri, referencing.jsonschema.DRAFT202012.create_resource(contents)) for uri, contents in _schemas()])


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` as JSON Schema means it: Python's ``$`` also matches before
    a final newline, so ``"main\\n"`` would pass ``^[a-z]+$``; here an
    anchored pattern must match up to the very end."""
    if not isinstance(instance, str):
        return
    found = _compiled(pattern).search(instance)
    if found is None or (pattern.endswith("$") and pattern.startswith("^") and found.end() != len(instance)):
        import jsonschema
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def validator_for(kind: str) -> jsonschema.Draft202012Validator:
    """The kind's schema for Python's jsonschema, with ``pattern`` as JSON Schema means it."""
    import jsonschema
    checker = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})
    schema = json.loads(schema_text(f"{kind.lower()}.schema.json"))
    validator: jsonschema.Draft202012Validator = checker(schema, registry=_registry())
    return validator


@functools.cache
def _fast_registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry(list(_schemas()))


@functools.cache
def fast_validator_for(kind: str) -> Any:
    """The kind's schema compiled by jsonschema-rs: a yes/no verdict in
    microseconds (pure-Python jsonschema takes ~0.2 ms a document, most of a
    large stack's validation). It only gates: a document it accepts has no
    schema errors; one it refuses is validated again by ``validator_for``,
    whose errors (with paths for file:line:col) are what users see, and whose
    verdict wins. Its regexes are ECMA-262's, where ``$`` is the very end, as
    ``_pattern`` makes Python's; tests/unit/test_schema_fast.py checks that the
    two agree on every document of the examples, the golden plans and the
    refusals the tests make."""
    schema = json.loads(schema_text(f"{kind.lower()}.schema.json"))
    return jsonschema_rs.validator_for(schema, registry=_fast_registry(), validate_formats=False)


def _fast_valid(kind: str, data: Any) -> bool:
    try:
        return bool(fast_validator_for(kind).is_valid(data))
    except (ValueError, TypeError, OverflowError):  # a value JSON has no word for (.inf, a huge int)
        return False


def _field(path: tuple[Any, ...]) -> str:
    """The dotted path of a field, each part clipped (keys can be long)."""
    return ".".join(loader.clip(str(p), 64) for p in path) or "document"


def _key(name: Any) -> str:
    return repr(loader.clip(str(name)))


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n:,} {noun if n == 1 else plural}"


def _describe(error: jsonschema.ValidationError) -> tuple[str, tuple[Any, ...], bool]:
    """A readable message, the path to point at, and whether to point at the key.
    Values are quoted with ``loader.quote``: at most ~200 characters, and
    control characters escaped."""
    path = tuple(error.absolute_path)
    field = _field(path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    quote = loader.quote
    instance = error.instance
    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        # a bad key: point at it, and say what is wrong with the key
        at = path + (instance,)
        if validator == "not":
            return f"{field}: key {quote(instance)} is reserved", at, True
        if validator == "pattern":
            expected = schema.get("description") or f"a key matching {error.validator_value}"
            return f"{field}: key {quote(instance)} is not valid; expected {expected}", at, True
        if validator in ("minLength", "maxLength"):
            return (f"{field}: key {quote(instance)} is {_count(len(instance), 'character')} long; "
                    f"expected {_length(schema)}"), at, True
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in schema.get("properties", {}))
        name = extra[0] if extra else "?"
        close = difflib.get_close_matches(name, allowed, n=1) if len(name) <= 64 else []
        hint = (f" (did you mean {close[0]!r}?)" if close else
                f"; allowed: {', '.join(allowed)}" if allowed else "")
        where = f" in {field}" if path else ""
        return f"unknown field {_key(name)}{where}{hint}", path + (name,), True
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where = f"{field}" if path else "document"
        return f"{where}: missing required field {_key(missing)}", path, False
    if validator == "enum":
        choices = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"{field}: {quote(instance)} is not allowed; expected one of {choices}", path, False
    if validator == "const":
        return f"{field}: expected {json.dumps(error.validator_value)}, got {quote(instance)}", path, False
    if validator == "type":
        return f"{field}: expected {error.validator_value}, got {type(instance).__name__}", path, False
    if validator in ("minProperties", "maxProperties", "oneOf") and schema.get("description", "").startswith("exactly one of"):
        present = sorted(instance) if isinstance(instance, dict) else []
        got = f" (got {loader.clip(', '.join(present))})" if present else ""
        return f"{field}: {schema['description']}{got}", path, False
    if validator == "pattern":
        described = schema.get("description")
        expected = described or f"a value matching {error.validator_value}"
        return f"{field}: {quote(instance)} is not valid; expected {expected}", path, False
    if validator == "not" and isinstance(instance, str):
        return f"{field}: {quote(instance)} is reserved", path, False
    if validator in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}")
        return f"{field}: {quote(instance, 40)} is out of range; expected {bounds}", path, False
    if validator in ("minLength", "maxLength") and isinstance(instance, str):
        return (f"{field}: {quote(instance)} is {_count(len(instance), 'character')} long; "
                f"expected {_length(schema)}"), path, False
    if validator in ("minItems", "maxItems") and isinstance(instance, list):
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        bounds = f"at least {lo}" if validator == "minItems" else f"at most {hi}"
        return f"{field}: {_count(len(instance), 'item')}; expected {bounds}", path, False
    if validator in ("minProperties", "maxProperties") and isinstance(instance, dict):
        bounds = (f"at least {schema.get('minProperties')}" if validator == "minProperties"
                  else f"at most {schema.get('maxProperties')}")
        return f"{field}: {_count(len(instance), 'entry')}; expected {bounds}", path, False
    if validator == "uniqueItems":
        return f"{field}: items must be unique", path, False
    if validator == "oneOf" and schema.get("description"):
        return f"{field}: {schema['description']}", path, False
    return f"{field}: {loader.one_line(error.message)}", path, False


def _length(schema: dict[str, Any]) -> str:
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    if lo is not None and hi is not None:
        return f"{lo} to {hi} characters"
    return f"at least {lo} characters" if lo is not None else f"at most {hi} characters"


def validate_document(document: loader.Document) -> list[errors.Diagnostic]:
    """Schema problems of one document, every one of them, in document order."""
    data = document.data
    address = document.address
    if not isinstance(data, dict):
        return [errors.Diagnostic("a document must be a mapping with apiVersion, kind, metadata, spec",
                                  document.position(()))]
    kind = data.get("kind")
    if kind not in KINDS:
        shown = loader.quote(kind) if kind is not None else "missing"
        return [errors.Diagnostic(f"unknown kind {shown}; expected one of {', '.join(KINDS)}",
                                  document.position(("kind",)), address)]
    if _fast_valid(kind, data):
        return []
    diagnostics = []
    found = sorted(validator_for(kind).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    for error in found:
        message, path, at_key = _describe(error)
        diagnostics.append(errors.Diagnostic(message, document.position(path, key=at_key), address))
    diagnostics.sort(key=lambda d: (d.position.line, d.position.column) if d.position else (0, 0))
    return diagnostics

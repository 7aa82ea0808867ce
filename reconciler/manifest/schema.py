"""JSON Schema validation of documents, with errors placed at file:line:col."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from reconciler import errors
from reconciler.manifest import loader

BASE = "https://reconciler.dev/schemas/"
KINDS = ("Stack", "KmsProvider", "IamRole", "OidcProvider", "Vault", "Secret",
         "AccessKeyRotation", "DynamicIamTemplate")


def schema_text(name: str) -> str:
    return importlib.resources.files("reconciler").joinpath("schemas").joinpath(name).read_text()


@functools.cache
def _registry() -> referencing.Registry:
    resources = []
    for entry in importlib.resources.files("reconciler").joinpath("schemas").iterdir():
        if entry.name.endswith(".schema.json"):
            contents = json.loads(entry.read_text())
            resources.append((contents["$id"], referencing.jsonschema.DRAFT202012.create_resource(contents)))
    return referencing.Registry().with_resources(resources)


@functools.cache
def validator_for(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_text(f"{kind.lower()}.schema.json"))
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _describe(error: jsonschema.ValidationError) -> tuple[str, tuple[Any, ...], bool]:
    """A readable message, the path to point at, and whether to point at the key."""
    path = tuple(error.absolute_path)
    field = ".".join(str(p) for p in path) or "document"
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in schema.get("properties", {}))
        name = extra[0] if extra else "?"
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = (f" (did you mean {close[0]!r}?)" if close else
                f"; allowed: {', '.join(allowed)}" if allowed else "")
        where = f" in {field}" if path else ""
        return f"unknown field {name!r}{where}{hint}", path + (name,), True
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where = f"{field}" if path else "document"
        return f"{where}: missing required field {missing!r}", path, False
    if validator == "enum":
        choices = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"{field}: {json.dumps(error.instance)} is not allowed; expected one of {choices}", path, False
    if validator == "const":
        return f"{field}: expected {json.dumps(error.validator_value)}, got {json.dumps(error.instance)}", path, False
    if validator == "type":
        return f"{field}: expected {error.validator_value}, got {type(error.instance).__name__}", path, False
    if validator in ("minProperties", "maxProperties", "oneOf") and schema.get("description", "").startswith("exactly one of"):
        present = sorted(error.instance) if isinstance(error.instance, dict) else []
        got = f" (got {', '.join(present)})" if present else ""
        return f"{field}: {schema['description']}{got}", path, False
    if validator == "pattern":
        described = schema.get("description")
        expected = described or f"a value matching {error.validator_value}"
        return f"{field}: {json.dumps(error.instance)} is not valid; expected {expected}", path, False
    if validator == "not" and isinstance(error.instance, str):
        return f"{field}: {json.dumps(error.instance)} is reserved", path, False
    if validator in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}")
        return f"{field}: {error.instance} is out of range; expected {bounds}", path, False
    return f"{field}: {error.message}", path, False


def validate_document(document: loader.Document) -> list[errors.Diagnostic]:
    """Schema problems of one document, every one of them, in document order."""
    data = document.data
    address = document.address
    if not isinstance(data, dict):
        return [errors.Diagnostic("a document must be a mapping with apiVersion, kind, metadata, spec",
                                  document.position(()))]
    kind = data.get("kind")
    if kind not in KINDS:
        shown = json.dumps(kind) if kind is not None else "missing"
        return [errors.Diagnostic(f"unknown kind {shown}; expected one of {', '.join(KINDS)}",
                                  document.position(("kind",)), address)]
    diagnostics = []
    found = sorted(validator_for(kind).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    for error in found:
        message, path, at_key = _describe(error)
        diagnostics.append(errors.Diagnostic(message, document.position(path, key=at_key), address))
    diagnostics.sort(key=lambda d: (d.position.line, d.position.column) if d.position else (0, 0))
    return diagnostics

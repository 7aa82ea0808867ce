"""Plans in the shape of ``terraform show -json``, so policies written for
Terraform plans (OPA / conftest over ``resource_changes``) read ours too.

Terraform's JSON output format, as far as a plan of ours holds it:
``format_version``; ``resource_changes[]`` and ``resource_drift[]`` of
``{address, mode, type, name, provider_name, deposed?, change: {actions,
before, after, after_unknown, before_sensitive, after_sensitive,
replace_paths?}, action_reason?}``. Differences, on purpose:

- ``type`` is the kind (``KmsProvider``), ``address`` ours (``Kind/name``);
- sensitive values are masked in ``before`` / ``after`` (Terraform prints
  them in clear); ``*_sensitive`` marks them ``true`` as Terraform does;
- values known only after apply are left out of ``after`` and marked
  ``true`` in ``after_unknown``, as Terraform does;
- ``actions`` adds ``["rotate"]`` and ``["revoke"]`` (timed work);
- a drift entry's ``before`` / ``after`` hold the drifted attributes only,
  keyed by attribute path (the plan keeps no copy of the whole recorded object);
- each entry carries what Terraform has no field for under ``reconciler``.

Pure: values in, JSON-shaped values out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.plan import actions, model, refs
from reconciler.render import values
from reconciler.state import model as state_model

FORMAT_VERSION = "1.2"  # the Terraform JSON plan format version this shape follows
PROVIDER_NAME = "reconciler"
_STEP = re.compile(r"\[([^\]]*)\]|([^.\[]+)")
Action = actions.Action


def terraform_actions(action: Action) -> list[str]:
    """Terraform's ``change.actions`` for one of ours."""
    match action:
        case Action.NOOP:
            return ["no-op"]
        case Action.CREATE:
            return ["create"]
        case Action.READ:
            return ["read"]
        case Action.UPDATE:
            return ["update"]
        case Action.DELETE_THEN_CREATE:
            return ["delete", "create"]
        case Action.CREATE_THEN_DELETE:
            return ["create", "delete"]
        case Action.DELETE:
            return ["delete"]
        case Action.ROTATE:
            return ["rotate"]
        case Action.REVOKE:
            return ["revoke"]


def terraform_mode(mode: state_model.Mode) -> str:
    """``data`` for an object reconciler only reads, ``managed`` for one it converges."""
    match mode:
        case state_model.Mode.READ:
            return "data"
        case state_model.Mode.MANAGED | state_model.Mode.ADOPTED:
            return "managed"


def unknown_as_bool(value: Any) -> Any:
    """Terraform's ``after_unknown`` of a value: ``true`` where unknown; objects
    keep only what is not ``false``; lists keep every element's."""
    if refs.is_unknown(value):
        return True
    if isinstance(value, Mapping):
        return {k: shown for k, v in value.items() if (shown := unknown_as_bool(v)) is not False}
    if isinstance(value, list):
        return [unknown_as_bool(v) for v in value]
    return False


def sensitive_as_bool(value: Any, sensitive: Sequence[str] | frozenset[str]) -> Any:
    """Terraform's ``*_sensitive`` of an object: ``false`` when absent, else
    ``true`` at every sensitive attribute and the structure of the others."""
    if value is None:
        return False
    return {k: True if k in sensitive else _structure(v) for k, v in value.items()
            if k in sensitive or _structure(v) is not False}


def _structure(value: Any) -> Any:
    if isinstance(value, Mapping) and not refs.is_unknown(value):
        return {k: shown for k, v in value.items() if (shown := _structure(v)) is not False}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return False


def known_only(value: Any) -> Any:
    """``value`` without what is known only after apply (Terraform leaves it
    out of ``after``; a list keeps its length with ``null``)."""
    if refs.is_unknown(value):
        return None
    if isinstance(value, Mapping):
        return {k: known_only(v) for k, v in value.items() if not refs.is_unknown(v)}
    if isinstance(value, list):
        return [known_only(v) for v in value]
    return value


def path_steps(path: str) -> list[str | int]:
    """``policy.Statement[0].Action`` as Terraform's path steps: ``["policy", "Statement", 0, "Action"]``."""
    steps: list[str | int] = []
    for index, name in _STEP.findall(path):
        steps.append(name if name else int(index) if index.isdigit() else index)
    return steps


def _base(address: str) -> str:
    """``Kind/name`` of a plan or drift address (``Kind/name (lease x)`` names a part of one)."""
    return address.split(" (", 1)[0]


def resource_change(change: model.ResourceChange) -> dict[str, Any]:
    """One entry of ``resource_changes``."""
    sensitive = frozenset(change.sensitive)
    before = values.masked(change.before, sensitive)
    after = values.masked(change.after, sensitive)
    address = str(change.resource_address) if change.deposed else change.address
    if change.action.timed and not change.deposed and address == str(change.resource_address):
        address = f"{address} ({change.action.value})"  # Terraform never repeats an address: the no-op is there too
    entry: dict[str, Any] = {
        "address": address,
        "mode": terraform_mode(change.mode), "type": change.kind, "name": change.name,
        "provider_name": PROVIDER_NAME,
    }
    if change.deposed:
        entry["deposed"] = change.deposed
    body: dict[str, Any] = {
        "actions": terraform_actions(change.action),
        "before": before, "after": known_only(after),
        "after_unknown": unknown_as_bool(after) if after is not None else {},
        "before_sensitive": sensitive_as_bool(before, sensitive),
        "after_sensitive": sensitive_as_bool(after, sensitive),
    }
    if change.replace_paths:
        body["replace_paths"] = [path_steps(p) for p in change.replace_paths]
    entry["change"] = body
    if change.action.replaces:
        entry["action_reason"] = "replace_because_cannot_update"
    extension: dict[str, Any] = {"action": change.action.value, "notes": list(change.notes),
                                 "requires_allow_destroy": change.requires_allow_destroy}
    if change.subject:
        extension["subject"] = change.subject
    entry["reconciler"] = extension
    return entry


def drifted_attributes(item: model.DriftItem) -> list[dict[str, Any]]:
    """Every drifted attribute of an item with its own severity; a sensitive one without values."""
    rows = []
    for change, severity in zip(item.changes, item.attribute_severities, strict=True):
        row: dict[str, Any] = {"path": change.path, "op": change.operation.value, "severity": severity,
                               "sensitive": change.sensitive}
        if not change.sensitive:
            row["before"] = change.before
            row["after"] = change.after
        rows.append(row)
    return rows


def resource_drift(item: model.DriftItem, mode: state_model.Mode = state_model.Mode.MANAGED) -> dict[str, Any]:
    """One entry of ``resource_drift``: recorded (``before``) against live
    (``after``, null when the object is gone). An item that names no
    attribute (a secret whose key is disabled) is an ``update`` all the same:
    what changed is in ``reconciler.note``."""
    address = state_model.Address(_base(item.address))
    before = {c.path: values.masked_value(c.before) if c.sensitive else c.before for c in item.changes}
    after = {c.path: values.masked_value(c.after) if c.sensitive else c.after for c in item.changes}
    marked = {c.path: True for c in item.changes if c.sensitive}
    return {
        "address": item.address, "mode": terraform_mode(mode), "type": address.kind, "name": address.name,
        "provider_name": PROVIDER_NAME,
        "change": {"actions": ["delete"] if item.gone else ["update"],
                   "before": before, "after": None if item.gone else after, "after_unknown": {},
                   "before_sensitive": marked, "after_sensitive": False if item.gone else dict(marked)},
        "reconciler": {"severity": item.severity, "gone": item.gone, "note": item.note,
                       "attributes": drifted_attributes(item)},
    }


def plan_document(plan: model.Plan) -> dict[str, Any]:
    """The Terraform-shaped keys of a JSON plan."""
    modes = {str(c.resource_address): c.mode for c in plan.changes}
    return {
        "format_version": FORMAT_VERSION,
        "timestamp": plan.created_at,
        "applyable": plan.has_changes,
        "complete": not plan.targets,
        "errored": False,
        "resource_changes": [resource_change(c) for c in plan.changes],
        "resource_drift": [resource_drift(d, modes.get(_base(d.address), state_model.Mode.MANAGED))
                           for d in plan.drift],
    }

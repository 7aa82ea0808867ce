"""References known after apply: a desired attribute that is another
resource's attribute (``{"$ref": "KmsProvider/app#arn"}``). The planner
resolves one from state when its target keeps its id, and otherwise shows it
as ``{"$unknown": ...}``, "(known after apply)"; the executor resolves every
reference from the state as it stands, just before the kind's create or
update (targets are applied first: a reference is a dependency). Pure, and
JSON-shaped so plan files carry references as they are."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from reconciler import errors
from reconciler.plan import model
from reconciler.state import model as state_model

REF = "$ref"
UNKNOWN = "$unknown"
KNOWN_AFTER_APPLY = "(known after apply)"


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    address: str  # Kind/name
    attribute: str  # an id (``arn``, ``keyId``) or an attribute of the target

    def __str__(self) -> str:
        return f"{self.address}#{self.attribute}"

    def to_json(self) -> dict[str, str]:
        return {REF: str(self)}

    def unknown(self) -> dict[str, str]:
        """What the plan holds for the value until apply knows it."""
        return {UNKNOWN: str(self)}

    @classmethod
    def parse(cls, value: Any) -> Ref | None:
        if not isinstance(value, Mapping) or set(value) != {REF} or not isinstance(value[REF], str):
            return None
        address, hash_, attribute = value[REF].partition("#")
        if not hash_ or "/" not in address or not attribute:
            raise errors.PlanError(f"malformed reference {value[REF]!r}: expected KIND/NAME#ATTRIBUTE")
        return cls(address, attribute)


def is_unknown(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {UNKNOWN}


def substitute(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """``value`` with every reference replaced by ``lookup(ref)``."""
    ref = Ref.parse(value)
    if ref is not None:
        return lookup(ref)
    if isinstance(value, Mapping):
        return {k: substitute(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, lookup) for v in value]
    return value


def targets(value: Any) -> set[str]:
    """The addresses ``value`` refers to (what ``substitute`` would look up,
    found without building the substituted copy)."""
    found: set[str] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if type(item) is str or type(item) is int:  # most of what is walked: nothing inside
            continue
        if isinstance(item, Mapping):
            ref = Ref.parse(item)
            if ref is not None:
                found.add(ref.address)
            else:
                todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def value_of(ref: Ref, ids: Mapping[str, Any], attributes: Mapping[str, Any] | None) -> Any:
    """The referenced value from a target's ids, else its attributes; KeyError when it has none."""
    if ref.attribute in ids:
        return ids[ref.attribute]
    if attributes is not None and ref.attribute in attributes:
        return attributes[ref.attribute]
    raise KeyError(str(ref))


def resolve(attributes: Mapping[str, Any], state: state_model.State) -> dict[str, Any]:
    """Every reference in ``attributes`` from ``state`` (at apply: targets are already applied)."""

    def lookup(ref: Ref) -> Any:
        entry = state.resources.get(ref.address)
        if entry is None:
            raise errors.PlanError(f"{ref} is not known: {ref.address} is not in state (apply it first)")
        try:
            return value_of(ref, entry.ids, entry.attributes)
        except KeyError:
            raise errors.PlanError(f"{ref} is not known: {ref.address} has no {ref.attribute}") from None

    return dict(substitute(attributes, lookup))


def resolve_desired(desired: model.Desired, state: state_model.State) -> model.Desired:
    """``desired`` with its references resolved from ``state`` (itself when it has none)."""
    if not targets(dict(desired.attributes)):
        return desired
    return dataclasses.replace(desired, attributes=resolve(desired.attributes, state))

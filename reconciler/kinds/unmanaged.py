"""What the kinds' ``unmanaged`` hooks (``drift --unmanaged``) share: what
state records (so an object it names is never reported), the connections a
kind's resources use (regions and auth, desired and recorded, and the
stack's default), and how an item is worded."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler.kinds import base
from reconciler.plan import model as plan_model
from reconciler.plan import unmanaged as model
from reconciler.state import model as state_model

STACK_TAG, ADDRESS_TAG = "reconciler:stack", "reconciler:address"  # as kinds/kms.py (ownership)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def recorded(state: state_model.State) -> frozenset[str]:
    """Every id state records anywhere (resources, deposed objects, leases,
    open journal entries): an object named by one of them is managed."""
    entries = [*state.resources.values(), *(d.resource for ds in state.deposed.values() for d in ds)]
    names = {name for e in entries for name in _strings(e.ids)}
    names |= set(_strings(dict(state.leases)))
    names |= {name for j in state.journal for name in _strings(j.data)}
    return frozenset(names)


def entries_of(kind: str, desired: Mapping[str, plan_model.Desired],
               prior: state_model.State) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(attributes, connection) of every resource of ``kind``, declared or recorded."""
    found = [(d.attributes, d.connection) for d in desired.values() if d.kind == kind]
    found += [(e.attributes, e.connection) for e in prior.resources.values() if e.kind == kind]
    return found


def connections(aws: base.AwsContext, pairs: Iterable[tuple[Mapping[str, Any], str]], *,
                region: str | None = None) -> list[dict[str, Any]]:
    """One connection per (auth, region) of ``pairs`` (connection, region) and
    the stack's default connection, in a stable order; ``region``: every one
    in that region instead (IAM is global)."""
    seen: dict[str, dict[str, Any]] = {}
    default = dict(aws.default_connection)
    todo = [*pairs, *([(default, str(default["region"]))] if default.get("region") else [])]
    for connection, where in todo:
        chosen = {"region": region or where, "auth": connection.get("auth")}
        seen.setdefault(json.dumps(chosen, sort_keys=True, default=str), chosen)
    return [seen[k] for k in sorted(seen)]


def tagged_item(kind: str, type_: str, arn: str, region: str, tags: Mapping[str, str],
                prior: state_model.State, stack: str, what: str) -> model.Unmanaged:
    """An object carrying this stack's tag that state does not record, with
    what to do about it by what its reconciler:address tag names."""
    address = str(tags.get(ADDRESS_TAG, ""))
    if address and address in prior.resources:
        hint = (f"state records another {what} for {address}: this one is a leftover (a state lost or "
                "restored from an older copy); delete it once nothing uses it")
    elif address:
        hint = (f"made for {address}, which state does not record: declare it and run plan (it is read in "
                f"by its tags), or delete the {what}")
    else:
        hint = f"declare it and `reconciler import` it, or delete the {what}"
    reason = f"tagged {STACK_TAG}={stack}{f', {ADDRESS_TAG}={address}' if address else ''}; not in state"
    return model.Unmanaged(kind, type_, arn, region, model.TAGGED, reason, hint, address)

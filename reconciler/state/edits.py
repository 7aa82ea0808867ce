"""State surgery for `state push`, `state rm` and `state mv`: each a function
from state to state (or a refusal), applied by the CLI under the lock. Pure:
nothing here reads a file or calls AWS."""

from __future__ import annotations

import dataclasses
import json
from reconciler import errors
from reconciler.state import encryption, model


def parse_pushed(raw: bytes, origin: str) -> model.State:
    """A state file given to `state push` (what `state pull` printed)."""
    if encryption.is_sealed(raw):
        raise errors.StateError(f"{origin}: this is an encrypted state object; state push takes the "
                                "decrypted JSON that `reconciler state pull` prints")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.StateError(f"{origin}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise errors.StateError(f"{origin}: not a text file (state is UTF-8 JSON)") from None
    pushed = model.State.from_json(data, origin=origin)
    if not pushed.lineage:
        raise errors.StateError(f"{origin}: the state has no lineage (it was never written by reconciler); "
                                "nothing to push")
    return pushed


def check_push(pushed: model.State, current: model.State, *, origin: str, where: str, force: bool) -> None:
    """Refuse a push that would lose work: another lineage, or a serial not
    newer than the recorded one (unless ``force``)."""
    if force or current.lineage is None:
        return
    if pushed.lineage != current.lineage:
        raise errors.StateError(
            f"{origin}: lineage {pushed.lineage} is not the lineage of {where} ({current.lineage}): it is "
            "another stack's state, or one started afresh; nothing was written (--force replaces it anyway)")
    if pushed.serial <= current.serial:
        raise errors.StateError(
            f"{origin}: serial {pushed.serial} is not newer than the serial of {where} ({current.serial}): "
            "pushing it would undo later writes; nothing was written (pull the state again and edit that, "
            "or --force)")


def check_address(address: str) -> model.Address:
    kind, _, name = address.partition("/")
    if not kind or not name or "/" in name:
        raise errors.StateError(f"{address}: expected an address KIND/NAME (as `reconciler state list` shows)")
    return model.Address(address)


def _in_state(state: model.State, address: str) -> bool:
    return address in state.resources or address in state.deposed


def forget(state: model.State, address: str, *, force: bool) -> tuple[model.State, str]:
    """``address`` dropped from state (its entry and its deposed objects),
    nothing deleted in AWS. Refused while a journal entry of it is in flight
    (an interrupted operation the next apply would resume) unless ``force``,
    which drops those entries too. Returns the state and what was forgotten."""
    check_address(address)
    if not _in_state(state, address):
        raise errors.StateError(f"{address}: not in state{_known(state)}")
    open_entries = [e for e in state.journal if e.address == address]
    if open_entries and not force:
        entry = open_entries[-1]
        raise errors.StateError(
            f"{address}: an operation is in flight ({entry.operation.value} {entry.operation_id}, step "
            f"{entry.step or '?'}, started {entry.started_at or '?'}); run apply to finish it first, or "
            "--force to forget it too (whatever it created in AWS is then left unmanaged)")
    deposed = state.deposed.get(address, ())
    forgotten = state.without_resource(address).without_journal_of(address)
    table = {k: v for k, v in forgotten.deposed.items() if k != address}
    forgotten = dataclasses.replace(forgotten, deposed=table)
    parts = [address] if address in state.resources else []
    if deposed:
        parts.append(f"{len(deposed)} deposed object{'s' if len(deposed) != 1 else ''} of it")
    if open_entries:
        parts.append(f"{len(open_entries)} journal entr{'ies' if len(open_entries) != 1 else 'y'}")
    return forgotten, ", ".join(parts)


def rename(state: model.State, source: str, destination: str) -> model.State:
    """``source`` recorded as ``destination`` (same kind), with its deposed
    objects and the dependencies other entries record on it. Refused when the
    destination is in state, the kinds differ, or an operation of the source
    is in flight (its journal and the tags it wrote name the old address)."""
    src, dst = check_address(source), check_address(destination)
    if not _in_state(state, src):
        raise errors.StateError(f"{src}: not in state{_known(state)}")
    if src.kind != dst.kind:
        raise errors.StateError(f"{dst}: cannot move a {src.kind} to a {dst.kind} (state mv renames an "
                                "address; the kind stays)")
    if _in_state(state, dst):
        raise errors.StateError(f"{dst}: already in state; `reconciler state rm {dst}` first if it is to go")
    entry = state.journal_of(src)
    if entry is not None:
        raise errors.StateError(
            f"{src}: an operation is in flight ({entry.operation.value} {entry.operation_id}, step "
            f"{entry.step or '?'}); run apply to finish it before moving the address")
    dependents = sorted(a for a, r in state.resources.items() if a != src and src in r.dependencies)
    dependents += sorted({f"lease {i}" for i, lease in state.leases.items()
                          if isinstance(lease, dict) and lease.get("template") == src})
    if dependents:  # they record the old name in what they hold (a vault's provider, a secret's vault...)
        shown = ", ".join(dependents[:5]) + (f" and {len(dependents) - 5} more" if len(dependents) > 5 else "")
        raise errors.StateError(
            f"{src}: {shown} {'refers' if len(dependents) == 1 else 'refer'} to it by name in what state records "
            f"of {'it' if len(dependents) == 1 else 'them'}, which state mv cannot rewrite; "
            f"move it only with nothing referring to it (or keep the name {src.name})")
    resources: dict[str, model.ResourceState] = {}
    for address, resource in state.resources.items():
        if address == src:
            address, resource = dst, dataclasses.replace(resource, name=dst.name)
        resources[address] = _renamed_dependency(resource, src, dst)
    deposed = {(dst if k == src else k): tuple(
        dataclasses.replace(d, resource=dataclasses.replace(d.resource, name=dst.name)) if k == src else d
        for d in v) for k, v in state.deposed.items()}
    return dataclasses.replace(state, resources=resources, deposed=deposed)


def _renamed_dependency(resource: model.ResourceState, src: str, dst: str) -> model.ResourceState:
    if src not in resource.dependencies:
        return resource
    return dataclasses.replace(resource, dependencies=tuple(dst if d == src else d for d in resource.dependencies))


def _known(state: model.State) -> str:
    addresses = sorted({*state.resources, *state.deposed})
    if not addresses:
        return " (the state records nothing)"
    shown = ", ".join(addresses[:10]) + (f" and {len(addresses) - 10} more" if len(addresses) > 10 else "")
    return f"; in state: {shown}"


def pulled(state: model.State) -> str:
    """The text `state pull` prints: the state file's own format."""
    return model.dumps(state)

"""The planner: desired + prior state + refreshed live attributes -> Plan.

Pure: it takes values and returns values (and PlanError with every refusal
collected). The engine does the refreshing and hands the results in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import errors, graph
from reconciler.plan import actions, diff, model
from reconciler.state import model as state_model
from reconciler.stores import base as store_base

Action = actions.Action


@dataclasses.dataclass(frozen=True, slots=True)
class Refreshed:
    """What a refresh found for one resource in state: its live attributes, or
    ``None`` when the object no longer exists; and what the kind reports about
    live objects it does not manage (``info`` drift, e.g. grants AWS services made)."""

    attributes: Mapping[str, Any] | None
    ids: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    info: tuple[model.DriftItem, ...] = ()
    learned: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # ids state lacks (older state)


def with_learned(prior: state_model.State, refreshed: Mapping[str, Refreshed]) -> state_model.State:
    """The prior state with the ids a refresh learned for entries recorded by
    an older reconciler, so the plan's rules count on what is really there."""
    for address, found in refreshed.items():
        entry = prior.resources.get(address)
        if found.learned and entry is not None:
            prior = prior.with_resource(dataclasses.replace(entry, ids={**entry.ids, **found.learned}))
    return prior


def _severity(changes: Sequence[diff.AttributeChange], gone: bool) -> str:
    if gone:
        return "critical"
    for change in changes:
        if change.path.endswith("keyState") and change.after != "Enabled":
            return "critical"
    return "warning"


def detect_drift(prior: state_model.State, refreshed: Mapping[str, Refreshed],
                 desired: Mapping[str, model.Desired] | None = None) -> list[model.DriftItem]:
    """Prior (last applied) vs live, for every resource that was refreshed. A
    secret that can no longer be read is one critical item (what to do in its
    note), not also a value change."""
    items = _unreadable_secrets(prior, refreshed)
    unreadable = {i.address for i in items}
    for address, entry in sorted(prior.resources.items()):
        if address not in refreshed or address in unreadable:
            continue
        live = refreshed[address].attributes
        if live is None:
            if entry.ids.get("pending") and not entry.ids.get("storedDigest"):
                continue  # a create that was interrupted before it wrote anything: not drift
            items.append(model.DriftItem(address, "critical", (), gone=True,
                                         note="no longer exists in AWS"))
            continue
        items.extend(refreshed[address].info)
        sensitive = desired[address].sensitive if desired and address in desired else frozenset()
        changes = diff.diff(entry.attributes, live, keys=set(entry.attributes) & set(live),
                            sensitive=sensitive)
        if changes:
            note = "the stored entry was changed outside reconciler" if entry.kind == "Secret" else ""
            items.append(model.DriftItem(address, _severity(changes, False), tuple(changes), note=note))
    return sorted(items, key=lambda i: i.address)


def _same_key(a: str, b: str) -> bool:
    """Same KMS key, a multi-Region replica counting as its primary."""
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def _resupply_hint(entry: state_model.ResourceState) -> str:
    """How a lost secret gets a value again, by the source its token names."""
    token = str(entry.attributes.get("value", ""))
    if token.startswith("env:"):
        return ("`reconciler apply` writes it again from its fromEnv variable once the vault has a "
                "working key")
    if token.startswith("envelope:"):
        return ("encrypt the value again (`reconciler secret encrypt`) and replace its `encrypted:` "
                "envelope, then apply")
    if token.startswith("generation:"):
        return "`reconciler apply --regenerate-lost` generates a new value (whoever used the old one needs the new)"
    return "re-supply its value"


def _lost_note(arn: str, provider: str, entry: state_model.ResourceState) -> str:
    return (f"its envelope no longer decrypts: key {arn}{f' ({provider})' if provider else ''} no longer "
            f"exists, so every stored version is lost; re-supply the value: {_resupply_hint(entry)}")


def _unreadable_secrets(prior: state_model.State,
                        refreshed: Mapping[str, Refreshed]) -> list[model.DriftItem]:
    """Secrets whose envelope's key cannot decrypt any more: critical. A key
    that is gone (the secret's refresh says so for keys no KmsProvider holds)
    loses the value for good: the hint says how to re-supply it."""
    items = []
    for entry in prior.resources.values():
        if entry.kind != "Secret":
            continue
        found = refreshed.get(entry.address)
        lost = (found.ids or {}).get("lostKey") if found is not None else None
        if lost:
            items.append(model.DriftItem(entry.address, "critical", (), note=_lost_note(str(lost), "", entry)))
            continue
        vault = prior.resources.get(f"Vault/{entry.attributes.get('vault')}")
        if vault is None:
            continue
        provider = f"KmsProvider/{vault.attributes.get('provider')}"
        live = refreshed.get(provider)
        state = (live.attributes or {}).get("keyState") if live else None
        if live is None or state == "Enabled":
            continue
        arn = prior.resources[provider].ids.get("arn", provider) if provider in prior.resources else provider
        own = entry.ids.get("keyArn")
        if own and not _same_key(str(own), str(arn)):
            continue  # the envelope is under another key than the vault's
        if live.attributes is None:
            items.append(model.DriftItem(entry.address, "critical", (), note=_lost_note(str(arn), provider, entry)))
            continue
        how = ("cancel the deletion (`reconciler apply` does, or `aws kms cancel-key-deletion`) and "
               "enable it" if state == "PendingDeletion" else
               "re-enable it (`reconciler apply` does, or `aws kms enable-key`)")
        items.append(model.DriftItem(entry.address, "critical", (), note=(
            f"its envelope no longer decrypts: key {arn} ({provider}) is {state}; {how}")))
    return items


def _order(desired: Mapping[str, model.Desired], prior: state_model.State,
           addresses: set[str]) -> tuple[list[str], list[str]]:
    """Creates/updates dependencies-first, deletes dependents-first."""
    forward = graph.Graph()
    for address, want in desired.items():
        forward.add_node(address)
        for dep in want.dependencies:
            if dep in desired:
                forward.add_edge(address, dep)
    backward = graph.Graph()
    for address, entry in prior.resources.items():
        backward.add_node(address)
        for dep in entry.dependencies:
            if dep in prior.resources:
                backward.add_edge(address, dep)
    ups = [a for a in forward.topological_order() if a in addresses]
    downs = [a for a in reversed(backward.topological_order())
             if a in addresses and a not in desired]
    return ups, downs


def make_plan(*, plan_id: str, created_at: str, stack: str, directory: str, manifests_hash: str,
              desired: Mapping[str, model.Desired], prior: state_model.State,
              refreshed: Mapping[str, Refreshed], adopted: Mapping[str, Refreshed],
              refresh: bool, targets: Sequence[str] = (),
              dependency_graph: graph.Graph | None = None) -> model.Plan:
    """Compute the plan. ``adopted`` holds what was read for adopted resources
    that are not yet in state. Raises PlanError listing every refusal."""
    problems: list[str] = []
    scope: set[str] = set(desired) | set(prior.resources) | set(prior.deposed)
    if targets:
        unknown = [t for t in targets if t not in scope]
        if unknown:
            raise errors.PlanError(f"--target {unknown[0]}: no such resource in the manifests or state")
        g = dependency_graph or graph.Graph()
        scope = g.ancestors(targets) | set(targets)

    drift = [d for d in detect_drift(prior, refreshed, desired) if d.address in scope] if refresh else []
    changes: dict[str, model.ResourceChange] = {}

    for address in sorted(scope):
        want = desired.get(address)
        entry = prior.resources.get(address)
        if want is None and entry is None:
            continue  # only deposed objects left under this address
        if entry is not None and address in refreshed:
            live = refreshed[address].attributes
        else:
            live = entry.attributes if entry is not None else None
        if want is None:
            assert entry is not None
            changes[address] = _plan_delete(entry, live, problems)
            continue
        if entry is None and want.mode in ("adopted", "read"):
            found = adopted.get(address)
            if found is None or found.attributes is None:
                problems.append(f"{address}: the object to adopt ({_lookup_text(want)}) was not found")
                continue
            live = found.attributes
        if want.mode in ("adopted", "read") and entry is not None and live is None:
            problems.append(f"{address}: the adopted object ({_lookup_text(want)}) no longer exists; "
                            "remove it from the manifests or point keyId at the right key")
            continue
        named = refreshed[address].ids if entry is not None and address in refreshed else {}
        other = entry is not None and any(entry.ids.get(k) != v for k, v in named.items())
        changes[address] = _plan_upsert(want, entry, live, problems, other_object=other)

    deposed = _plan_deposed(prior, scope, problems)
    _vault_rules(changes, desired, prior, problems)
    if problems:
        raise errors.PlanError("\n".join(problems))
    ups, downs = _order(desired, prior, set(changes))
    ordered = tuple(changes[a] for a in ups + downs) + deposed  # replacements exist by then
    return model.Plan(id=plan_id, created_at=created_at, stack=stack, directory=directory,
                      manifests_hash=manifests_hash, state_lineage=prior.lineage,
                      state_serial=prior.serial, refreshed=refresh, targets=tuple(targets),
                      changes=ordered, drift=tuple(drift), desired=dict(desired))


def _lookup_text(want: model.Desired) -> str:
    return ", ".join(f"{k} {v}" for k, v in want.lookup.items()) or want.address


def _plan_delete(entry: state_model.ResourceState, live: Mapping[str, Any] | None,
                 problems: list[str]) -> model.ResourceChange:
    if entry.mode in ("adopted", "read"):
        return model.ResourceChange(entry.address, entry.kind, entry.name, Action.DELETE, entry.mode,
                                    entry.attributes, None,
                                    notes=("adopted: removed from state only; the AWS object is kept",))
    if model.protected(live) or model.protected(entry.attributes):
        problems.append(
            f"{entry.address}: refusing to destroy a protected resource (protect: true). To destroy it, "
            "first apply it with protect: false, then remove it and apply with --allow-destroy")
    notes = []
    if entry.kind == "KmsProvider":
        days = entry.attributes.get("deletionWindowDays", 30)
        notes.append(f"the key is scheduled for deletion in {days} days, never deleted outright; "
                     "cancel with `aws kms cancel-key-deletion` within the window")
    return model.ResourceChange(entry.address, entry.kind, entry.name, Action.DELETE, entry.mode,
                                entry.attributes, None, notes=tuple(notes), requires_allow_destroy=True)


DEPOSED_NOTE = "deposed object left by an interrupted replace; its deletion is retried"


def deposed_address(address: str, deposed_id: str) -> str:
    return f"{address} (deposed {deposed_id})"


def _plan_deposed(prior: state_model.State, scope: set[str],
                  problems: list[str]) -> tuple[model.ResourceChange, ...]:
    """A delete for every deposed object in scope: a replace that did not finish.
    One that is still the current object (a run stopped before the successor
    existed) is not deleted: it is what the address still stands for."""
    changes = []
    for address, objects in sorted(prior.deposed.items()):
        if address not in scope:
            continue
        current = prior.resources.get(address)
        for deposed in objects:
            if current is not None and current.ids == deposed.resource.ids:
                continue
            change = _plan_delete(deposed.resource, None, problems)
            changes.append(dataclasses.replace(
                change, address=deposed_address(address, deposed.id), deposed=deposed.id,
                notes=(DEPOSED_NOTE, *change.notes)))
    return tuple(changes)


def _plan_upsert(want: model.Desired, entry: state_model.ResourceState | None,
                 live: Mapping[str, Any] | None, problems: list[str], *,
                 other_object: bool = False) -> model.ResourceChange:
    """``other_object``: the manifests now name another object than state records
    (a read-only key whose keyId was changed)."""
    base: dict[str, Any] = dict(address=want.address, kind=want.kind, name=want.name, mode=want.mode,
                sensitive=tuple(sorted(want.sensitive)))
    if want.mode == "read":
        if entry is None:
            return model.ResourceChange(**base, action=Action.READ, before=None, after=live)
        changes = diff.diff(entry.attributes, live, sensitive=want.sensitive)
        action = Action.READ if changes or other_object else Action.NOOP
        read_notes = ("read-only (adopted without manage: true): changes made outside reconciler are "
                      "recorded, never reverted",) if changes else ()
        if other_object:
            read_notes = (f"{_lookup_text(want)} now names another object than the one recorded; it is "
                          "read into state in its place",)
        return model.ResourceChange(**base, action=action, before=entry.attributes, after=live,
                                    changes=tuple(changes), notes=read_notes)
    if live is None:
        gone = ("the object recorded in state no longer exists; it will be created again",) \
            if entry is not None else ()
        return model.ResourceChange(**base, action=Action.CREATE, before=None,
                                    after=want.attributes, notes=gone)
    changes = diff.diff(live, want.attributes, keys=set(want.attributes), sensitive=want.sensitive)
    if not changes:
        action = Action.READ if entry is None else Action.NOOP
        return model.ResourceChange(**base, action=action, before=live, after=want.attributes)
    replace_paths = tuple(c.path for c in changes if c.top in want.replace_on)
    if replace_paths and want.mode == "managed":
        if model.protected(live) or model.protected(want.attributes):
            problems.append(
                f"{want.address}: changing {', '.join(replace_paths)} replaces the key, and the key "
                "is protected (protect: true); replacing it would schedule the old key's deletion. "
                "Declare a new KmsProvider instead, or set protect: false and apply with --allow-destroy")
        return model.ResourceChange(**base, action=Action.REPLACE, before=live, after=want.attributes,
                                    changes=tuple(changes), replace_paths=replace_paths,
                                    requires_allow_destroy=True,
                                    notes=("a new key is created first; the old one is then scheduled "
                                           "for deletion",))
    if replace_paths:
        problems.append(f"{want.address}: {', '.join(replace_paths)} of an adopted object cannot change")
    notes: list[str] = ["adopt into state, then update"] if entry is None else []
    destroys = [c.path for c in changes if c.top in want.destroy_on and c.after is None]
    if destroys:
        if model.protected(want.attributes):
            problems.append(f"{want.address}: removing {', '.join(destroys)} destroys it, and the resource "
                            "is protected (protect: true); set protect: false first")
        notes.append(f"removing {', '.join(destroys)} schedules its deletion")
    return model.ResourceChange(**base, action=Action.UPDATE, before=live, after=want.attributes,
                                changes=tuple(changes), notes=tuple(notes),
                                requires_allow_destroy=bool(destroys))


def _vault_rules(changes: dict[str, model.ResourceChange], desired: Mapping[str, model.Desired],
                 prior: state_model.State, problems: list[str]) -> None:
    """A key still wrapping a vault's data, or kept versions of any secret, is
    never destroyed or replaced; a vault moving to another key or store and a
    secret moving to another vault say how many versions move."""
    users: dict[str, list[str]] = {}
    for want in desired.values():
        if want.kind == "Vault":
            users.setdefault(f"KmsProvider/{want.attributes['provider']}", []).append(want.address)
    for address, change in changes.items():
        if change.kind == "KmsProvider" and change.action in (Action.DELETE, Action.REPLACE) \
                and change.mode == "managed":
            if address in users:
                problems.append(f"{address}: the key wraps the data of {', '.join(sorted(users[address]))}; "
                                "it cannot be destroyed or replaced while a vault uses it (move the vault to "
                                "another provider first: that re-wraps its secrets)")
            else:
                problems.extend(_versions_still_wrapped(address, change, changes, prior))
        if change.kind == "Vault":
            count = sum(1 for e in prior.resources.values()
                        if e.kind == "Secret" and e.attributes.get("vault") == change.name)
            paths = {c.top for c in change.changes}
            notes = list(change.notes)
            if change.action is Action.UPDATE and "provider" in paths:
                notes.append(f"re-wrap {count} secret{'s' if count != 1 else ''} under "
                             f"KmsProvider/{(change.after or {}).get('provider')}, every kept version "
                             "(numbers and dates kept); the old key is left untouched")
            if change.action is Action.UPDATE and "store" in paths:
                notes.append(f"copy {count} secret{'s' if count != 1 else ''} to the new store, every kept "
                             "version (numbers and dates kept); the old store is left untouched")
            if change.action is Action.DELETE and count:
                notes.append(f"the vault still holds {count} secret{'s' if count != 1 else ''}: "
                             "their stored versions are deleted")
            changes[address] = dataclasses.replace(change, notes=tuple(notes))
        if change.kind == "Secret" and change.action is Action.UPDATE and change.before and change.after \
                and change.before.get("vault") != change.after.get("vault"):
            entry = prior.resources.get(address)
            count = sum(_kept_by_key(entry, prior).values()) if entry is not None else 0
            note = (f"move {count} version{'s' if count != 1 else ''} from Vault/{change.before.get('vault')} "
                    f"to Vault/{change.after.get('vault')} (values kept, re-sealed for the new vault)")
            changes[address] = dataclasses.replace(change, notes=change.notes + (note,))


def _key_id(arn: str) -> str:
    """A KMS key's id: a multi-Region replica counts as its primary."""
    return arn.rsplit("/", 1)[-1]


def _kept_by_key(entry: state_model.ResourceState, prior: state_model.State) -> dict[str, int]:
    """How many kept versions of a recorded secret each key wraps (``versionKeys``,
    clipped to the versions its vault keeps)."""
    ids = entry.ids
    newest = int(ids.get("version") or 0)
    vault = prior.resources.get(f"Vault/{entry.attributes.get('vault')}")
    keep = int((vault.attributes if vault else {}).get("keepVersions", store_base.DEFAULT_KEEP))
    spans = ids.get("versionKeys") or ({ids["keyArn"]: [1, newest]} if ids.get("keyArn") and newest else {})
    oldest = newest - keep + 1
    counts: dict[str, int] = {}
    for arn, (first, last) in spans.items():
        count = min(last, newest) - max(first, oldest) + 1
        if count > 0:
            counts[_key_id(arn)] = counts.get(_key_id(arn), 0) + count
    return counts


def _moving_away(changes: Mapping[str, model.ResourceChange], prior: state_model.State) -> set[str]:
    """Secrets whose versions this plan re-wraps, moves or deletes before any key is deleted."""
    moving: set[str] = set()
    for change in changes.values():
        paths = {c.top for c in change.changes}
        if change.kind == "Vault" and change.action is Action.UPDATE and paths & {"provider", "store"}:
            moving.update(a for a, e in prior.resources.items()
                          if e.kind == "Secret" and e.attributes.get("vault") == change.name)
        if change.kind == "Secret" and (change.action is Action.DELETE or
                                        (change.action is Action.UPDATE and "vault" in paths)):
            moving.add(change.address)
    return moving


def _versions_still_wrapped(address: str, change: model.ResourceChange,
                            changes: Mapping[str, model.ResourceChange], prior: state_model.State) -> list[str]:
    """A key that kept secret versions still need (an interrupted re-wrap, or
    versions recorded before every version was re-wrapped) is not destroyed:
    deletes run after every re-wrap and move of the plan, replaces before them."""
    entry = prior.resources.get(address)
    if entry is None or not entry.ids.get("arn"):
        return []
    key = _key_id(entry.ids["arn"])
    moving = _moving_away(changes, prior) if change.action is Action.DELETE else set()
    needs: dict[str, int] = {}
    for secret in prior.resources.values():
        if secret.kind == "Secret" and secret.address not in moving:
            count = _kept_by_key(secret, prior).get(key, 0)
            if count:
                needs[secret.address] = count
    if not needs:
        return []
    total = sum(needs.values())
    which = ", ".join(f"{a} ({n})" for a, n in sorted(needs.items())[:5]) + (", ..." if len(needs) > 5 else "")
    what = "destroyed" if change.action is Action.DELETE else "replaced"
    return [f"{address}: the key still wraps {total} kept secret version{'s' if total != 1 else ''} "
            f"({which}); it cannot be {what} until they are re-wrapped under another key (apply the "
            "vault's provider change first: it re-wraps every kept version)"]

"""The planner: desired + prior state + refreshed live attributes + now -> Plan.

Pure: it takes values and returns values (and PlanError with every refusal
collected). The engine does the refreshing and hands the results in, with
each kind's rules (``rules.Rules``, by kind): the planner knows no kind by
name.
"""

from __future__ import annotations


import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import errors, graph
from reconciler.plan import actions, diff, model, refs
from reconciler.plan import rules as kind_rules
from reconciler.state import model as state_model

Action = actions.Action
Refreshed = model.Refreshed  # where kinds and the engine have always found it
Severity = kind_rules.Severity


def with_learned(prior: state_model.State, refreshed: Mapping[str, Refreshed]) -> state_model.State:
    """The prior state with the ids a refresh learned for entries recorded by
    an older reconciler, so the plan's rules count on what is really there."""
    for address, found in refreshed.items():
        entry = prior.resources.get(address)
        if found.learned and entry is not None:
            prior = prior.with_resource(dataclasses.replace(entry, ids={**entry.ids, **found.learned}))
    return prior


def _severity(rules: kind_rules.Rules, changes: Sequence[diff.AttributeChange]) -> Severity:
    """A drift item is as severe as its worst attribute, by its kind's rules."""
    return kind_rules.worst([rules.severity(c.path, c.before, c.after) for c in changes])


def detect_drift(prior: state_model.State, refreshed: Mapping[str, Refreshed],
                 desired: Mapping[str, model.Desired] | None = None, *,
                 rules: kind_rules.Registry) -> list[model.DriftItem]:
    """Prior (last applied) vs live, for every resource that was refreshed. An
    object its kind finds unusable is one critical item (what to do in its
    note), not also attribute changes."""
    items: list[model.DriftItem] = []
    for address, entry in sorted(prior.resources.items()):
        kind = kind_rules.rules_for(rules, entry.kind)
        unusable = kind.unreadable(entry, prior, refreshed)
        if unusable is not None:
            items.append(unusable)
            continue
        if address not in refreshed:
            continue
        live = refreshed[address].attributes
        if live is None:
            if kind.interrupted(entry):
                continue  # a create that was interrupted before it wrote anything: not drift
            items.append(model.DriftItem(address, Severity.CRITICAL.value, (), gone=True,
                                         note="no longer exists in AWS"))
            continue
        if refreshed[address].found_by:
            items.append(model.DriftItem(address, Severity.CRITICAL.value, (), gone=True,
                                         note=f"no longer exists in AWS; {refreshed[address].found_by}"))
            continue
        items.extend(refreshed[address].info)
        sensitive = desired[address].sensitive if desired and address in desired else frozenset()
        changes = diff.diff(entry.attributes, live, keys=set(entry.attributes) & set(live),
                            sensitive=sensitive)
        pending = [kind.pending(c.path, c.after) for c in changes]
        if changes and all(pending):  # reconciler's own work to come (a re-bind), never paging
            items.append(model.DriftItem(address, Severity.INFO.value, tuple(changes), note=pending[0]))
        elif changes:
            items.append(model.DriftItem(address, _severity(kind, changes).value, tuple(changes),
                                         note=kind.drift_note(entry),
                                         severities=tuple(kind.severity(c.path, c.before, c.after).value
                                                          for c in changes)))
    return sorted(items, key=lambda i: i.address)


def _forward(desired: Mapping[str, model.Desired], referenced: Mapping[str, set[str]]) -> graph.Graph:
    """Desired resources, each after what it depends on (references included)."""
    forward = graph.Graph()
    for address, want in desired.items():
        forward.add_node(address)
        for dep in (*want.dependencies, *sorted(referenced[address])):
            if dep in desired and dep != address:
                forward.add_edge(address, dep)
    return forward


def _order(forward: list[str], prior: state_model.State, desired: Mapping[str, model.Desired],
           addresses: set[str]) -> tuple[list[str], list[str]]:
    """Creates/updates dependencies-first, deletes dependents-first."""
    backward = graph.Graph()
    for address, entry in prior.resources.items():
        backward.add_node(address)
        for dep in entry.dependencies:
            if dep in prior.resources:
                backward.add_edge(address, dep)
    ups = [a for a in forward if a in addresses]
    downs = [a for a in reversed(backward.topological_order())
             if a in addresses and a not in desired]
    return ups, downs


def make_plan(*, plan_id: str, now: datetime.datetime, stack: str, directory: str, manifests_hash: str,
              desired: Mapping[str, model.Desired], prior: state_model.State,
              refreshed: Mapping[str, Refreshed], adopted: Mapping[str, Refreshed],
              refresh: bool, targets: Sequence[str] = (),
              dependency_graph: graph.Graph | None = None,
              rules: kind_rules.Registry, forced: Sequence[str] = ()) -> model.Plan:
    """Compute the plan at ``now`` (timed actions fall due by it). ``adopted``
    holds what was read for adopted resources that are not yet in state.
    ``rules``: each kind's (required: a kind's refusals are safety rules).
    ``forced``: addresses whose kind's ``forced`` action runs now, whatever
    the schedule (``reconciler rotate``). Raises PlanError listing every refusal."""
    problems: list[str] = []
    scope: set[str] = set(desired) | set(prior.resources) | set(prior.deposed)
    if targets:
        unknown = [t for t in targets if t not in scope]
        if unknown:
            raise errors.PlanError(f"--target {unknown[0]}: no such resource in the manifests or state")
        g = dependency_graph or graph.Graph()
        scope = g.ancestors(targets) | set(targets)

    drift = [d for d in detect_drift(prior, refreshed, desired, rules=rules) if d.address in scope] if refresh else []
    changes: dict[str, model.ResourceChange] = {}
    referenced = {address: refs.targets(want.attributes) for address, want in desired.items()}  # once per plan
    forward = _forward(desired, referenced).topological_order()  # each desired resource after what it depends on
    read = {**adopted, **refreshed}
    for address in [a for a in forward if a in scope] + sorted(scope - set(desired)):
        change = _plan_one(address, desired, prior, refreshed, adopted, changes, rules, problems, read, referenced)
        if change is not None:
            changes[address] = change

    timed = _plan_timed(changes, desired, prior, refreshed, rules, now, forced, problems)
    schedule = tuple(line for address in sorted(set(desired) & scope)
                     for line in kind_rules.rules_for(rules, desired[address].kind).schedule(
                         desired[address], prior.resources.get(address), now, refreshed.get(address)))
    deposed = _plan_deposed(prior, scope, rules, problems)
    context = kind_rules.PlanContext(desired, prior, dict(changes), now)
    changes = {a: _reviewed(c, rules, context, problems) for a, c in changes.items()}
    deposed = tuple(_reviewed(c, rules, context, problems) for c in deposed)
    timed = {a: tuple(_reviewed(c, rules, context, problems) for c in due) for a, due in timed.items()}
    if problems:
        raise errors.PlanError("\n".join(problems))
    ups, downs = _order(forward, prior, desired, set(changes))
    ordered = tuple(c for a in ups for c in (changes[a], *timed.get(a, ())))
    ordered += tuple(changes[a] for a in downs) + deposed  # replacements exist by then
    return model.Plan(id=plan_id, created_at=now.isoformat(timespec="seconds"), stack=stack,
                      directory=directory, manifests_hash=manifests_hash, state_lineage=prior.lineage,
                      state_serial=prior.serial, refreshed=refresh, targets=tuple(targets),
                      changes=ordered, drift=tuple(drift), desired=dict(desired), schedule=schedule)


def _plan_one(address: str, desired: Mapping[str, model.Desired], prior: state_model.State,
              refreshed: Mapping[str, Refreshed], adopted: Mapping[str, Refreshed],
              planned: Mapping[str, model.ResourceChange], rules: kind_rules.Registry,
              problems: list[str], read: Mapping[str, Refreshed],
              referenced: Mapping[str, set[str]]) -> model.ResourceChange | None:
    """The change for one address (``planned``: the changes of what it depends on;
    ``read``: adopted and refreshed together, merged once per plan, not per address)."""
    want = desired.get(address)
    entry = prior.resources.get(address)
    if want is None and entry is None:
        return None  # only deposed objects left under this address
    if entry is not None and address in refreshed:
        live = refreshed[address].attributes
    else:
        live = entry.attributes if entry is not None else None
    if want is None:
        assert entry is not None
        return _plan_delete(entry, live, kind_rules.rules_for(rules, entry.kind), problems)
    if entry is None and want.mode in ("adopted", "read"):
        found = adopted.get(address)
        if found is None or found.attributes is None:
            problems.append(f"{address}: the object to adopt ({_lookup_text(want)}) was not found")
            return None
        live = found.attributes
    if want.mode in ("adopted", "read") and entry is not None and live is None:
        noun = kind_rules.rules_for(rules, want.kind).noun
        problems.append(f"{address}: the adopted object ({_lookup_text(want)}) no longer exists; remove it "
                        f"from the manifests or point {' / '.join(want.lookup) or 'it'} at the right {noun}")
        return None
    owned = (adopted if entry is None else refreshed).get(address)
    if want.mode == "managed" and owned is not None and owned.found_by and owned.attributes is not None:
        return _plan_found(want, owned, _known(want, prior, read, planned, rules, problems, bool(referenced[address])),
                           kind_rules.rules_for(rules, want.kind), problems)
    named = refreshed[address].ids if entry is not None and address in refreshed else {}
    other = entry is not None and any(entry.ids.get(k) != v for k, v in named.items())
    known = _known(want, prior, read, planned, rules, problems, bool(referenced[address]))
    kind = kind_rules.rules_for(rules, want.kind)
    change = _plan_upsert(known, entry, live, kind, problems, other_object=other)
    if entry is not None and live is None and change.action is Action.CREATE and want.mode == "managed":
        note, consent = kind.recreate(entry, want)  # never a silent re-create: say what is lost
        change = dataclasses.replace(change, notes=(note,), requires_allow_destroy=consent)
    return change


def _plan_found(want: model.Desired, found: Refreshed, known: model.Desired, rules: kind_rules.Rules,
                problems: list[str]) -> model.ResourceChange | None:
    """A managed object state lacks (or records as gone) that its tags say this
    stack made for this address: read into state (``<=``), then updated where
    it differs; never created a second time."""
    change = _plan_upsert(known, None, found.attributes, rules, problems)
    if change.action.replaces:
        problems.append(f"{want.address}: {found.found_by}, but its {', '.join(change.replace_paths)} differs "
                        "from the manifest and cannot change in place; make the manifest match it, or "
                        "remove its tags to let reconciler create a new one")
        return None
    notes = tuple(n for n in change.notes if n != "adopt into state, then update")
    return dataclasses.replace(change, adopts=True, notes=(found.found_by, *notes))


def _known(want: model.Desired, prior: state_model.State, refreshed: Mapping[str, Refreshed],
           planned: Mapping[str, model.ResourceChange], rules: kind_rules.Registry,
           problems: list[str], refers: bool) -> model.Desired:
    """``want`` with each reference resolved where its target keeps its ids, and
    marked known after apply where this plan creates or replaces the target, or
    updates it in a way its kind says changes the referenced id (``refers``:
    whether it has references at all)."""

    def lookup(ref: refs.Ref) -> Any:
        change = planned.get(ref.address)
        if change is not None and (change.action is Action.CREATE or change.action.replaces):
            return ref.unknown()
        if change is not None and change.action is Action.UPDATE and \
                ref.attribute in kind_rules.rules_for(rules, change.kind).ids_changed_by(change):
            return ref.unknown()
        entry = prior.resources.get(ref.address)
        found = refreshed.get(ref.address)
        if entry is None and found is not None and found.attributes is not None:  # adopted by this plan
            try:
                return refs.value_of(ref, found.ids, found.attributes)
            except KeyError:
                problems.append(f"{want.address}: refers to {ref}, but {ref.address} has no {ref.attribute}")
                return ref.unknown()
        if entry is None:
            problems.append(f"{want.address}: refers to {ref}, but {ref.address} is neither in state nor "
                            "created by this plan")
            return ref.unknown()
        try:
            return refs.value_of(ref, {**entry.ids, **(found.ids if found else {})},
                                 found.attributes if found and found.attributes is not None else entry.attributes)
        except KeyError:
            problems.append(f"{want.address}: refers to {ref}, but {ref.address} has no {ref.attribute}")
            return ref.unknown()

    if not refers:
        return want
    return dataclasses.replace(want, attributes=refs.substitute(dict(want.attributes), lookup))


def _reviewed(change: model.ResourceChange, rules: kind_rules.Registry, context: kind_rules.PlanContext,
              problems: list[str]) -> model.ResourceChange:
    """The change with its kind's notes; its kind's refusals join ``problems``."""
    review = kind_rules.rules_for(rules, change.kind).review(change, context)
    problems.extend(review.problems)
    return dataclasses.replace(change, notes=change.notes + review.notes) if review.notes else change


def _plan_timed(changes: Mapping[str, model.ResourceChange], desired: Mapping[str, model.Desired],
                prior: state_model.State, refreshed: Mapping[str, Refreshed], rules: kind_rules.Registry,
                now: datetime.datetime, forced: Sequence[str] = (),
                problems: list[str] | None = None) -> dict[str, tuple[model.ResourceChange, ...]]:
    """Actions time asks for, on objects this plan keeps (unchanged or updated in
    place); one being created, replaced or read in starts its clock afresh.
    ``forced`` addresses get their kind's forced action too (once)."""
    timed: dict[str, tuple[model.ResourceChange, ...]] = {}
    for address in forced:
        want, entry, change = desired.get(address), prior.resources.get(address), changes.get(address)
        if want is not None and entry is None and change is not None and change.action is Action.CREATE:
            continue  # not yet in state: its create is the first rotation
        forced_action = kind_rules.rules_for(rules, want.kind).forced(want, entry) \
            if want is not None and entry is not None else None
        if forced_action is None and problems is not None:
            problems.append(f"{address}: nothing to rotate now (a {address.split('/', 1)[0]} has no "
                            "rotation, or it is not in state or in the manifests)")
    for address, change in changes.items():
        want, entry = desired.get(address), prior.resources.get(address)
        if want is None or entry is None or change.action not in (Action.NOOP, Action.UPDATE):
            continue
        kind = kind_rules.rules_for(rules, want.kind)
        due = list(kind.timed(want, entry, now, refreshed.get(address), prior))
        if address in forced:
            extra = kind.forced(want, entry)
            if extra is not None and not any(t.action is extra.action and t.subject == extra.subject for t in due):
                due.append(extra)
        timed[address] = tuple(model.ResourceChange(
            f"{address} ({t.action.value} {t.subject})" if t.subject else address, want.kind, want.name,
            t.action, want.mode, change.before if change.before is not None else entry.attributes,
            change.after, notes=(t.reason, *t.notes), sensitive=tuple(sorted(want.sensitive)), subject=t.subject,
            requires_allow_destroy=t.destroys)
            for t in due)
    return timed


def _lookup_text(want: model.Desired) -> str:
    return ", ".join(f"{k} {v}" for k, v in want.lookup.items()) or want.address


def _plan_delete(entry: state_model.ResourceState, live: Mapping[str, Any] | None,
                 rules: kind_rules.Rules, problems: list[str]) -> model.ResourceChange:
    if entry.mode in ("adopted", "read"):
        return model.ResourceChange(entry.address, entry.kind, entry.name, Action.DELETE, entry.mode,
                                    entry.attributes, None,
                                    notes=("adopted: removed from state only; the AWS object is kept",))
    if model.protected(live, offers=rules.offers_protect) or \
            model.protected(entry.attributes, offers=rules.offers_protect):
        problems.append(
            f"{entry.address}: refusing to destroy a protected resource (protect: true). To destroy it, "
            "first apply it with protect: false, then remove it and apply with --allow-destroy")
    return model.ResourceChange(entry.address, entry.kind, entry.name, Action.DELETE, entry.mode,
                                entry.attributes, None, requires_allow_destroy=True)


DEPOSED_NOTE = "deposed object left by an interrupted replace; its deletion is retried"


def deposed_address(address: str, deposed_id: str) -> str:
    return f"{address} (deposed {deposed_id})"


def _plan_deposed(prior: state_model.State, scope: set[str], rules: kind_rules.Registry,
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
            change = _plan_delete(deposed.resource, None, kind_rules.rules_for(rules, deposed.resource.kind),
                                  problems)
            changes.append(dataclasses.replace(
                change, address=deposed_address(address, deposed.id), deposed=deposed.id,
                notes=(DEPOSED_NOTE, *change.notes)))
    return tuple(changes)


def _plan_upsert(want: model.Desired, entry: state_model.ResourceState | None,
                 live: Mapping[str, Any] | None, rules: kind_rules.Rules, problems: list[str], *,
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
        if model.protected(live, offers=rules.offers_protect) or \
                model.protected(want.attributes, offers=rules.offers_protect):
            noun = rules.noun
            problems.append(
                f"{want.address}: changing {', '.join(replace_paths)} replaces the {noun}, and the {noun} "
                f"is protected (protect: true); {rules.protected_replace_hint}")
        return model.ResourceChange(**base, action=rules.replace_order, before=live, after=want.attributes,
                                    changes=tuple(changes), replace_paths=replace_paths,
                                    requires_allow_destroy=True)
    if replace_paths:
        problems.append(f"{want.address}: {', '.join(replace_paths)} of an adopted object cannot change")
    notes: list[str] = ["adopt into state, then update"] if entry is None else []
    destroys = [c.path for c in changes if c.top in want.destroy_on and c.operation is diff.DiffOperation.REMOVE]
    if destroys:
        if model.protected(want.attributes, offers=rules.offers_protect):
            problems.append(f"{want.address}: removing {', '.join(destroys)} destroys it, and the resource "
                            "is protected (protect: true); set protect: false first")
        notes.append(f"removing {', '.join(destroys)} schedules its deletion")
    return model.ResourceChange(**base, action=Action.UPDATE, before=live, after=want.attributes,
                                changes=tuple(changes), notes=tuple(notes),
                                requires_allow_destroy=bool(destroys))

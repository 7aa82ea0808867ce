"""Which of a plan's changes may run side by side (``apply --parallelism N``).

Pure: a function of the plan. The plan's order is one valid order (creates
and updates dependencies-first, then deletions dependents-first, then the
deposed objects of unfinished replaces); ``schedule`` says, for each
actionable change, the earlier changes it has to wait for, so an executor
may run everything else beside it:

- phases, as in the plan's order: every create, update, read, replace and
  timed action (the addresses the manifests declare) completes before the
  first deletion of an address they no longer declare starts (an alias or a
  secret moved off a removed object is moved before it goes), and those
  complete before the first deposed object is deleted (replacements exist
  by then);
- in the first phase, a change waits for the changes of what its resource
  depends on (``Desired.dependencies`` and references), looking through
  resources that do not change to what they depend on in turn;
- in the second, a deletion waits for the deletions of what depended on it
  in the prior state (dependents first), through resources that stay;
- changes of one address (a change and its timed actions, a deposed
  object's deletion) keep their order, and so do changes that claim the
  same name in the account (``Rules.claims``: an alias moved from one key to
  another).

Every wait points at an earlier change, so the plan's order is itself a
valid schedule (``--parallelism 1`` runs exactly that)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from reconciler.plan import model, refs
from reconciler.plan import rules as kind_rules
from reconciler.state import model as state_model

UPS, DOWNS, DEPOSED = 0, 1, 2  # the phases, in the order they run


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    changes: tuple[model.ResourceChange, ...]  # the plan's actionable changes, in the plan's order
    waits: tuple[frozenset[int], ...]  # per change: the indices of the earlier changes it waits for
    phases: tuple[int, ...]  # per change: UPS, DOWNS or DEPOSED

    def dependents(self) -> tuple[tuple[int, ...], ...]:
        """Per change: the changes waiting for it."""
        out: list[list[int]] = [[] for _ in self.changes]
        for index, waits in enumerate(self.waits):
            for earlier in waits:
                out[earlier].append(index)
        return tuple(tuple(d) for d in out)

    def waves(self) -> tuple[tuple[model.ResourceChange, ...], ...]:
        """The changes by the earliest round they could start in, were every
        change as slow as every other: each wave waits only for earlier ones."""
        level: list[int] = []
        floor, phase, top = 0, UPS, -1  # ``floor``: the first wave of the current phase
        for index, waits in enumerate(self.waits):
            if self.phases[index] != phase:
                phase, floor = self.phases[index], top + 1
            level.append(max([floor, *(level[w] + 1 for w in waits)]))
            top = max(top, level[-1])
        waves: list[list[model.ResourceChange]] = [[] for _ in range(top + 1)]
        for index, change in enumerate(self.changes):
            waves[level[index]].append(change)
        return tuple(tuple(w) for w in waves if w)


def phase_of(change: model.ResourceChange, desired: Mapping[str, model.Desired]) -> int:
    if change.deposed:
        return DEPOSED
    return UPS if change.resource_address in desired else DOWNS


def schedule(plan: model.Plan, prior: state_model.State, rules: kind_rules.Registry | None = None) -> Schedule:
    """The schedule of ``plan.actionable``; ``prior``: the state the plan was made
    against (its entries' dependencies order the deletions); ``rules``: each
    kind's (what names its changes claim)."""
    changes = plan.actionable
    claimed: dict[str, int] = {}  # name -> the latest change so far that claims it
    phases = tuple(phase_of(c, plan.desired) for c in changes)
    last: dict[tuple[int, str], int] = {}  # (phase, address) -> its latest change so far
    waits: list[frozenset[int]] = []
    up_deps = _closure(_up_edges(plan.desired), {c.resource_address for c, p in zip(changes, phases) if p == UPS})
    down_deps = _closure(_down_edges(prior), {c.resource_address for c, p in zip(changes, phases) if p == DOWNS})
    for index, change in enumerate(changes):
        address, phase = change.resource_address, phases[index]
        found: set[int] = set()
        before = last.get((phase, address))
        if before is not None:
            found.add(before)
        deps = up_deps if phase == UPS else down_deps if phase == DOWNS else {}
        found.update(last[(phase, d)] for d in deps.get(address, ()) if (phase, d) in last)
        for name in (kind_rules.rules_for(rules, change.kind).claims(change) if rules is not None else ()):
            if name in claimed:
                found.add(claimed[name])
            claimed[name] = index
        waits.append(frozenset(i for i in found if i < index))
        last[(phase, address)] = index
    return Schedule(changes, tuple(waits), phases)


def _up_edges(desired: Mapping[str, model.Desired]) -> dict[str, set[str]]:
    """Address -> what it depends on (dependencies and references), among the desired."""
    edges: dict[str, set[str]] = {}
    for address, want in desired.items():
        deps = {*want.dependencies, *refs.targets(dict(want.attributes))}
        edges[address] = {d for d in deps if d in desired and d != address}
    return edges


def _down_edges(prior: state_model.State) -> dict[str, set[str]]:
    """Address -> what depended on it in the prior state (deleted before it)."""
    edges: dict[str, set[str]] = {a: set() for a in prior.resources}
    for address, entry in prior.resources.items():
        for dep in entry.dependencies:
            if dep in edges and dep != address:
                edges[dep].add(address)
    return edges


def _closure(edges: Mapping[str, Iterable[str]], changing: set[str]) -> dict[str, set[str]]:
    """For each changing address, the changing addresses it reaches through
    ``edges``, looking through the ones that do not change (memoised; the
    graph is acyclic: the manifest loader refuses cycles)."""
    memo: dict[str, frozenset[str]] = {}

    def reach(address: str) -> frozenset[str]:
        """The changing addresses ``address``'s edges lead to, first ones only."""
        stack: list[tuple[str, list[str]]] = [(address, sorted(edges.get(address, ())))]
        found: dict[str, set[str]] = {address: set()}
        on_path = {address}
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                on_path.discard(node)
                memo[node] = frozenset(found.pop(node))
                if stack:
                    found[stack[-1][0]].update(memo[node])
                continue
            nxt = todo.pop()
            if nxt in changing:
                found[node].add(nxt)
            elif nxt in memo:
                found[node].update(memo[nxt])
            elif nxt not in on_path:  # a cycle cannot occur; never loop on one
                on_path.add(nxt)
                found[nxt] = set()
                stack.append((nxt, sorted(edges.get(nxt, ()))))
        return memo[address]

    return {address: set(reach(address)) for address in changing}

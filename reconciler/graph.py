"""A small generic DAG: nodes, edges "a depends on b", stable topological
order and cycle detection. Pure."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator


class Graph:
    def __init__(self) -> None:
        self._deps: dict[str, set[str]] = {}

    def add_node(self, node: str) -> None:
        self._deps.setdefault(node, set())

    def add_edge(self, node: str, depends_on: str) -> None:
        self.add_node(node)
        self.add_node(depends_on)
        self._deps[node].add(depends_on)

    @property
    def nodes(self) -> list[str]:
        return list(self._deps)

    def dependencies(self, node: str) -> set[str]:
        return set(self._deps.get(node, ()))

    def ancestors(self, nodes: Iterable[str]) -> set[str]:
        """The nodes given and everything they depend on, transitively."""
        seen: set[str] = set()
        stack = [n for n in nodes if n in self._deps]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self._deps[node])
        return seen

    def find_cycle(self) -> list[str] | None:
        """One cycle as a list of nodes, or None. Iterative depth-first search,
        linear in nodes and edges (each node's dependencies walked once)."""
        WHITE, GREY, BLACK = 0, 1, 2
        colour = {n: WHITE for n in self._deps}
        for start in sorted(self._deps):
            if colour[start] != WHITE:
                continue
            path: list[str] = [start]
            on_path: dict[str, int] = {start: 0}
            stack: list[Iterator[str]] = [iter(sorted(self._deps[start]))]
            colour[start] = GREY
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    colour[path[-1]] = BLACK
                    del on_path[path.pop()]
                    stack.pop()
                elif colour[nxt] == GREY:
                    return path[on_path[nxt]:]
                elif colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    on_path[nxt] = len(path)
                    path.append(nxt)
                    stack.append(iter(sorted(self._deps[nxt])))
        return None

    def topological_order(self) -> list[str]:
        """Dependencies first; ties broken by name so the order is stable."""
        cycle = self.find_cycle()
        if cycle:
            raise ValueError("dependency cycle: " + " -> ".join(cycle + [cycle[0]]))
        remaining = {n: len(d) for n, d in self._deps.items()}
        dependents: dict[str, set[str]] = {n: set() for n in self._deps}
        for node, deps in self._deps.items():
            for dep in deps:
                dependents[dep].add(node)
        ready = [n for n, count in remaining.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            node = heapq.heappop(ready)
            order.append(node)
            for dependent in dependents[node]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    heapq.heappush(ready, dependent)
        return order

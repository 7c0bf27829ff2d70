"""Execution graphs: PipelineLib's ``execution`` arcs as a DAG of stage names.

An arc ``[a, b, c]`` adds the edges ``a→b`` and ``b→c``; a one-element arc adds an isolated
node. Repeated edges merge. Node and edge order is the order of first appearance, so every
listing here is deterministic. The implicit ``setup``/``teardown`` stages are not nodes: setup
is an ancestor of every stage (see :class:`~chute.pipeline.expressions.Context`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from functools import cached_property


class CycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists it, first node repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("cycle detected in the execution graph: " + " -> ".join(cycle))


class Graph:
    """A directed graph of stage names."""

    def __init__(self, nodes: Iterable[str] = (), edges: Iterable[tuple[str, str]] = ()) -> None:
        order: dict[str, None] = dict.fromkeys(nodes)
        edge_order: dict[tuple[str, str], None] = {}
        for a, b in edges:
            order.setdefault(a)
            order.setdefault(b)
            edge_order.setdefault((a, b))
        self.nodes: tuple[str, ...] = tuple(order)
        self.edges: tuple[tuple[str, str], ...] = tuple(edge_order)
        self._succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        self._pred: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            self._succ[a].append(b)
            self._pred[b].append(a)
        self._ancestors: dict[str, frozenset[str]] = {}

    @classmethod
    def from_arcs(cls, arcs: Iterable[Sequence[str]]) -> Graph:
        """Build the graph of PipelineLib ``execution`` arcs."""
        nodes: list[str] = []
        edges: list[tuple[str, str]] = []
        for arc in arcs:
            nodes.extend(arc)
            edges.extend(itertools.pairwise(arc))
        return cls(nodes, edges)

    # -- queries

    def __contains__(self, node: object) -> bool:
        return node in self._succ

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({self.to_dot()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return set(self.nodes) == set(other.nodes) and set(self.edges) == set(other.edges)

    __hash__ = None  # type: ignore[assignment]

    def predecessors(self, node: str) -> list[str]:
        """Direct predecessors of ``node``, in edge order."""
        return list(self._pred[node])

    def successors(self, node: str) -> list[str]:
        """Direct successors of ``node``, in edge order."""
        return list(self._succ[node])

    def ancestors(self, node: str) -> frozenset[str]:
        """Every node with a path to ``node`` (not ``node`` itself unless it is on a cycle)."""
        cached = self._ancestors.get(node)
        if cached is None:
            seen: set[str] = set()
            todo = list(self._pred[node])
            while todo:
                n = todo.pop()
                if n not in seen:
                    seen.add(n)
                    todo.extend(self._pred[n])
            cached = self._ancestors[node] = frozenset(seen)
        return cached

    def descendants(self, node: str) -> frozenset[str]:
        """Every node reachable from ``node``."""
        seen: set[str] = set()
        todo = list(self._succ[node])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self._succ[n])
        return frozenset(seen)

    def roots(self) -> list[str]:
        """Nodes without predecessors (isolated nodes included), in node order."""
        return [n for n in self.nodes if not self._pred[n]]

    def leaves(self) -> list[str]:
        """Nodes without successors (isolated nodes included), in node order."""
        return [n for n in self.nodes if not self._succ[n]]

    def find_cycle(self) -> list[str] | None:
        """One cycle as ``[a, b, …, a]``, or None if the graph is acyclic."""
        return self._cycle

    @cached_property
    def _cycle(self) -> list[str] | None:
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self.nodes, white)
        for start in self.nodes:
            if colour[start] != white:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = [start]
            colour[start] = grey
            while stack:
                node, i = stack[-1]
                succ = self._succ[node]
                if i < len(succ):
                    stack[-1] = (node, i + 1)
                    nxt = succ[i]
                    if colour[nxt] == grey:
                        return [*path[path.index(nxt):], nxt]
                    if colour[nxt] == white:
                        colour[nxt] = grey
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    colour[node] = black
                    stack.pop()
                    path.pop()
        return None

    def topological_order(self) -> list[str]:
        """Nodes so that every edge points forward; ties keep node order.

        Raises :class:`CycleError` naming a cycle.
        """
        return [n for frame in self.frames() for n in frame]

    def frames(self) -> list[list[str]]:
        """PipelineLib's schedule: level by level, each frame the nodes whose predecessors all
        ran in earlier frames. Raises :class:`CycleError`."""
        cycle = self.find_cycle()
        if cycle is not None:
            raise CycleError(cycle)
        indegree = {n: len(self._pred[n]) for n in self.nodes}
        frame = [n for n in self.nodes if indegree[n] == 0]
        out: list[list[str]] = []
        while frame:
            out.append(frame)
            ready: dict[str, None] = {}
            for n in frame:
                for s in self._succ[n]:
                    indegree[s] -= 1
                    if indegree[s] == 0:
                        ready[s] = None
            order = {n: i for i, n in enumerate(self.nodes)}
            frame = sorted(ready, key=order.__getitem__)
        return out

    def subgraph(self, nodes: Iterable[str]) -> Graph:
        """The graph restricted to ``nodes`` (in this graph's node order)."""
        keep = set(nodes)
        return Graph([n for n in self.nodes if n in keep],
                     [(a, b) for a, b in self.edges if a in keep and b in keep])

    def to_dot(self) -> str:
        """``digraph { a -> b; c }``, the form PipelineLib prints in its errors."""
        parts = [f"{a} -> {b}" for a, b in self.edges]
        linked = {n for e in self.edges for n in e}
        parts.extend(n for n in self.nodes if n not in linked)
        return "digraph { " + "; ".join(parts) + (" }" if parts else "}")

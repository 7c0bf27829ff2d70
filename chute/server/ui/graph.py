"""Layered layout of a run's stage graph, for drawing it as SVG on the server.

The agent posts ``{"stages": [...], "edges": [[a, b], ...]}`` (``Run.graph``).
Stages go into columns by longest path from a source (a stage sits right of
everything it waits for); within a column they are ordered by the mean row of
their predecessors, which keeps most edges short and uncrossed for the small
graphs pipelines have. The input comes from an agent, so it is not trusted to
be a DAG: stages on a cycle are placed after the rest instead of looping.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

NODE_W = 184
NODE_H = 54
GAP_X = 56
GAP_Y = 16
PAD = 10
LABEL_MAX = 22  # characters shown in a box; the full name is in the tooltip and the table


@dataclass
class Node:
    name: str
    column: int
    row: int = 0
    x: int = 0
    y: int = 0
    status: str = "pending"
    duration: str = ""
    anchor: str = ""  # id of the stage's section on the page

    @property
    def label(self) -> str:
        return self.name if len(self.name) <= LABEL_MAX else self.name[: LABEL_MAX - 1] + "…"

    @property
    def cx_right(self) -> int:
        return self.x + NODE_W

    @property
    def cy(self) -> int:
        return self.y + NODE_H // 2


@dataclass
class Edge:
    src: str
    dst: str
    path: str
    status: str  # the status of the source stage: an edge is "done" once its source passed


@dataclass
class Layout:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    node_w: int = NODE_W
    node_h: int = NODE_H


def read_graph(graph: dict[str, Any], extra: list[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Stage names (in the agent's order, then ``extra``) and edges between known stages."""
    names: list[str] = []
    seen: set[str] = set()

    def add(n: Any) -> None:
        n = str(n)
        if n not in seen:
            seen.add(n)
            names.append(n)

    for n in graph.get("stages") or []:
        add(n)
    edges: list[tuple[str, str]] = []
    for e in graph.get("edges") or []:
        if isinstance(e, list | tuple) and len(e) == 2 and e[0] != e[1]:
            a, b = str(e[0]), str(e[1])
            add(a)
            add(b)
            if (a, b) not in edges:
                edges.append((a, b))
    for n in extra or []:
        add(n)
    return names, edges


def layout(names: list[str], edges: list[tuple[str, str]]) -> Layout:
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)

    # Kahn's algorithm in the agent's order; a stage's column is its longest path from a source.
    column: dict[str, int] = {}
    indegree = {n: len(preds[n]) for n in names}
    ready = [n for n in names if indegree[n] == 0]
    while ready:
        n = ready.pop(0)
        column[n] = max((column[p] + 1 for p in preds[n] if p in column), default=0)
        for s in succs[n]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    last = max(column.values(), default=-1)
    for n in names:  # on a cycle: never became ready
        if n not in column:
            last += 1
            column[n] = last

    columns: dict[int, list[str]] = defaultdict(list)
    for n in names:
        columns[column[n]].append(n)
    row: dict[str, float] = {}
    for c in sorted(columns):
        members = columns[c]
        for i, n in enumerate(members):
            row[n] = i
        if c > 0:  # order by the mean row of the predecessors already placed
            keys: dict[str, tuple[float, int]] = {}
            for i, n in enumerate(members):
                placed = [row[p] for p in preds[n] if column[p] < c]
                keys[n] = (sum(placed) / len(placed) if placed else float(i), i)
            members.sort(key=keys.__getitem__)
            for i, n in enumerate(members):
                row[n] = i

    out = Layout()
    by_name: dict[str, Node] = {}
    for c in sorted(columns):
        for i, n in enumerate(columns[c]):
            node = Node(n, c, i, PAD + c * (NODE_W + GAP_X), PAD + i * (NODE_H + GAP_Y))
            by_name[n] = node
            out.nodes.append(node)
    for a, b in edges:
        na, nb = by_name[a], by_name[b]
        x1, y1, x2, y2 = na.cx_right, na.cy, nb.x, nb.cy
        if x2 <= x1:  # a back edge (cycle): route it below the boxes
            low = max(na.y, nb.y) + NODE_H + GAP_Y // 2
            path = (f"M{x1} {y1} C{x1 + 30} {y1} {x1 + 30} {low} {x1} {low} "
                    f"L{x2} {low} C{x2 - 30} {low} {x2 - 30} {y2} {x2} {y2}")
        else:
            dx = (x2 - x1) // 2
            path = f"M{x1} {y1} C{x1 + dx} {y1} {x2 - dx} {y2} {x2} {y2}"
        out.edges.append(Edge(a, b, path, "pending"))
    ncols = len(columns)
    nrows = max((len(v) for v in columns.values()), default=0)
    out.width = max(0, ncols * (NODE_W + GAP_X) - GAP_X) + 2 * PAD
    out.height = max(0, nrows * (NODE_H + GAP_Y) - GAP_Y) + 2 * PAD + (GAP_Y if any(
        by_name[b].x <= by_name[a].x for a, b in edges) else 0)
    return out

"""A pipeline's nodes laid out as a picture: columns by depth from the entry node, one row per
node in a column. Pure: it reads the definition as stored (``next`` a node id, a list of ids,
or absent) and returns coordinates for the SVG template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_WIDTH = 150
NODE_HEIGHT = 46
COLUMN_GAP = 60
ROW_GAP = 22
MARGIN = 12


@dataclass(frozen=True)
class Box:
    id: str
    type: str
    column: int
    row: int

    @property
    def x(self) -> int:
        return MARGIN + self.column * (NODE_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> int:
        return MARGIN + self.row * (NODE_HEIGHT + ROW_GAP)

    @property
    def cx(self) -> int:
        return self.x + NODE_WIDTH // 2

    @property
    def cy(self) -> int:
        return self.y + NODE_HEIGHT // 2


@dataclass(frozen=True)
class Edge:
    source: Box
    target: Box

    @property
    def path(self) -> str:
        """An SVG path from the right side of the source to the left side of the target."""
        x1, y1 = self.source.x + NODE_WIDTH, self.source.cy
        x2, y2 = self.target.x, self.target.cy
        if x2 <= x1:  # a link back to an earlier column: go round below
            low = max(self.source.y, self.target.y) + NODE_HEIGHT + ROW_GAP // 2
            return f"M{x1},{y1} C{x1 + 30},{low} {x2 - 30},{low} {x2},{y2}"
        bend = (x2 - x1) // 2
        return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"


@dataclass(frozen=True)
class Layout:
    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int


def successors(node: dict[str, Any]) -> list[str]:
    nxt = node.get("next")
    if isinstance(nxt, str):
        return [nxt]
    if isinstance(nxt, list):
        return [n for n in nxt if isinstance(n, str)]
    return []


def columns(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Each node's column: its longest distance from the entry node along ``next`` links.
    Nodes the entry does not reach (a failure handler, say) go in a column after the rest."""
    ids = [n["id"] for n in nodes if isinstance(n.get("id"), str)]
    links = {n["id"]: [s for s in successors(n) if s in ids] for n in nodes if n.get("id") in ids}
    depth: dict[str, int] = {}
    if ids:
        forward = _without_back_edges(ids[0], links)
        # Longest path over the (now acyclic) forward links, in topological order.
        order = _topological(ids[0], forward)
        depth[ids[0]] = 0
        for source in order:
            for target in forward[source]:
                depth[target] = max(depth.get(target, 0), depth[source] + 1)
    last = max(depth.values(), default=-1) + 1
    return {node_id: depth.get(node_id, last) for node_id in ids}


def _without_back_edges(entry: str, links: dict[str, list[str]]) -> dict[str, list[str]]:
    """The links reachable from ``entry`` less those that close a cycle (an invalid definition
    may have one; it is drawn, not trusted)."""
    forward: dict[str, list[str]] = {}
    on_path: set[str] = set()

    def visit(node: str) -> None:
        on_path.add(node)
        forward[node] = []
        for target in links[node]:
            if target in on_path:
                continue
            forward[node].append(target)
            if target not in forward:
                visit(target)
        on_path.discard(node)

    visit(entry)
    return forward


def _topological(entry: str, forward: dict[str, list[str]]) -> list[str]:
    incoming = {node: 0 for node in forward}
    for targets in forward.values():
        for target in targets:
            incoming[target] += 1
    ready, order = [entry], []
    while ready:
        node = ready.pop()
        order.append(node)
        for target in forward[node]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return order


def layout(nodes: list[dict[str, Any]]) -> Layout:
    column_of = columns(nodes)
    rows_used: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for node in nodes:
        node_id = node.get("id")
        if node_id not in column_of or node_id in boxes:
            continue
        column = column_of[node_id]
        row = rows_used.get(column, 0)
        rows_used[column] = row + 1
        boxes[node_id] = Box(node_id, str(node.get("type", "")), column, row)
    edges = [
        Edge(boxes[node["id"]], boxes[target])
        for node in nodes
        if node.get("id") in boxes
        for target in successors(node)
        if target in boxes
    ]
    width = MARGIN * 2 + (max(column_of.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP)
    height = MARGIN * 2 + max(rows_used.values(), default=1) * (NODE_HEIGHT + ROW_GAP)
    return Layout(list(boxes.values()), edges, width - COLUMN_GAP, height - ROW_GAP)

"""The graph rules of a pipeline, as pure functions: its shape (cycles, reachability, fan-out
width), when a join is ready, and when a node is skipped.

Nothing here touches the database. The engine applies these rules with compare-and-set writes
(:mod:`orchestrator.statements`), as it applies the run table of :mod:`orchestrator.state`.
Every check walks each node and each edge a bounded number of times, so validating a definition
costs time linear in nodes plus edges; :class:`Report` counts the visits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.state import NodeStatus

#: Cycles named one by one in a report; past this many, the rest are counted.
MAX_CYCLES_NAMED = 20


@dataclass(frozen=True)
class Graph:
    """A valid pipeline's shape: who follows whom, the entry, and the on_failure path."""

    order: tuple[str, ...]
    successors: Mapping[str, tuple[str, ...]]
    predecessors: Mapping[str, tuple[str, ...]]
    on_failure: str | None = None
    failure_path: frozenset[str] = frozenset()

    @property
    def entry(self) -> str:
        return self.order[0]

    def is_line(self) -> bool:
        """Whether every node has at most one successor and one predecessor, and there is no
        on_failure: the shape every pipeline had before branches."""
        return self.on_failure is None and all(
            len(self.successors[n]) <= 1 and len(self.predecessors[n]) <= 1 for n in self.order
        )

    def joins(self) -> list[str]:
        return [n for n in self.order if len(self.predecessors[n]) > 1]


def build(
    order: Iterable[str], links: Mapping[str, Iterable[str]], on_failure: str | None
) -> Graph:
    """The :class:`Graph` of a definition that passed :func:`check`."""
    order = tuple(order)
    successors = {node: tuple(links.get(node, ())) for node in order}
    predecessors: dict[str, list[str]] = {node: [] for node in order}
    for node in order:
        for nxt in successors[node]:
            predecessors[nxt].append(node)
    path = frozenset(_reachable([on_failure], successors)) if on_failure else frozenset()
    return Graph(
        order=order,
        successors=successors,
        predecessors={node: tuple(preds) for node, preds in predecessors.items()},
        on_failure=on_failure,
        failure_path=path,
    )


def _reachable(starts: Iterable[str], successors: Mapping[str, Iterable[str]]) -> list[str]:
    seen: set[str] = set()
    found: list[str] = []
    stack = [s for s in starts if s in successors]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        found.append(node)
        stack.extend(n for n in successors[node] if n not in seen)
    return found


@dataclass
class Report:
    """What :func:`check` found: problems as sentences, and the visits its walks of the graph
    made (nodes entered plus edges followed)."""

    problems: list[str] = field(default_factory=list)
    visits: int = 0
    #: For each node outside a cycle, a bit per ancestor among the nodes conditions name (bit
    #: ``index[a]`` stands for node ``a``), so that a condition can be checked against the nodes
    #: that surely ran before; only those nodes get a bit, which keeps the sets small.
    ancestors: dict[str, int] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)
    #: The on_failure node and every node reachable from it.
    failure_path: set[str] = field(default_factory=set)

    def is_ancestor(self, ancestor: str, node: str) -> bool | None:
        """Whether ``ancestor`` surely ends before ``node`` starts; None when ``node`` sits on
        or after a cycle (nothing to say: the cycle is the problem)."""
        mask = self.ancestors.get(node)
        if mask is None:
            return None
        return ancestor in self.index and bool(mask >> self.index[ancestor] & 1)


def check(
    order: list[str],
    links: Mapping[str, list[str]],
    *,
    on_failure: str | None = None,
    max_fanout: int = 256,
    named: Iterable[str] = (),
) -> Report:
    """Every problem with the shape of a definition: ``order`` holds the node ids (first is the
    entry), ``links`` each node's ``next`` list as written (unknown and repeated ids included),
    ``named`` the node ids that conditions name (whose descendants :meth:`Report.is_ancestor`
    can then tell)."""
    report = Report()
    known = set(order)
    edges: dict[str, list[str]] = {}
    for node in order:
        targets = links.get(node, [])
        if len(targets) > max_fanout:
            report.problems.append(
                f"Node '{node}' fans out to {len(targets)} nodes; at most {max_fanout} are "
                "allowed (ORCHESTRATOR_MAX_FANOUT)"
            )
        kept: list[str] = []
        listed: set[str] = set()
        for target in targets:
            if target not in known:
                report.problems.append(f"Node '{node}' references non-existent next: '{target}'")
            elif target in listed:
                report.problems.append(f"Node '{node}' lists '{target}' more than once in next")
            else:
                listed.add(target)
                kept.append(target)
        edges[node] = kept
    if on_failure is not None and on_failure not in known:
        report.problems.append(f"on_failure references non-existent node: '{on_failure}'")
        on_failure = None
    if not order:
        return report
    report.problems.extend(_cycles(order, edges, report))
    report.problems.extend(_reach_problems(order, edges, on_failure, report))
    report.index = {node: i for i, node in enumerate(n for n in dict.fromkeys(named) if n in known)}
    if report.index:  # no condition names a node: no ancestry to know
        report.ancestors = _ancestors(order, edges, report)
    return report


def _cycles(order: list[str], edges: Mapping[str, list[str]], report: Report) -> list[str]:
    """One sentence per back edge of an iterative depth-first search, naming the cycle's path."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    position: dict[str, int] = {}  # where a node on the stack sits in ``path``
    problems: list[str] = []
    found = 0
    for start in order:
        if start in state:
            continue
        path: list[str] = [start]
        position[start] = 0
        state[start] = 1
        report.visits += 1
        pending = [iter(edges[start])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                done = path.pop()
                del position[done]
                state[done] = 2
                pending.pop()
                continue
            report.visits += 1
            if state.get(nxt) == 1:
                found += 1
                if found <= MAX_CYCLES_NAMED:
                    cycle = path[position[nxt] :]
                    problems.append("Cycle: " + " -> ".join([*cycle, nxt]))
            elif nxt not in state:
                report.visits += 1
                state[nxt] = 1
                position[nxt] = len(path)
                path.append(nxt)
                pending.append(iter(edges[nxt]))
    if found > MAX_CYCLES_NAMED:
        problems.append(f"... and {found - MAX_CYCLES_NAMED} more cycles")
    return problems


def _reach_problems(
    order: list[str], edges: Mapping[str, list[str]], on_failure: str | None, report: Report
) -> list[str]:
    main = set(_reachable([order[0]], edges))
    rescue = set(_reachable([on_failure], edges)) if on_failure else set()
    report.failure_path = rescue
    report.visits += len(main) + len(rescue) + sum(len(edges[n]) for n in main | rescue)
    entry = f"the entry node '{order[0]}'"
    problems = []
    for node in order:
        if node not in main and node not in rescue:
            where = f"{entry} or from on_failure '{on_failure}'" if on_failure else entry
            problems.append(f"Node '{node}' is unreachable from {where}")
        elif node in main and node in rescue:
            problems.append(
                f"Node '{node}' is reachable from both {entry} and on_failure '{on_failure}'; "
                "the on_failure path must be separate"
            )
    return problems


def _ancestors(order: list[str], edges: Mapping[str, list[str]], report: Report) -> dict[str, int]:
    """Each node's named ancestors as a bit set, in topological order (Kahn); nodes on or after
    a cycle get none, since the cycle is reported already."""
    bit = {node: 1 << report.index[node] if node in report.index else 0 for node in order}
    waiting = {node: 0 for node in order}
    for node in order:
        for nxt in edges[node]:
            waiting[nxt] += 1
    ancestors = {node: 0 for node in order}
    ready = [node for node in order if waiting[node] == 0]
    done: dict[str, int] = {}
    while ready:
        node = ready.pop()
        done[node] = ancestors[node]
        report.visits += 1
        for nxt in edges[node]:
            report.visits += 1
            ancestors[nxt] |= ancestors[node] | bit[node]
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return done


# --- joins and skips: applied by the engine ---------------------------------------------------


def is_live(outcome: NodeStatus) -> bool:
    """Whether a predecessor that ended with ``outcome`` counts as reaching its successors: a
    completed node does, and so does an optional one that failed; a skipped one does not."""
    return outcome in (NodeStatus.COMPLETED, NodeStatus.FAILED)


def arrive(awaiting: int, reached: int, live: bool) -> tuple[int, int, NodeStatus]:
    """One predecessor of a node ended: the node's counts after it (predecessors still awaited,
    live ones so far) and its status, WAITING until the last predecessor has ended, then QUEUED.

    ``statements.end_node`` applies exactly this in SQL, in the statement that records the
    predecessor's end, so that of two predecessors ending at once exactly one readies the node.
    """
    awaiting, reached = awaiting - 1, reached + (1 if live else 0)
    return awaiting, reached, NodeStatus.QUEUED if awaiting <= 0 else NodeStatus.WAITING


def skip_reason(predecessors: int, reached: int) -> str | None:
    """Why a ready node is skipped without looking at its condition: every predecessor it has
    was skipped. A join with at least one live predecessor runs; the entry never skips here."""
    if predecessors and not reached:
        return "every node before it was skipped"
    return None

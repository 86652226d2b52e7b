"""A definition's graph for people: the branches in a few lines of text, and a Mermaid
``flowchart`` (which GitHub, GitLab and most documentation tools draw as a picture)."""

from __future__ import annotations

from orchestrator import conditions
from orchestrator.definitions import Definition, NodeSpec

#: Characters a quoted Mermaid label cannot hold as they are, and their entity codes.
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def is_branched(definition: Definition) -> bool:
    """Whether the definition has a fan-out, a join or an on_failure path (not a plain line)."""
    return not definition.graph.is_line()


def flow_lines(definition: Definition) -> list[str]:
    """Who follows whom: fan-outs (in parallel), joins (wait for all), conditions, on_failure."""
    lines: list[str] = []
    for spec in definition.nodes:
        if spec.id == definition.graph.on_failure:
            lines.append(f"on failure → {spec.id}")
        if spec.successors:
            parallel = " (in parallel)" if len(spec.successors) > 1 else ""
            lines.append(f"{spec.id} → {', '.join(spec.successors)}{parallel}")
    for spec in definition.nodes:
        if len(spec.predecessors) > 1:
            ends = ", ".join(spec.predecessors)
            lines.append(f"{spec.id} is a join: it runs once {ends} have ended")
        if spec.when:
            lines.append(f"{spec.id} runs only when {conditions.describe(spec.when)}")
    return lines


def role(spec: NodeSpec) -> str:
    """A few words on where the node sits: a join, a fan-out, the on_failure path."""
    words = []
    if spec.on_failure_path:
        words.append("on failure")
    if len(spec.predecessors) > 1:
        words.append(f"join of {', '.join(spec.predecessors)}")
    if len(spec.successors) > 1:
        words.append(f"fans out to {', '.join(spec.successors)}")
    return "; ".join(words)


def _label(*parts: str) -> str:
    text = "<br/>".join(
        "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in part) for part in parts if part
    )
    return f'"{text}"'


def mermaid(definition: Definition) -> str:
    """The graph as Mermaid ``flowchart`` text: one box per node (id, type, condition), an arrow
    per ``next``, and a dotted arrow from "run failed" into the on_failure path."""
    key = {spec.id: f"n{spec.position}" for spec in definition.nodes}
    lines = ["flowchart TD"]
    for spec in definition.nodes:
        when = f"when {conditions.describe(spec.when)}" if spec.when else ""
        lines.append(f"    {key[spec.id]}[{_label(f'{spec.id} ({spec.type})', when)}]")
    for spec in definition.nodes:
        lines.extend(f"    {key[spec.id]} --> {key[nxt]}" for nxt in spec.successors)
    if definition.graph.on_failure:
        lines.append(
            f"    failed([{_label('run failed')}]) -.-> {key[definition.graph.on_failure]}"
        )
    return "\n".join(lines)

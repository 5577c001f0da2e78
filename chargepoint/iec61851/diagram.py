"""Render the EVSE transition table as Graphviz dot: the table is the documentation."""

from __future__ import annotations

from chargepoint.iec61851.evse_state import TRANSITIONS, EvseState


def to_dot() -> str:
    lines = ["digraph evse {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    lines += [f'  {s.name} [label="{s.name}"];' for s in EvseState]
    for row in TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        for src in sources:
            lines.append(f'  {src.name} -> {row["dest"].name} [label="{row["trigger"]}"];')
    lines.append("}")
    return "\n".join(lines)

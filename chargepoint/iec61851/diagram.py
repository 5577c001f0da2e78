"""Render a transition table as Graphviz dot: the table is the documentation."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from chargepoint.iec61851.evse_state import TRANSITIONS, EvseState


def table_to_dot(name: str, states: Iterable[Enum], transitions: list[dict[str, Any]]) -> str:
    lines = [f"digraph {name} {{", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    lines += [f'  {s.name} [label="{s.name}"];' for s in states]
    for row in transitions:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        for src in sources:
            lines.append(f'  {src.name} -> {row["dest"].name} [label="{row["trigger"]}"];')
    lines.append("}")
    return "\n".join(lines)


def to_dot() -> str:
    """The IEC 61851-1 EVSE machine."""
    return table_to_dot("evse", EvseState, TRANSITIONS)


def secc_to_dot() -> str:
    """The ISO 15118-20 SECC session machine."""
    from chargepoint.iso15118.secc import states  # noqa: PLC0415

    return table_to_dot("secc", states.SeccState, states.TRANSITIONS)

"""Checks of relations between the parts of a site file (after each part's own shape is valid).

Why a child limit above its parent's is an *error*, not a warning: the parent's limit still
protects the wire, so it is never unsafe, but it is never useful either (the child can never
carry more than its parent allows) and in practice it is a typo (630 for 63) or a bus rating
written where the breaker rating belongs. Asking the user to write the real, lower value
keeps the tree honest, and the ``check`` tree shows what will actually bind. Limits are only
compared within one voltage level: a transformer's secondary amperes are not comparable with
its parent's, so its *primary* limit is compared instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ampshare.config._problems import Problem, did_you_mean
from ampshare.config._yaml import Loc
from ampshare.config.schema import ChargerModel, NodeModel
from ampshare.core.site import (
    CircuitNode,
    Connection,
    Line,
    NodeKind,
    PhaseRotation,
    VoltageSystem,
)

__all__ = [
    "check_charger_connection",
    "check_charger_currents",
    "check_node_ids",
    "check_node_limits",
    "check_phase_switching",
    "check_ref",
    "check_tree",
    "check_unique",
    "per_line",
    "watts",
]

INF = math.inf
PerLine = tuple[float, float, float]


def per_line(value: Any, voltage: VoltageSystem, loc: Loc, problems: list[Problem]) -> PerLine:
    """Expand a limit as written into (L1, L2, L3); lines the site lacks are unlimited."""
    lines = voltage.lines
    out = [INF, INF, INF]
    if value is None:
        return (INF, INF, INF)
    if isinstance(value, tuple):
        if len(value) != len(lines):
            problems.append(Problem(
                loc=loc, message=f"{len(value)} values given, but a '{voltage}' site has "
                f"{len(lines)} line(s): {', '.join(lines)}",
                hint="give one number for all lines, or one per line"))
            return (INF, INF, INF)
        for line, amps in zip(lines, value, strict=True):
            out[line.index] = amps
    elif isinstance(value, dict):
        for line, amps in value.items():
            if line not in lines:
                problems.append(Problem(loc=(*loc, str(line)),
                                        message=f"a '{voltage}' site has no line {line}",
                                        hint=f"lines of this site: {', '.join(lines)}"))
            else:
                out[line.index] = amps
    else:
        for line in lines:
            out[line.index] = float(value)
    return (out[0], out[1], out[2])


def watts(w: float | None, kw: float | None, loc: Loc, problems: list[Problem]) -> float | None:
    if w is not None and kw is not None:
        problems.append(Problem(loc=(*loc, "max_power_kw"),
                                message="both max_power_w and max_power_kw are given",
                                hint="keep one of them"))
    return w if w is not None else (kw * 1000.0 if kw is not None else None)


def check_ref(ref: str, known: Iterable[str], loc: Loc, problems: list[Problem]) -> None:
    known = set(known)
    if ref not in known:
        problems.append(Problem(loc=loc, message=f"no node '{ref}'",
                                hint=did_you_mean(ref, known, what="existing nodes")))


def check_unique(item_id: str, index: int, seen: dict[str, int], loc: Loc, *, what: str,
                 problems: list[Problem]) -> None:
    if item_id in seen:
        problems.append(Problem(loc=loc, message=f"duplicate {what} id '{item_id}'",
                                hint=f"first defined at {loc[0]}[{seen[item_id]}]; "
                                "ids must be unique"))
    else:
        seen[item_id] = index


def check_node_ids(items: list[tuple[int, NodeModel]], problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for i, m in items:
        check_unique(m.id, i, seen, ("nodes", i, "id"), what="node", problems=problems)


def check_tree(items: list[tuple[int, NodeModel]], problems: list[Problem]) -> list[str]:
    """Check roots, parents and cycles; return node ids parent-before-child (file order)."""
    index: dict[str, int] = {}
    for i, m in items:
        index.setdefault(m.id, i)
    roots = [m.id for _, m in items if m.parent is None]
    for i, m in items:
        if m.parent is not None and m.parent not in index:
            check_ref(m.parent, index, ("nodes", i, "parent"), problems)
    if not roots and items:
        problems.append(Problem(loc=("nodes",), message="no root node",
                                hint="exactly one node (the service entrance) has no 'parent'"))
    for extra in roots[1:]:
        problems.append(Problem(loc=("nodes", index[extra]),
                                message=f"second root node '{extra}' (no parent); the first "
                                f"root is '{roots[0]}'",
                                hint=f"a site has one root: add 'parent: {roots[0]}'"))
    order = _walk(items, roots)
    for i, m in items:
        if m.id not in order and m.parent in index:
            problems.append(Problem(loc=("nodes", i, "parent"),
                                    message=f"node '{m.id}' is in a parent cycle",
                                    hint="follow the parents: one of them must reach the root"))
    return order


def _walk(items: list[tuple[int, NodeModel]], roots: list[str]) -> list[str]:
    children: dict[str, list[str]] = {}
    for _, m in items:
        if m.parent is not None:
            children.setdefault(m.parent, []).append(m.id)
    order: list[str] = []
    stack = list(reversed(roots[:1]))
    while stack:
        nid = stack.pop()
        if nid in order:
            continue
        order.append(nid)
        stack.extend(reversed(children.get(nid, [])))
    return order


def check_node_limits(nodes: dict[str, CircuitNode], index: dict[str, int],
                      problems: list[Problem]) -> None:
    """A node's limit may not exceed the nearest limit above it at the same voltage level."""
    for node in nodes.values():
        if node.parent_id is None or node.parent_id not in nodes:
            continue
        own = node.line_limit_a
        key = "limit_a"
        if node.kind is NodeKind.TRANSFORMER:
            if node.primary is None:
                continue  # secondary amperes are not comparable with the parent's
            own = (node.primary.line_limit_a,) * 3
            key = "primary"
        for line in Line:
            above = _limit_above(nodes, node.parent_id, line.index)
            if above is not None and math.isfinite(own[line.index]) and \
                    own[line.index] > above[1] + 1e-9:
                problems.append(Problem(
                    loc=("nodes", index[node.id], key),
                    message=f"{line} limit {own[line.index]:g} A is above the {above[1]:g} A of "
                    f"'{above[0]}' that feeds it",
                    hint=f"at most {above[1]:g} A; omit the limit if this node does not limit "
                    "current itself"))
                break


def _limit_above(nodes: dict[str, CircuitNode], start: str, line: int) -> tuple[str, float] | None:
    cur: str | None = start
    seen: set[str] = set()
    while cur is not None and cur in nodes and cur not in seen:
        seen.add(cur)
        node = nodes[cur]
        if math.isfinite(node.line_limit_a[line]):
            return node.id, node.line_limit_a[line]
        if node.kind is NodeKind.TRANSFORMER:
            return None  # above a transformer the amperes are of another voltage
        cur = node.parent_id
    return None


def check_charger_currents(m: ChargerModel, loc: Loc, problems: list[Problem]) -> None:
    if m.min_a > m.max_a:
        problems.append(Problem(loc=(*loc, "min_a"),
                                message=f"min_a {m.min_a:g} A is above max_a {m.max_a:g} A",
                                hint="make min_a <= max_a; typical AC: min_a 6, max_a 16 or 32"))
    outside = [a for a in m.allowed_a if not m.min_a <= a <= m.max_a]
    if outside:
        problems.append(Problem(loc=(*loc, "allowed_a"),
                                message=f"allowed currents {outside} are outside "
                                f"min_a..max_a = {m.min_a:g}..{m.max_a:g} A",
                                hint="list only pilot values between min_a and max_a"))


def check_phase_switching(m: ChargerModel, conn: Connection, loc: Loc,
                          problems: list[Problem]) -> None:
    """1p/3p switching only means something for a three-phase charger."""
    if m.switch_phases and conn is not Connection.THREE_PHASE:
        problems.append(Problem(loc=(*loc, "switch_phases"),
                                message=f"switch_phases on a charger wired {conn}: only a "
                                "three-phase charger can switch between 1 and 3 phases",
                                hint="set connection: 3p, or remove switch_phases"))


def check_charger_connection(conn: Connection, rotations: set[PhaseRotation],
                             voltage: VoltageSystem, loc: Loc, problems: list[Problem]) -> None:
    """The connection (after phase rotation) must use only lines this site has."""
    lines = voltage.lines
    if conn.is_line_to_line and not voltage.is_polyphase:
        problems.append(Problem(loc=(*loc, "connection"),
                                message=f"line-to-line connection {conn} on a single-phase "
                                f"'{voltage}' site", hint="use connection: L1"))
        return
    if conn is Connection.THREE_PHASE and voltage is VoltageSystem.US_120_240:
        problems.append(Problem(loc=(*loc, "connection"),
                                message="three-phase charger on a split-phase 120/240 site",
                                hint="use L1-L2 (240 V) or L1 / L2 (120 V), or voltage 120/208"))
        return
    if not voltage.is_polyphase and rotations - {PhaseRotation.L1L2L3}:
        problems.append(Problem(loc=(*loc, "rotation"),
                                message="phase rotation on a single-phase site",
                                hint="remove 'rotation'"))
        return
    for rot in sorted(rotations):
        used = {rot.site_line(t) for t in conn.terminals}
        missing = sorted(used - set(lines))
        if missing:
            where = "rotation" if rot is not PhaseRotation.L1L2L3 else "connection"
            problems.append(Problem(loc=(*loc, where),
                                    message=f"{conn} with rotation {rot} uses line(s) "
                                    f"{', '.join(missing)}, which a '{voltage}' site lacks",
                                    hint=f"lines of this site: {', '.join(lines)}"))
            return

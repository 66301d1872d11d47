"""Convert a published ACN topology (acnportal's constraint set) into a site file, exactly.

ACN states its limits as phasor constraints ``|c_r · (I ∘ e^{jφ})| <= L_r`` over EVSE currents
``I`` with phase angles ``φ``. ampshare's site is a tree of nodes with per-line limits (and
transformer primaries), whose line currents are the same kind of phasor sums. This module:

1. maps each EVSE's (voltage, angle) to a connection (208 V at 30/-90/150 deg = L1-L2/L2-L3/
   L3-L1 with our line angles L1 0, L2 -120, L3 +120 deg);
2. recognises each constraint row as "line x of the chargers in set S" or "delta primary
   line x, winding ratio n" by comparing it with those templates;
3. groups rows that describe the same set of chargers into one node and nests the nodes by
   set inclusion (the tree is derived from the matrix, nothing is hard-coded per site);
4. verifies the result: every ACN row must equal (up to sign and scale, with the limit scaled
   alike) a limit of the built site, and every finite limit of the site must be an ACN row or
   carry no current at all. Anything that cannot be expressed exactly raises ``InputError``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ampshare.core.site import Connection
from ampshare.errors import InputError

__all__ = ["ACN_SITES", "acn_to_site_dict"]

ACN_SITES = ("caltech", "jpl", "office001")
Vec = npt.NDArray[np.float64]
_TOL = 1e-9

# (EVSE voltage class, phase angle in degrees) -> connection, with L1 at 0 deg, L2 -120, L3 120.
_CONNECTIONS: dict[tuple[str, float], Connection] = {
    ("ll", 30.0): Connection.L1_L2, ("ll", -90.0): Connection.L2_L3,
    ("ll", 150.0): Connection.L3_L1, ("ln", 0.0): Connection.L1,
    ("ln", -120.0): Connection.L2, ("ln", 120.0): Connection.L3,
}
_KEYS = ("evses", "constraint_ids", "constraint_limits_A", "constraint_matrix")
_PREV = {0: 2, 1: 0, 2: 1}  # delta primary line x = (secondary x - secondary prev(x)) / n


@dataclass(frozen=True, slots=True)
class _Reading:
    """One way to read a row: ``kind`` "line" or "delta" (primary), the line, and the
    |coefficient| relative to the template (1 for a line, 1/n for a primary)."""

    kind: str
    line: int
    scale: float


@dataclass(slots=True)
class _Row:
    name: str
    limit_a: float
    support: frozenset[int]
    # A row over chargers that all sit on L1-L2 reads as line L1 or line L2 alike; the
    # grouping picks the reading that agrees with the other rows of the same node.
    readings: list[_Reading]
    kind: str = ""
    line: int = -1
    scale: float = 1.0

    def choose(self, reading: _Reading) -> None:
        self.kind, self.line, self.scale = reading.kind, reading.line, reading.scale


def acn_to_site_dict(topology: Mapping[str, Any], site: str) -> dict[str, Any]:
    """The site-file mapping for ACN site ``site`` of a parsed ``acn_network_topology.json``."""
    if not isinstance(topology, Mapping):
        raise InputError("the topology must be a JSON object of sites (caltech, jpl, ...)")
    if site not in topology:
        raise InputError(f"no site '{site}' in the topology; it has: {', '.join(topology)}")
    data = topology[site]
    missing = [k for k in _KEYS if not isinstance(data, Mapping) or k not in data]
    if missing:
        raise InputError(f"{site}: the topology lacks {', '.join(missing)} (an exported "
                         f"acnportal network has {', '.join(_KEYS)})")
    try:
        evses: list[Mapping[str, Any]] = [dict(e) for e in data["evses"]]
        conns = [_connection(e) for e in evses]
        matrix = np.asarray(data["constraint_matrix"], dtype=float)
        names = [str(x) for x in data["constraint_ids"]]
        limits = [float(x) for x in data["constraint_limits_A"]]
        for e in evses:
            float(e["min_rate_A"]), float(e["max_rate_A"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{site}: an entry of the topology is not in acnportal's format "
                         f"({type(exc).__name__}: {exc}); each EVSE needs station_id, "
                         "voltage_V, phase_angle_deg, min_rate_A and max_rate_A") from None
    if matrix.shape != (len(names), len(evses)) or len(limits) != len(names):
        raise InputError(f"{site}: constraint matrix {matrix.shape} does not match "
                         f"{len(names)} constraints x {len(evses)} EVSEs")
    rows = [_classify(names[r], limits[r], matrix[r], conns) for r in range(len(names))]
    groups = _group(rows, conns)
    nodes, owner = _tree(groups, conns)
    out = {
        "site": f"ACN {site}",
        "voltage": "120/208",
        "frequency_hz": 60.0,
        "nodes": nodes,
        "chargers": [_charger(e, c, owner[i]) for i, (e, c) in enumerate(zip(evses, conns,
                                                                               strict=True))],
    }
    _verify(out, matrix, names, limits, conns)
    return out


def _connection(evse: Mapping[str, Any]) -> Connection:
    volts = float(evse["voltage_V"])
    cls = "ll" if 200 <= volts <= 250 else "ln" if 110 <= volts <= 130 else "?"
    angle = float(evse["phase_angle_deg"])
    angle = (angle + 180.0) % 360.0 - 180.0
    for (c, a), conn in _CONNECTIONS.items():
        if c == cls and math.isclose(angle, a if a != 180.0 else -180.0, abs_tol=1e-6):
            return conn
    raise InputError(f"EVSE {evse['station_id']}: {volts:g} V at {angle:g} deg is not a "
                     "connection of a 120/208 V wye site (208 V at 30, -90, 150 deg or 120 V "
                     "at 0, -120, 120 deg)")


def _line_sign(conn: Connection, line: int) -> float:
    """Coefficient of a charger's current on site line ``line``: +1 out of its first terminal,
    -1 back through its second (line-to-line), +1 for line-to-neutral."""
    terms = conn.terminals
    if terms[0].index == line:
        return 1.0
    if len(terms) == 2 and terms[1].index == line:
        return -1.0
    return 0.0


def _template(kind: str, line: int, conns: Sequence[Connection]) -> Vec:
    lines = np.array([[_line_sign(c, x) for c in conns] for x in range(3)])
    out: Vec = lines[line] if kind == "line" else lines[line] - lines[_PREV[line]]
    return out


def _classify(name: str, limit: float, row: Vec, conns: Sequence[Connection]) -> _Row:
    support = frozenset(int(i) for i in np.flatnonzero(np.abs(row) > _TOL))
    if not support:
        raise InputError(f"constraint '{name}' covers no EVSE")
    idx = sorted(support)
    readings: list[_Reading] = []
    for kind in ("line", "delta"):
        for line in range(3):
            t = _template(kind, line, conns)[idx]
            if np.any(np.abs(t) < _TOL):
                continue
            ratio = row[idx] / t
            if np.allclose(ratio, ratio[0], atol=_TOL):
                scale = abs(float(ratio[0]))
                if kind == "line" and not math.isclose(scale, 1.0):
                    continue  # a scaled line reads as a wye primary; ACN has none
                readings.append(_Reading(kind, line, scale))
    if readings:
        return _Row(name, limit, support, readings)
    raise InputError(f"constraint '{name}' is neither a line current of a set of EVSEs nor a "
                     "delta transformer's primary line current; it cannot be expressed "
                     "exactly as a node of the site tree")


def _visible(reading: _Reading, conns: Sequence[Connection]) -> frozenset[int]:
    t = _template(reading.kind, reading.line, conns)
    return frozenset(int(i) for i in np.flatnonzero(np.abs(t) > _TOL))


def _agree(a: _Row, b: _Row, conns: Sequence[Connection]) -> bool:
    """Some reading of each says both rows are about one node holding all their chargers."""
    if not a.support & b.support:
        return False
    union = a.support | b.support
    return any(union & _visible(x, conns) == a.support and union & _visible(y, conns) ==
               b.support for x in a.readings for y in b.readings)


def _group(rows: list[_Row], conns: Sequence[Connection]) -> list[list[_Row]]:
    """Rows about one node share chargers and agree on which chargers the node holds."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(rows):
        for j in range(i + 1, len(rows)):
            if _agree(a, rows[j], conns):
                parent[find(j)] = find(i)
    groups: dict[int, list[_Row]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(find(i), []).append(r)
    for g in groups.values():
        _choose_readings(g, conns)
    return list(groups.values())


def _choose_readings(group: list[_Row], conns: Sequence[Connection]) -> None:
    members = frozenset().union(*(r.support for r in group))
    used: set[tuple[str, int]] = set()
    for r in sorted(group, key=lambda r: len(r.readings)):
        fits = [x for x in r.readings if members & _visible(x, conns) == r.support]
        if not fits:
            raise InputError(f"constraints {[x.name for x in group]} do not describe one set "
                             "of EVSEs; no node of a tree expresses them exactly")
        fresh = [x for x in fits if (x.kind, x.line) not in used]
        r.choose((fresh or fits)[0])
        used.add((r.kind, r.line))


@dataclass(slots=True)
class _Node:
    ident: str
    name: str
    members: frozenset[int]
    rows: list[_Row]
    parent: str | None = None


def _tree(groups: list[list[_Row]], conns: Sequence[Connection]
          ) -> tuple[list[dict[str, Any]], list[str]]:
    n_evse = len(conns)
    nodes = [_Node(*_naming(g, k), frozenset().union(*(r.support for r in g)), g)
             for k, g in enumerate(groups)]
    nodes.sort(key=lambda n: -len(n.members))
    _check_laminar(nodes)
    everyone = frozenset(range(n_evse))
    if not nodes or nodes[0].members != everyone or \
            len([n for n in nodes if n.members == everyone]) > 1:
        nodes.insert(0, _Node("service", "Service (not limited by ACN)", everyone, []))
    _unique_ids(nodes)
    for k, node in enumerate(nodes[1:], start=1):
        node.parent = next(p.ident for p in reversed(nodes[:k]) if node.members <= p.members)
    owner = [next(n.ident for n in reversed(nodes) if i in n.members) for i in range(n_evse)]
    return [_node_dict(n, k == 0, conns) for k, n in enumerate(nodes)], owner


def _naming(rows: list[_Row], k: int) -> tuple[str, str]:
    stems = [re.sub(r"\s*\b(I_[abc]|[ABC])$", "", r.name).strip() for r in rows]
    common = os.path.commonprefix(stems)  # noqa: RUF071  # names, not paths
    if common and not all(s == common for s in stems):
        common = common.rsplit(" ", 1)[0] if " " in common else ""
    name = common.strip() or ("Transformer" if any(r.kind == "delta" for r in rows)
                              else f"Group {k + 1}")
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), name


def _unique_ids(nodes: list[_Node]) -> None:
    seen: set[str] = set()
    for node in nodes:
        base, k = node.ident, 2
        while node.ident in seen:
            node.ident, k = f"{base}-{k}", k + 1
        seen.add(node.ident)


def _check_laminar(nodes: list[_Node]) -> None:
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if a.members & b.members and not (b.members <= a.members):
                raise InputError(f"constraints of '{a.name}' and '{b.name}' overlap without "
                                 "one containing the other; a tree cannot express them")


def _node_dict(node: _Node, is_root: bool, conns: Sequence[Connection]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.ident, "name": node.name}
    delta = [r for r in node.rows if r.kind == "delta"]
    if delta:
        out["kind"] = "transformer"
    elif is_root:
        out["kind"] = "service"
    else:
        out["kind"] = "subpanel"
    if node.parent is not None:
        out["parent"] = node.parent
    limits = _line_limits([r for r in node.rows if r.kind == "line"], conns)
    if limits:
        out["limit_a"] = limits
    if delta:
        out["primary"] = _primary(node, delta)
    return out


def _line_limits(rows: list[_Row], conns: Sequence[Connection]) -> Any:
    """{line: amps} for the lines ACN limits, or one number when that is exactly the same.

    A line ACN does not limit gets the same number only when that changes nothing: every
    charger of the node has the same connection, so each other line carries either 0 A or
    exactly the limited line's current (ACN's pods: 8 EVSEs all on L1-L2, limited on L1)."""
    per: dict[int, float] = {}
    for r in rows:
        per[r.line] = min(per.get(r.line, math.inf), r.limit_a)
    if not per:
        return None
    values = set(per.values())
    members = frozenset().union(*(r.support for r in rows))
    single_connection = len({conns[i] for i in members}) == 1
    if len(values) == 1 and (len(per) == 3 or single_connection):
        return values.pop()
    return {("L1", "L2", "L3")[x]: v for x, v in sorted(per.items())}


def _primary(node: _Node, rows: list[_Row]) -> dict[str, Any]:
    lines = {r.line for r in rows}
    limits = {round(r.limit_a, 9) for r in rows}
    ratios = {round(1.0 / r.scale, 9) for r in rows}
    if lines != {0, 1, 2} or len(limits) != 1 or len(ratios) != 1:
        raise InputError(f"'{node.name}': primary constraints must cover all three lines with "
                         "one limit and one ratio to be a transformer primary")
    return {"winding": "delta", "ratio": 1.0 / rows[0].scale, "limit_a": rows[0].limit_a}


def _charger(evse: Mapping[str, Any], conn: Connection, node: str) -> dict[str, Any]:
    lo, hi = float(evse["min_rate_A"]), float(evse["max_rate_A"])
    out: dict[str, Any] = {"id": str(evse["station_id"]), "node": node,
                           "connection": conn.value, "min_a": lo, "max_a": hi}
    rates = evse.get("allowable_rates_A")
    if evse.get("is_continuous", True) or not rates:
        return out
    steps = sorted(float(r) for r in rates if float(r) > 0)
    if steps == [float(a) for a in range(int(lo), int(hi) + 1)] and lo.is_integer():
        out["resolution_a"] = 1.0
    else:
        out["allowed_a"] = steps
        out["resolution_a"] = 1.0
    if 0.0 not in [float(r) for r in rates]:
        out["zero_pauses"] = False
    return out


def _site_constraints(out: Mapping[str, Any], conns: Sequence[Connection]
                      ) -> list[tuple[str, Vec, float]]:
    """Every finite limit of the built site as (label, coefficient vector, amps)."""
    parent = {n["id"]: n.get("parent") for n in out["nodes"]}
    signs = np.array([[_line_sign(c, x) for c in conns] for x in range(3)])
    found: list[tuple[str, Vec, float]] = []
    for node in out["nodes"]:
        below = np.array([_is_below(c["node"], node["id"], parent) for c in out["chargers"]])
        lines = signs * below
        limit = node.get("limit_a")
        per = dict.fromkeys(range(3), limit) if isinstance(limit, float) else \
            {("L1", "L2", "L3").index(k): v for k, v in (limit or {}).items()}
        found += [(f"{node['id']} {('L1', 'L2', 'L3')[x]}", lines[x], v) for x, v in per.items()]
        prim = node.get("primary")
        if prim:
            found += [(f"{node['id']} primary {('A', 'B', 'C')[x]}",
                       (lines[x] - lines[_PREV[x]]) / prim["ratio"], prim["limit_a"])
                      for x in range(3)]
    return found


def _is_below(node: str | None, ancestor: str, parent: Mapping[str, str | None]) -> bool:
    while node is not None:
        if node == ancestor:
            return True
        node = parent[node]
    return False


def _same(c: Vec, lim_c: float, v: Vec, lim_v: float) -> bool:
    """|c·z| <= lim_c and |v·z| <= lim_v are the same constraint: c = k v, lim_c = |k| lim_v."""
    i = int(np.argmax(np.abs(v)))
    if abs(v[i]) < _TOL:
        return False
    k = c[i] / v[i]
    return bool(np.allclose(c, k * v, atol=1e-9) and math.isclose(lim_c, abs(k) * lim_v,
                                                                    rel_tol=1e-9))


def _verify(out: Mapping[str, Any], matrix: Vec, names: Sequence[str],
            limits: Sequence[float], conns: Sequence[Connection]) -> None:
    ours = _site_constraints(out, conns)
    missing = [n for n, c, lim in zip(names, matrix, limits, strict=True)
               if not any(_same(c, lim, v, lv) for _, v, lv in ours)]
    extra = [label for label, v, lv in ours if np.any(np.abs(v) > _TOL) and
             not any(_same(c, lim, v, lv) for c, lim in zip(matrix, limits, strict=True))]
    if missing or extra:
        raise InputError(f"{out['site']}: the derived tree is not exact: ACN constraints "
                         f"without an equal site limit: {missing}; site limits that ACN does "
                         f"not have: {extra}")

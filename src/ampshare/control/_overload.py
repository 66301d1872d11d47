"""Overload alerts: current that flows above a limit, told apart from pessimistic accounting.

The allocation counts an offline charger both in its meter's total (its draw cannot be
subtracted: nobody reports it) and at its worst case on top; that is safe, and it may leave a
node's headroom negative while nothing flows above its limit. Only the second is an overload.
Likewise at a node without a meter: its assumed load in the allocation holds the fixed loads
(offline chargers at their worst case — every charger that has not reported since a restart
at its maximum —, idle chargers at what they would offer, non-compliant ones at their draw);
none of that is current known to flow.

The limit is the one the controller keeps (rating or outside cap, less the node's margin), as
the "never overload" promise states it. The alert's text tells the two cases apart for the
person reading it: load inside the margin (the rating itself still holds: a load step while
cars are lowered, or car current the chargers have not reported yet) or above the rating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ampshare.control._index import SiteIndex
from ampshare.control._table import TrackTable
from ampshare.control._types import ControllerState, Event, EventKind, Severity
from ampshare.core.allocation import Allocation, FixedLoad, NodeHeadroom, NodeMeasurement
from ampshare.core.site import Site

__all__ = ["overload_events"]


def _flowing_a(
    node: NodeHeadroom,
    measured: Mapping[str, NodeMeasurement],
    index: SiteIndex,
    table: TrackTable,
    fixed: Sequence[FixedLoad],
) -> tuple[float, float, float] | None:
    """Per line, the current known to flow through the node: a fresh meter's reading; for a
    node without one, its assumed other load without the fixed loads (worst cases, not
    flows) plus what online chargers below report. None when the meter is stale (its own
    alert says so)."""
    m = measured.get(node.node_id)
    if m is not None:
        if m.stale or m.current_a is None or not m.includes_ev_load:
            return None
        return (m.current_a[0] or 0.0, m.current_a[1] or 0.0, m.current_a[2] or 0.0)
    flow = list(node.other_load_a)
    for f in fixed:
        if node.node_id in index.ancestors[f.charger_id]:
            flow = [a - b for a, b in zip(flow, f.current_a, strict=True)]
    rows = zip(table.ids, table.online, table.measured_line_a, strict=True)
    for cid, online, line_a in rows:
        if online and node.node_id in index.ancestors[cid]:
            flow = [f + v for f, v in zip(flow, line_a, strict=True)]
    return (flow[0], flow[1], flow[2])


def overload_events(
    alloc: Allocation,
    *,
    state: ControllerState,
    measured: tuple[NodeMeasurement, ...],
    index: SiteIndex,
    table: TrackTable,
    fixed: Sequence[FixedLoad],
    now_s: float,
    site: Site,
) -> tuple[list[Event], frozenset[str], frozenset[str]]:
    """An overload is current that flows above a limit, not the pessimism of counting an
    offline charger both in the meter's total and at its worst case (that only lowers the
    others): a node whose headroom is negative is overloaded when what is known to flow
    through it is above its limit. Returns the new alerts, the overloaded nodes and, of those,
    the ones above the rating itself; a node alerted inside its margin is alerted again when
    its flow passes the rating."""
    by_node = {m.node_id: m for m in measured}
    over = set()
    above_rating = set()
    rooms = alloc.headroom
    for j in rooms.short(1e-6):
        h = rooms[j]
        flow = _flowing_a(h, by_node, index, table, fixed)
        if flow is not None and any(f > lim + 1e-6 for f, lim in zip(flow, h.limit_a, strict=True)):
            over.add(h.node_id)
            margin = site.node(h.node_id).margin_a
            if any(f > lim + margin + 1e-6 for f, lim in zip(flow, h.limit_a, strict=True)):
                above_rating.add(h.node_id)
    out = [
        Event(
            t_s=now_s,
            kind=EventKind.OVERLOAD,
            severity=Severity.ALERT,
            subject=nid,
            message=(
                "load above the limit even with every controllable car lowered "
                "(building load or chargers that cannot be controlled)"
                if nid in above_rating
                else "load inside the safety margin below the limit (the rating itself is not "
                "exceeded) even with every controllable car lowered (building load or chargers "
                "that cannot be controlled, or car current not reported yet)"
            ),
        )
        for nid in sorted(
            (over - state.overloaded_nodes) | (above_rating - state.over_rating_nodes)
        )
    ]
    return out, frozenset(over), frozenset(above_rating)

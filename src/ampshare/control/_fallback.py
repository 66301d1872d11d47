"""The fallback each charger holds for when the controller is gone: a site-safe static share.

If the controller dies or the network drops, every lease runs out and every charger falls back
to this limit at the same time. So the fallbacks must keep every node within its limits with
*all* chargers at their fallback at once and the building at its worst case: the metered
node's configured ``fallback_line_a`` (or, lacking one, its full limit, which leaves nothing and
makes the fallback 0 A: unknown means pessimistic).

The share is equal per charger: for every node, line and kind of limit it is the room left
divided by the number of chargers loading it, and each charger takes the smallest share over
the nodes above it. The accounting is conservative (magnitudes add), which bounds the exact
phasor sum from above.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ampshare.control._index import SiteIndex
from ampshare.core.site import Charger, CircuitNode, PrimaryWinding, Site

__all__ = ["fallback_causes", "fallback_limits", "round_down_to_charger"]


def _worst_other_load_a(site: Site, node: CircuitNode) -> tuple[float, float, float]:
    """Building load assumed at ``node`` while nobody watches it: a metered node's configured
    worst case (or its whole limit); an unmetered node's known loads (``Site.loads``, at their
    maximum) plus what its children assume."""
    meters = [m for m in site.meters if m.node_id == node.id]
    out = [0.0, 0.0, 0.0]
    if meters:
        for m in meters:
            per_line = m.fallback_line_a if m.fallback_line_a is not None else node.line_limit_a
            out = [max(w, v) for w, v in zip(out, per_line, strict=True)]
        return (out[0], out[1], out[2])
    for load in getattr(site, "loads", ()):
        if load.node_id == node.id:
            for line in load.site_lines():
                out[line.index] += load.max_current_a
    for child in site.children(node.id):
        out = [o + w for o, w in zip(out, _worst_other_load_a(site, child), strict=True)]
    return (out[0], out[1], out[2])


def _line_room_a(site: Site, node: CircuitNode) -> list[float]:
    other = _worst_other_load_a(site, node)
    room = [lim - node.margin_a - o for lim, o in zip(node.line_limit_a, other, strict=True)]
    if node.primary is not None:
        # delta primary: line = |Ia - Ic| / ratio <= (|Ia| + |Ic|) / ratio
        k = 2.0 if node.primary.winding is PrimaryWinding.DELTA else 1.0
        cap = node.primary.line_limit_a * node.primary.winding_ratio / k
        room = [min(r, cap) for r in room]
    return [max(0.0, r) for r in room]


def _phase_volts(site: Site, charger: Charger) -> float:
    if charger.connection.is_line_to_line:
        return site.voltage.line_to_line_v or site.voltage.line_to_neutral_v
    return site.voltage.line_to_neutral_v


def round_down_to_charger(charger: Charger, limit_a: float) -> float:
    """The highest limit the charger accepts that is <= ``limit_a`` (0 below its minimum)."""
    limit_a = min(limit_a, charger.max_current_a)
    if charger.allowed_currents_a:
        fits = [a for a in charger.allowed_currents_a if a <= limit_a + 1e-9]
        return max(fits) if fits else 0.0
    step = charger.resolution_a if charger.resolution_a > 0 else 0.1
    rounded = math.floor(limit_a / step + 1e-9) * step
    return round(rounded, 6) if rounded >= charger.min_current_a - 1e-9 else 0.0


def fallback_limits(site: Site, index: SiteIndex) -> dict[str, float]:
    """Per charger id, the fallback limit per phase [A] (see module docstring)."""
    return {cid: limit for cid, (limit, _node, _raw) in _fallbacks(site, index).items()}


def _node_cause(site: Site, node: CircuitNode) -> str:
    meters = [m for m in site.meters if m.node_id == node.id]
    missing = [m.id for m in meters if m.fallback_line_a is None]
    if missing:
        return (
            f"meter {missing[0]} on node {node.id} has no meters[].fallback_line_a, so its "
            "worst case is the node's full limit; configure a realistic worst-case building load"
        )
    if meters:
        worst = max(max(m.fallback_line_a or (0.0,)) for m in meters)
        return (
            f"node {node.id}: meters[].fallback_line_a ({worst:g} A) plus its margin "
            f"({node.margin_a:g} A) leaves too little of its limit for the chargers below it"
        )
    return (
        f"node {node.id}: the worst-case loads below it leave too little of its limit for "
        "the chargers below it"
    )


def fallback_causes(site: Site, index: SiteIndex) -> dict[str, str]:
    """Per charger whose fallback is 0 A, why: the node whose share bound it, and what about
    that node (a meter without a worst case, a worst case that leaves nothing, or a share
    below the charger's minimum)."""
    out: dict[str, str] = {}
    for cid, (limit, node_id, raw) in _fallbacks(site, index).items():
        if limit > 0:
            continue
        charger = index.chargers[cid]
        if node_id is None:
            out[cid] = "no circuit node above it leaves room"
        elif raw > 1e-9:
            out[cid] = (
                f"the share per charger of node {node_id} ({raw:.2f} A) is below the "
                f"charger minimum {charger.min_current_a:g} A"
            )
        else:
            out[cid] = _node_cause(site, site.node(node_id))
    return out


def _fallbacks(site: Site, index: SiteIndex) -> dict[str, tuple[float, str | None, float]]:
    """Per charger: (fallback limit, the node whose share bound it, that share before
    rounding to what the charger accepts)."""
    count: dict[tuple[str, int], int] = defaultdict(int)
    phase_sum: dict[str, float] = defaultdict(float)  # sum of phases x volts below node
    lines_sum: dict[str, int] = defaultdict(int)
    for c in site.chargers:
        lines = index.lines[c.id]
        for nid in index.ancestors[c.id]:
            for ln in lines:
                count[(nid, ln)] += 1
            phase_sum[nid] += len(lines) * _phase_volts(site, c)
            lines_sum[nid] += len(lines)
    share: dict[str, float] = {}
    for node in site.nodes:
        room = _line_room_a(site, node)
        best = math.inf
        if node.max_power_w is not None and phase_sum[node.id] > 0:
            best = node.max_power_w / phase_sum[node.id]
        if node.max_line_sum_a is not None and lines_sum[node.id] > 0:
            best = min(best, node.max_line_sum_a / lines_sum[node.id])
        for ln in range(3):
            n = count.get((node.id, ln), 0)
            share[f"{node.id}\x00{ln}"] = min(best, room[ln] / n) if n else best
    out: dict[str, tuple[float, str | None, float]] = {}
    for c in site.chargers:
        lim, bound = min(
            (
                (share[f"{nid}\x00{ln}"], nid)
                for nid in index.ancestors[c.id]
                for ln in index.lines[c.id]
            ),
            default=(0.0, None),
        )
        if c.max_power_w is not None:
            lim = min(lim, c.max_power_w / (len(index.lines[c.id]) * _phase_volts(site, c)))
        out[c.id] = (round_down_to_charger(c, lim), bound, lim)
    return out

"""Lookups derived once from a ``Site``: which nodes are above a charger, which lines it loads."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ampshare.core.site import Charger, Connection, PhaseRotation, Site, VoltageSystem

__all__ = ["SiteIndex", "charger_lines", "index_site"]


def charger_lines(site: Site, charger: Charger) -> tuple[int, ...]:
    """Site line indices (0..2) the charger can load, after its phase rotation.

    A three-phase charger counts on all three lines even when a one-phase car uses only one:
    which line that car would use is not known in advance, and unknown means pessimistic.
    """
    return _lines(site.voltage, charger.connection, charger.phase_rotation)


@functools.cache
def _lines(voltage: VoltageSystem, conn: Connection, rotation: PhaseRotation) -> tuple[int, ...]:
    # a handful of combinations; the enum arithmetic is slow enough to matter at 1,000 chargers
    present = {ln.index for ln in voltage.lines}
    return tuple(sorted({rotation.site_line(t).index for t in conn.terminals} & present))


@dataclass(frozen=True, slots=True)
class SiteIndex:
    """``ancestors[charger_id]``: node ids from the charger's node up to the root;
    ``lines[charger_id]``: site line indices it loads; ``chargers``: id -> Charger.
    ``meter_sets``: the distinct sets of meters (ids) whose totals include the EV load of a
    charger below them, and ``meter_set[charger_id]``: the position of that charger's set
    there (a charger under no such meter has none): its reports are subtracted from those
    meters' readings."""

    ancestors: dict[str, tuple[str, ...]]
    lines: dict[str, tuple[int, ...]]
    chargers: dict[str, Charger]
    meter_sets: tuple[tuple[str, ...], ...] = ()
    meter_set: dict[str, int] = field(default_factory=dict)


def index_site(site: Site, previous: tuple[Site, SiteIndex] | None = None) -> SiteIndex:
    """Build the lookups (O(chargers x depth)); ``previous`` (the site and index of the last
    step) is reused when it is the very same ``Site`` object."""
    if previous is not None and previous[0] is site:
        return previous[1]
    parents = {n.id: n.parent_id for n in site.nodes}
    node_chain: dict[str, tuple[str, ...]] = {}
    for n in site.nodes:  # parent-before-child order, so the parent's chain exists already
        parent = parents[n.id]
        node_chain[n.id] = (n.id, *(node_chain[parent] if parent is not None else ()))
    ancestors = {c.id: node_chain[c.node_id] for c in site.chargers}
    meters_at: dict[str, list[str]] = {}
    for m in site.meters:
        if m.includes_ev_load:
            meters_at.setdefault(m.node_id, []).append(m.id)
    sets: dict[tuple[str, ...], int] = {}
    meter_set: dict[str, int] = {}
    for cid, chain in ancestors.items():
        above = tuple(mid for nid in chain for mid in meters_at.get(nid, ()))
        if above:
            meter_set[cid] = sets.setdefault(above, len(sets))
    return SiteIndex(
        ancestors=ancestors,
        lines={c.id: charger_lines(site, c) for c in site.chargers},
        chargers={c.id: c for c in site.chargers},
        meter_sets=tuple(sets),
        meter_set=meter_set,
    )

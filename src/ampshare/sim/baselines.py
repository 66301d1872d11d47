"""Two simple load managers found in the field, as comparison baselines for the simulator.

Both have the signature of ``ampshare.core.allocate.allocate`` and read the same simulated
meter and chargers; they were written from their published descriptions, not from any code.

* ``greedy_clamp`` — chargers are updated in turn; each takes what is left under every limit
  given what the others currently hold, and stops when that is below its minimum (several
  home controllers behave so: first come keeps its current, late arrivals wait).
* ``allstop_waterfill`` — everyone gets an equal share (water-filling); when not everyone fits
  at the minimum, everyone stops and the controller retries after ``ALLSTOP_RETRY_S``.

Like those controllers they add currents per line as plain numbers (no phasors), which
over-estimates line-to-line loads and therefore stays on the safe side. Building load is the
meter's per-line total minus the chargers' measured currents below it.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimit,
    ChargerLimits,
    NodeHeadrooms,
    Reason,
    ReasonKind,
    RotationState,
)
from ampshare.core.site import Charger, Connection, Site
from ampshare.sim._compiled import CompiledSite, compile_site

__all__ = ["ALLSTOP_RETRY_S", "BASELINES", "allstop_waterfill", "greedy_clamp"]

FloatArray = npt.NDArray[np.float64]
ALLSTOP_RETRY_S = 60.0
_STOP_KEY = "*all-stop*"
_cache: dict[int, tuple[Site, str, CompiledSite]] = {}


def _compiled(site: Site, node_id: str) -> CompiledSite:
    hit = _cache.get(id(site))
    if hit is None or hit[0] is not site or hit[1] != node_id:
        if len(_cache) > 32:
            _cache.clear()
        hit = (site, node_id, compile_site(site, building_node_id=node_id))
        _cache[id(site)] = hit
    return hit[2]


def _building_a(inp: AllocationInput) -> tuple[str, FloatArray]:
    """Per-line building load at the (first) metered node: total minus measured EV below."""
    site = inp.site
    if not inp.measurements:
        return site.root.id, np.zeros(3)
    m = inp.measurements[0]
    total = np.array([x if x is not None else math.inf for x in (m.current_a or (None,) * 3)])
    below = {c.id for c in site.chargers if m.node_id in site.ancestors(c.node_id)}
    ev = np.zeros(3)
    if m.includes_ev_load:
        for st in inp.charger_states:
            if st.charger_id in below and st.measured_current_a is not None:
                ev += np.array([x or 0.0 for x in st.measured_current_a])
    return m.node_id, np.maximum(total - ev, 0.0)


def _round_down(ch: Charger, amps: float) -> float:
    """The largest current the charger accepts at or below ``amps`` (0 below its minimum)."""
    if ch.allowed_currents_a:
        ok = [a for a in ch.allowed_currents_a if a <= amps + 1e-9]
        return max(ok) if ok else 0.0
    step = ch.resolution_a or 0.1
    val = math.floor(amps / step + 1e-9) * step
    return val if val >= ch.min_current_a - 1e-9 else 0.0


class _Frame:
    """Limits, row loads and per-charger scalar coefficients for one call."""

    def __init__(self, inp: AllocationInput) -> None:
        node_id, bld = _building_a(inp)
        self.cs = _compiled(inp.site, node_id)
        self.site = inp.site
        margins = np.array([inp.site.node(n).margin_a for n in self.cs.node_of_row])
        self.room = self.cs.limit_a - margins - bld @ self.cs.building
        self.abs_coef = np.abs(self.cs.coef)
        self.plugged = [self.cs.charger_ids.index(s.charger_id) for s in inp.sessions]
        vmax = {s.charger_id: s.vehicle_max_current_a for s in inp.sessions}
        self.max_a = np.array(
            [min(c.max_current_a, vmax.get(c.id) or math.inf) for c in inp.site.chargers]
        )
        self.installed = np.zeros(len(inp.site.chargers))
        for st in inp.charger_states:
            if st.installed_limit_a is not None and st.charger_id in vmax:
                self.installed[self.cs.charger_ids.index(st.charger_id)] = st.installed_limit_a


def _limits(
    inp: AllocationInput, amps: FloatArray, kind: ReasonKind, rotation: RotationState
) -> Allocation:
    phases = {c.id: 3 if c.connection is Connection.THREE_PHASE else 1 for c in inp.site.chargers}
    plugged = {s.charger_id for s in inp.sessions}
    out = []
    for j, ch in enumerate(inp.site.chargers):
        if ch.id not in plugged:
            out.append(
                ChargerLimit(
                    charger_id=ch.id,
                    limit_a=0.0,
                    phases=phases[ch.id],
                    reason=Reason(kind=ReasonKind.NO_SESSION),
                )
            )
            continue
        lim = float(amps[j])
        why = kind if lim > 0 else ReasonKind.PAUSED_NO_HEADROOM
        out.append(
            ChargerLimit(
                charger_id=ch.id,
                limit_a=lim,
                phases=phases[ch.id],
                reason=Reason(kind=why, detail="baseline"),
            )
        )
    return Allocation(
        limits=ChargerLimits.of(out), headroom=NodeHeadrooms.of(()), rotation=rotation
    )


def greedy_clamp(inp: AllocationInput) -> Allocation:
    """Chargers in id order: each takes what is left given the others' installed limits."""
    f = _Frame(inp)
    amps = f.installed.copy()
    for j in sorted(f.plugged):
        amps[j] = 0.0
        used = amps @ f.abs_coef
        coef = f.abs_coef[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(coef > 1e-12, (f.room - used) / coef, math.inf)
        take = float(min(f.max_a[j], max(0.0, float(left.min()))))
        amps[j] = _round_down(inp.site.chargers[j], take)
    return _limits(inp, amps, ReasonKind.POLICY_SHARE, inp.rotation)


def _level_fits(f: _Frame, idx: list[int], level: float) -> bool:
    amps = np.zeros(len(f.max_a))
    amps[idx] = np.minimum(f.max_a[idx], level)
    return bool(np.all(amps @ f.abs_coef <= f.room + 1e-9))


def allstop_waterfill(inp: AllocationInput) -> Allocation:
    """Equal shares up to each car's maximum; all stop for a minute when the minimum won't fit."""
    f = _Frame(inp)
    stopped = inp.rotation.paused_since_s.get(_STOP_KEY)
    amps = np.zeros(len(f.max_a))
    if stopped is not None and inp.now_s < stopped + ALLSTOP_RETRY_S:
        return _limits(inp, amps, ReasonKind.POLICY_SHARE, inp.rotation)
    idx = sorted(f.plugged)
    mins = [inp.site.chargers[j].min_current_a for j in idx]
    if idx and not _level_fits(f, idx, max(mins)):
        rot = RotationState(paused_since_s=MappingProxyType({_STOP_KEY: inp.now_s}))
        return _limits(inp, amps, ReasonKind.POLICY_SHARE, rot)
    lo, hi = 0.0, float(f.max_a[idx].max()) if idx else 0.0
    for _ in range(40):  # bisection on the common level; 40 halvings reach far below 0.1 A
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _level_fits(f, idx, mid) else (lo, mid)
    for j in idx:
        amps[j] = _round_down(inp.site.chargers[j], min(float(f.max_a[j]), lo))
    return _limits(inp, amps, ReasonKind.POLICY_SHARE, RotationState())


BASELINES = {"greedy-clamp": greedy_clamp, "all-stop": allstop_waterfill}
